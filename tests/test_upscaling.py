"""srformer.upscaling: the files ``srformer upscale`` writes are those it wrote before the pipeline moved into the
library (recorded pixels, with an allowance for another CPU's rounding), ``upscale_file`` as a library call
(bit-identical to the command), and ``--model auto``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from srformer.commands.upscale import main
from srformer.errors import ImageError
from srformer.handle import open_model
from srformer.upscaling import MODEL_KEY, REASON_KEY, UpscaleOptions, upscale_file

tifffile = pytest.importorskip("tifffile")

#: sha256 of the inputs the recorded outputs were made from: another Pillow or libjpeg may encode the JPEG
#: differently, and then the outputs cannot match (the test is skipped, not failed, for that reason only).
INPUTS = {
    "astro.png": "0ed62b8148b4a1a6512492a9f58a3a0c716b5772fe5bbf51e0111bf49142cdb7",
    "cat.jpg": "9851b603e778ab3273d4800547606f5f21d51a464c3e16c5ff3567c7b92f04df",
    "deep.tif": "0c789b5b83d19c17478c59d01de86ebf5926069ee044eeb1f405209176a54858",
}

#: Command-line options of each recorded case. ``tests/data/upscale_recorded.npz`` holds the decoded pixels and
#: the format facts of every file each case wrote from :func:`inputs` with the ``weights`` fixture's model on the
#: CPU (recorded 2026-12-06 with the code whose files matched the byte hashes recorded before the pipeline moved
#: into :mod:`srformer.upscaling`). Another CPU's kernels may round a few values across a level: on a later
#: machine (AMD EPYC) the JPEG and WebP files were still byte-identical to the earlier recording but the PNG and
#: TIFF ones were not, so lossless files are compared level by level with a small allowance for such flips
#: (:func:`assert_close_to_recorded`), lossy ones by PSNR. ``SRFORMER_RECORD=1 pytest tests/test_upscaling.py``
#: records them again (only after a change meant to alter the output).
CASES: dict[str, list[str]] = {
    "default": [],
    "tiled": ["--tile", "16", "--tile-overlap", "8"],
    "tta": ["--tta", "--tile", "0"],
    "compare_jpg": ["--compare", "--ext", "jpg", "--quality", "90", "--tile", "24"],
    "webp": ["--ext", "webp", "--tile", "0"],
    "compress9": ["--compression", "9", "--suffix", "_big"],
}
RECORDING = Path(__file__).resolve().parent / "data" / "upscale_recorded.npz"
#: Lossless files: at most this fraction of samples may differ from the recording, each by one level.
FLIP_ALLOWANCE = 0.005
#: Lossy files: PSNR against the recording's decoded pixels, at least (a flipped level before the encoder moves
#: its output by a few levels in that 8x8 block or so).
LOSSY_MIN_PSNR = 40.0

#: The shipped x4 model on astro.png with 16-px tiles, recorded the same way (case ``shipped_x4``).
SHIPPED_X4 = ["--model", "x4", "--tile", "16"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB PNG, a quality-90 JPEG and a 16-bit gray + alpha TIFF cut from scikit-image's photos."""
    folder = tmp_path_factory.mktemp("in")
    Image.fromarray(data.astronaut()[100:137, 180:221]).save(folder / "astro.png")
    Image.fromarray(data.chelsea()[60:91, 100:133]).save(folder / "cat.jpg", quality=90)
    gray = data.camera()[200:226, 200:230].astype(np.uint16) * 257 + 3
    alpha = np.linspace(0, 65535, 26 * 30).reshape(26, 30).astype(np.uint16)
    tifffile.imwrite(folder / "deep.tif", np.stack([gray, alpha], axis=2), photometric="minisblack", extrasamples=[2])
    changed = [name for name, digest in INPUTS.items() if _sha256(folder / name) != digest]
    if changed:
        pytest.skip(f"this Pillow/tifffile encodes {changed} differently from the recording")
    return folder


def _run(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--quiet", "--device", "cpu"])


def decode(path: Path) -> tuple[np.ndarray, str]:
    """The pixels of a written file as stored (8 or 16 bits, alpha included) and its format facts."""
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            facts = f"tiff {page.photometric.name} extrasamples={tuple(int(e) for e in page.extrasamples)}"
            return page.asarray(), facts + f" compression={page.compression.name}"
    with Image.open(path) as image:
        facts = f"{image.format} {image.mode} text={sorted(getattr(image, 'text', {}))}"
        return np.asarray(image), facts


def assert_close_to_recorded(name: str, pixels: np.ndarray, recorded: np.ndarray) -> None:
    """Equal but for a few samples one level apart (lossless formats), or within :data:`LOSSY_MIN_PSNR`."""
    assert (pixels.shape, pixels.dtype) == (recorded.shape, recorded.dtype), name
    difference = np.abs(pixels.astype(np.int64) - recorded.astype(np.int64))
    if Path(name).suffix in (".png", ".tif"):
        assert difference.max() <= 1, f"{name}: {difference.max()} levels off the recording"
        assert np.count_nonzero(difference) <= FLIP_ALLOWANCE * difference.size, (
            f"{name}: {np.count_nonzero(difference)} of {difference.size} samples off the recording"
        )
    else:
        peak = float(np.iinfo(pixels.dtype).max)
        mse = float(np.mean(difference.astype(np.float64) ** 2))
        psnr = float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
        assert psnr >= LOSSY_MIN_PSNR, f"{name}: {psnr:.1f} dB from the recording"


def written(folder: Path) -> dict[str, tuple[np.ndarray, str]]:
    return {p.name: decode(p) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def recording() -> dict[str, np.ndarray]:
    if os.environ.get("SRFORMER_RECORD") == "1":
        return {}
    with np.load(RECORDING) as saved:
        return {key: saved[key] for key in saved.files}


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_match_the_recorded_ones(
    tmp_path: Path, inputs: Path, weights: Path, case: str, recording: dict[str, np.ndarray]
) -> None:
    assert _run(inputs, "-o", tmp_path, "--model", weights, *CASES[case]) == 0
    check_against_recording(case, tmp_path, recording)


def test_shipped_x4_output_matches_the_recorded_one(
    tmp_path: Path, inputs: Path, recording: dict[str, np.ndarray]
) -> None:
    assert _run(inputs / "astro.png", "-o", tmp_path, *SHIPPED_X4) == 0
    check_against_recording("shipped_x4", tmp_path, recording)


def check_against_recording(case: str, folder: Path, recording: dict[str, np.ndarray]) -> None:
    """Every file in ``folder`` against ``case``'s recording: the same names and format facts, pixels within
    :func:`assert_close_to_recorded`; with SRFORMER_RECORD=1, records them instead."""
    files = written(folder)
    if os.environ.get("SRFORMER_RECORD") == "1":
        _record(case, files)
        pytest.skip("recorded")
    names = sorted(k.split("/", 1)[1] for k in recording if k.startswith(f"{case}/") and k.endswith(":pixels"))
    assert sorted(files) == [n.removesuffix(":pixels") for n in names]
    for name, (pixels, facts) in files.items():
        assert facts == str(recording[f"{case}/{name}:facts"]), name
        assert_close_to_recorded(name, pixels, recording[f"{case}/{name}:pixels"])


def _record(case: str, files: dict[str, tuple[np.ndarray, str]]) -> None:
    """Add ``case``'s files to the recording (each case's test run adds its own)."""
    saved = dict(np.load(RECORDING)) if RECORDING.is_file() else {}
    saved = {k: v for k, v in saved.items() if not k.startswith(f"{case}/")}
    for name, (pixels, facts) in files.items():
        saved[f"{case}/{name}:pixels"], saved[f"{case}/{name}:facts"] = pixels, np.array(facts)
    RECORDING.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORDING, **saved)


def test_the_comparison_catches_a_changed_output(inputs: Path, weights: Path, tmp_path: Path) -> None:
    """What the recorded comparison allows (a few one-level flips) and what it does not (another tiling)."""
    assert _run(inputs, "-o", tmp_path / "a", "--model", weights, "--tile", "16", "--tile-overlap", "8") == 0
    assert _run(inputs, "-o", tmp_path / "b", "--model", weights, "--tile", "16", "--tile-overlap", "0") == 0
    tiled, other_overlap = written(tmp_path / "a"), written(tmp_path / "b")
    pixels = tiled["astro_x2.png"][0]
    flipped = pixels.copy()
    flipped.reshape(-1)[:: int(1 / FLIP_ALLOWANCE) + 1] ^= 1  # under the allowance, one level each
    assert_close_to_recorded("astro_x2.png", flipped, pixels)
    for name in ("astro_x2.png", "deep_x2.tif", "cat_x2.jpg"):
        with pytest.raises(AssertionError):
            assert_close_to_recorded(name, other_overlap[name][0], tiled[name][0])


def test_upscale_file_as_a_library_call(tmp_path: Path, inputs: Path, weights: Path) -> None:
    handle = open_model(weights, device="cpu")
    progress: list[tuple[int, int]] = []
    options = UpscaleOptions(tile=16, tile_overlap=8)
    result = upscale_file(handle, inputs / "astro.png", tmp_path / "a.png", options, lambda *p: progress.append(p))
    assert _run(inputs / "astro.png", "-o", tmp_path / "cli", "--model", weights, *CASES["tiled"]) == 0
    assert _sha256(result.destination) == _sha256(tmp_path / "cli" / "astro_x2.png")  # what the command writes
    assert (result.width, result.height, result.output_pixels, result.notes) == (82, 74, 82 * 74, ())
    assert progress[-1][0] == progress[-1][1] > 1 and [done for done, _ in progress] == list(
        range(1, len(progress) + 1)
    )
    with pytest.raises(ImageError, match=r"a\.png already exists \(pass --overwrite to replace it\)$"):
        upscale_file(handle, inputs / "astro.png", tmp_path / "a.png", options)
    compared = upscale_file(handle, inputs / "deep.tif", tmp_path / "d.jpg", UpscaleOptions(compare=True))
    assert compared.compare_destination == tmp_path / "d_compare.jpg" and compared.compare_destination.is_file()
    assert any("alpha channel was dropped" in note for note in compared.notes)


def test_model_auto_prints_and_records_its_choice_per_file(
    tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture
) -> None:
    """A quality-30 JPEG goes to the real-world model, a clean PNG to the classical one; each line printed,
    each choice in the PNG's text, and the pixels those of the model named."""
    photo = tmp_path / "photos"
    photo.mkdir()
    Image.open(inputs / "astro.png").save(photo / "clean.png")
    Image.open(inputs / "astro.png").save(photo / "harsh.jpg", quality=30)
    assert _run(photo, "-o", tmp_path / "auto", "--ext", "png") == 0  # auto: the default
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{photo / 'clean.png'}: x4 (") and "classical model" in printed[0]
    assert printed[1].startswith(f"{photo / 'harsh.jpg'}: real (JPEG quality ~30") and "real-world" in printed[1]
    for name, model in (("clean", "x4"), ("harsh", "real")):
        written = Image.open(tmp_path / "auto" / f"{name}_x4.png")
        assert written.text[MODEL_KEY] == model and written.text[REASON_KEY] in " ".join(printed)
        assert _run(photo / f"{Path(name).stem}.{'png' if name == 'clean' else 'jpg'}", "-o", tmp_path / model,
                    "--model", model, "--ext", "png") == 0  # fmt: skip
        named = np.asarray(Image.open(tmp_path / model / f"{name}_x4.png"))
        assert np.array_equal(np.asarray(written), named)


def test_a_precision_the_model_cannot_run_is_one_sentence(tmp_path: Path, inputs: Path, weights: Path) -> None:
    handle = open_model("bicubic", scale=2)
    with pytest.raises(Exception, match=r"^bicubic x2 does not give correct output in bf16; use --precision fp32$"):
        upscale_file(handle, inputs / "astro.png", tmp_path / "b.png", UpscaleOptions(precision="bf16"))
    assert not (tmp_path / "b.png").exists()
    result = upscale_file(handle, inputs / "astro.png", tmp_path / "b.png")  # bicubic itself writes files too
    assert Image.open(result.destination).size == (82, 74)

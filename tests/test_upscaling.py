"""srformer.upscaling: the files ``srformer upscale`` writes are bit for bit those it wrote before the pipeline
moved into the library (recorded hashes), ``upscale_file`` as a library call, and ``--model auto``."""

from __future__ import annotations

import hashlib
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

#: Command-line options -> sha256 of every file written, as ``srformer.infer_cli`` (the command before the
#: pipeline moved into :mod:`srformer.upscaling`) wrote them from :func:`_inputs` with the ``weights`` fixture's
#: model, on the CPU (torch 2.x, 2026-12-06). The 16-bit TIFFs' hashes are those after the float-to-integer
#: conversion was unified (``srformer.pixels.quantize``, issue 24: 2 of 3120 16-bit samples one level apart);
#: every 8-bit file is the one written before. A CPU whose kernels round differently may flip a level.
RECORDED: dict[str, tuple[list[str], dict[str, str]]] = {
    "default": ([], {
        "astro_x2.png": "bf164c40ae939fbb928daf7988f75de898d444480e9cb262e59cb105077036c6",
        "cat_x2.jpg": "5d82d7283fa4153b69c52267efa58ad1041c4d2ca41c987341aac28ac3accf19",
        "deep_x2.tif": "1180e41bbea41498adbda2a18d7046ac3ec7d0d45282448775ecb7a5a81e6292",
    }),
    "tiled": (["--tile", "16", "--tile-overlap", "8"], {
        "astro_x2.png": "55b8ba66c813525e77b0fd5d78d62cca239b11483c0ec580fe218fce901a2193",
        "cat_x2.jpg": "1ce070019be3cea4f7da3d7818a123becc996b952f4f01259a239aaaf8443852",
        "deep_x2.tif": "1180e41bbea41498adbda2a18d7046ac3ec7d0d45282448775ecb7a5a81e6292",
    }),
    "tta": (["--tta", "--tile", "0"], {
        "astro_x2.png": "653e237660935e2fda74f93e073d5ac4c563f3fea519fb2ae80b0c6e50296798",
        "cat_x2.jpg": "e5af05a76c8fdb426781386ed3f358ab273ac20e255aa7be086f646a60daf271",
        "deep_x2.tif": "c034bec5ce8440c9bbf55713212f01496ae80fcb2067ad02399e52c29e0dba11",
    }),
    "compare_jpg": (["--compare", "--ext", "jpg", "--quality", "90", "--tile", "24"], {
        "astro_x2.jpg": "4bc772831164d7d443b32b214d38bf98dc5f0acd6c14017efc5781060225a522",
        "astro_x2_compare.jpg": "1ddd0d06f2e28d2831b0a8acc261a13369ff15bc05db2c0769525ad0a314bea4",
        "cat_x2.jpg": "e89fc665d7d64bd8de8406b6bb06db6a87f136b51f8b0a971bcf9693f7986cec",
        "cat_x2_compare.jpg": "ea4c6037f0e582d58697f4941bc5acecf8332eef945bb9d1784d4d656b71bf39",
        "deep_x2.jpg": "1d4bc097bc317a96f654ff53be115b0f628c7f47a3fb117fc786061a7e77de63",
        "deep_x2_compare.jpg": "043959e09e582b2b90c690738dac35c38e8d4893baa68206ac19b7c72d19b05c",
    }),
    "webp": (["--ext", "webp", "--tile", "0"], {
        "astro_x2.webp": "40895dbc81ed6ffe1c81d983283094456f8001fe580dd488301dd4fca27bdd28",
        "cat_x2.webp": "800f9d66bde58ef9092337bd6e4da6dfb948e4941ec9d707a92dcc4775e8aadd",
        "deep_x2.webp": "4f559a238003259e3f88ad53675feba8df556a81fe7505ae42211e02380ae387",
    }),
    "compress9": (["--compression", "9", "--suffix", "_big"], {
        "astro_big.png": "6b20b22d8d2ebbabe12af2aa1b30869412256fe07411988b36c792b8fe5a15a5",
        "cat_big.jpg": "5d82d7283fa4153b69c52267efa58ad1041c4d2ca41c987341aac28ac3accf19",
        "deep_big.tif": "b499c5d11d13a7b4adeec9b8c4f6db7f5f0e2500146eda89f9622148c76bca15",
    }),
}  # fmt: skip

#: The shipped x4 model on astro.png with 16-px tiles (``--model x4 --tile 16``), recorded the same way.
SHIPPED_X4 = "52a5dd1aaabe2a2f2a5a4f1aea8fa6f1c116b4be3dba83bc4e60549478988125"


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


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_outputs_are_bit_identical_to_the_recorded_ones(tmp_path: Path, inputs: Path, weights: Path, case: str) -> None:
    options, expected = RECORDED[case]
    assert _run(inputs, "-o", tmp_path, "--model", weights, *options) == 0
    assert {p.name: _sha256(p) for p in sorted(tmp_path.iterdir())} == expected


def test_shipped_x4_output_is_bit_identical_to_the_recorded_one(tmp_path: Path, inputs: Path) -> None:
    assert _run(inputs / "astro.png", "-o", tmp_path, "--model", "x4", "--tile", "16") == 0
    assert _sha256(tmp_path / "astro_x4.png") == SHIPPED_X4


def test_upscale_file_as_a_library_call(tmp_path: Path, inputs: Path, weights: Path) -> None:
    handle = open_model(weights, device="cpu")
    progress: list[tuple[int, int]] = []
    options = UpscaleOptions(tile=16, tile_overlap=8)
    result = upscale_file(handle, inputs / "astro.png", tmp_path / "a.png", options, lambda *p: progress.append(p))
    assert _sha256(result.destination) == RECORDED["tiled"][1]["astro_x2.png"]  # what the command writes
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

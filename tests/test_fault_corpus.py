"""A generated corpus of bad and odd inputs, each with its expected outcome through the real entry points.

Every kind of input is built here (no image is copied from anywhere) and fed to ``infer.py`` in-process
(:func:`srformer.commands.upscale.main`); a few go through a subprocess to prove that no traceback reaches stderr.
The data-side cases go through ``srformer evaluate`` and :class:`srformer.data.SRDataModule`.

``python tests/test_fault_corpus.py`` prints the table of docs/RELIABILITY.md from the same cases.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srformer.checkpoint import save_weights
from srformer.commands import evaluate
from srformer.commands.upscale import main as infer_main
from srformer.data import SRDataModule
from srformer.imageio import read_image
from srformer.models import build_model

REPO = Path(__file__).resolve().parent.parent


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encoded(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` RGB pixels but whose data holds 100 bytes: decoding it
    would fail as truncated, so a "too many pixels" answer proves the header was checked first."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


class PickleBomb:
    """Unpickling this would create the marker file (it is never unpickled here: the loader must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@dataclass
class Workspace:
    """Where a case builds its input: ``root`` (a fresh folder), the model weights, and a monkeypatch."""

    root: Path
    weights: Path
    monkeypatch: pytest.MonkeyPatch
    marker: Path = field(init=False)

    def __post_init__(self) -> None:
        self.marker = self.root / "payload_ran"

    def save(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def image(self, name: str, array: np.ndarray, mode: str | None = None, **options) -> Path:
        path = self.root / name
        Image.fromarray(array, mode).save(path, **options)
        return path


@dataclass(frozen=True)
class Case:
    """One kind of input: ``build`` returns the CLI arguments (``-o root/out`` and ``--model`` added unless
    given); the run must exit with ``code`` and print ``message`` on stderr; ``check`` inspects the output
    folder of a successful run (or what must not have happened)."""

    kind: str
    build: Callable[[Workspace], list[str]]
    code: int
    message: str
    check: Callable[[Workspace], None] | None = None


def _output(ws: Workspace, name: str) -> Image.Image:
    return Image.open(ws.root / "out" / name)


def _expect_image(name: str, size: tuple[int, int], mode: str) -> Callable[[Workspace], None]:
    def check(ws: Workspace) -> None:
        result = _output(ws, name)
        assert (result.size, result.mode) == (size, mode)

    return check


def _nothing_written(ws: Workspace) -> None:
    out = ws.root / "out"
    assert not out.exists() or not any(out.iterdir())


def _sixteen_bit_rgb_png(ws: Workspace) -> list[str]:
    from srformer.imageio import write_image

    ramp = np.linspace(0, 1, 8 * 6 * 3, dtype=np.float32).reshape(8, 6, 3)
    write_image(ws.root / "rgb16.png", ramp, bit_depth=16)
    return [str(ws.root / "rgb16.png")]


def _check_sixteen_bit_rgb(ws: Workspace) -> None:
    result = read_image(ws.root / "out" / "rgb16_x2.png")
    assert (result.bit_depth, result.rgb.shape, result.grayscale) == (16, (16, 12, 3), False)


def _cmyk_jpeg(ws: Workspace) -> list[str]:
    Image.fromarray(_rgb(8, 9)).convert("CMYK").save(ws.root / "cmyk.jpg")
    assert Image.open(ws.root / "cmyk.jpg").mode == "CMYK"
    return [str(ws.root / "cmyk.jpg")]


def _exif_rotated(ws: Workspace) -> list[str]:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 8 high x 14 wide, shown 14 high x 8 wide
    return [str(ws.image("rot.jpg", _rgb(8, 14), exif=exif))]


def _animated(name: str) -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        frames = [Image.fromarray(_rgb(8, 8, seed)) for seed in range(3)]
        frames[0].save(ws.root / name, save_all=True, append_images=frames[1:], duration=100)
        return [str(ws.root / name)]

    return build


def _palette_with_transparency(ws: Workspace) -> list[str]:
    """Palette indices 0..3 in vertical bands; index 0 (the left 4 columns) is transparent."""
    indices = np.repeat(np.arange(10, dtype=np.uint8)[None] // 3, 6, axis=0)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.save(ws.root / "pal.gif", transparency=0)
    return [str(ws.root / "pal.gif")]


def _check_palette_alpha(ws: Workspace) -> None:
    result = np.asarray(_output(ws, "pal_x2.png"))
    assert result.shape == (12, 20, 4)
    assert result[:, :4, 3].max() == 0 and result[:, 8:, 3].min() == 255  # transparent band kept, away from edge


def _unreadable(ws: Workspace) -> list[str]:
    path = ws.image("locked.png", _rgb(5, 5))
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make the open fail as it would for a normal user
        real_open = Image.open

        def refusing_open(fp, *args, **kwargs):
            if Path(fp) == path:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(fp, *args, **kwargs)

        ws.monkeypatch.setattr("srformer.imageio.Image.open", refusing_open)
    return [str(path)]


def _other_preset(ws: Workspace) -> list[str]:
    """The tiny model's weights beside a description saying 'light'."""
    shutil.copy(ws.weights, ws.root / "light_x2.safetensors")
    info = json.loads(ws.weights.with_suffix(".json").read_text())
    info["arch"] = build_model("light", 2).config
    info["preset"] = "light"
    (ws.root / "light_x2.json").write_text(json.dumps(info))
    return [str(ws.image("a.png", _rgb(5, 5))), "--model", str(ws.root / "light_x2.safetensors")]


def _garbage_safetensors(ws: Workspace) -> list[str]:
    ws.save("noise.safetensors", np.random.default_rng(1).bytes(500))
    shutil.copy(ws.weights.with_suffix(".json"), ws.root / "noise.json")
    return [str(ws.image("a.png", _rgb(5, 5))), "--model", str(ws.root / "noise.safetensors")]


def _pickle_payload(ws: Workspace) -> list[str]:
    with open(ws.root / "evil.ckpt", "wb") as handle:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"arch": PickleBomb(ws.marker)}}, handle)
    return [str(ws.image("a.png", _rgb(5, 5))), "--model", str(ws.root / "evil.ckpt")]


def _payload_not_run(ws: Workspace) -> None:
    assert not ws.marker.exists(), "the pickle payload ran"
    _nothing_written(ws)


def _output_under_a_file(ws: Workspace) -> list[str]:
    ws.save("afile", b"not a folder")
    return [str(ws.image("a.png", _rgb(5, 5))), "-o", str(ws.root / "afile" / "sub")]


def _output_is_a_file(ws: Workspace) -> list[str]:
    ws.save("afile", b"not a folder")
    return [str(ws.image("a.png", _rgb(5, 5))), "-o", str(ws.root / "afile")]


def _file_untouched(ws: Workspace) -> None:
    assert (ws.root / "afile").read_bytes() == b"not a folder"


def _output_is_input(ws: Workspace) -> list[str]:
    path = ws.image("a.png", _rgb(5, 5))
    return [str(path), "-o", str(ws.root), "--suffix", "", "--overwrite"]


def _input_untouched(ws: Workspace) -> None:
    assert np.array_equal(np.asarray(Image.open(ws.root / "a.png")), _rgb(5, 5))


def _directory_named_png(ws: Workspace) -> list[str]:
    (ws.root / "photo.png").mkdir()
    return [str(ws.root / "photo.png")]


CASES = [
    Case("zero-byte file", lambda ws: [str(ws.save("zero.png", b""))], 1, "cannot read zero.png as an image"),
    Case(
        "truncated PNG",
        lambda ws: [str(ws.save("cut.png", _encoded(_rgb(12, 10), "PNG")[:200]))],
        1,
        "cannot read cut.png as an image",
    ),
    Case(
        "truncated JPEG",
        lambda ws: [str(ws.save("cut.jpg", _encoded(_rgb(12, 10), "JPEG")[:300]))],
        1,
        "cannot read cut.jpg as an image",
    ),
    Case("text file named .png", lambda ws: [str(ws.save("notes.png", b"hello\n"))], 1, "cannot read notes.png"),
    Case("directory named like an image", _directory_named_png, 2, "holds no images"),
    Case(
        "1x1 image",
        lambda ws: [str(ws.image("dot.png", _rgb(1, 1)))],
        0,
        "",
        _expect_image("dot_x2.png", (2, 2), "RGB"),
    ),
    Case(
        "1xN image (one row)",
        lambda ws: [str(ws.image("row.png", _rgb(1, 17)))],
        0,
        "",
        _expect_image("row_x2.png", (34, 2), "RGB"),
    ),
    Case(
        "Nx1 image (one column)",
        lambda ws: [str(ws.image("col.png", _rgb(17, 1)))],
        0,
        "",
        _expect_image("col_x2.png", (2, 34), "RGB"),
    ),
    Case(
        "decompression bomb (100000x100000 declared)",
        lambda ws: [str(ws.save("bomb.png", png_declaring(100_000, 100_000)))],
        1,
        "is 100000x100000 = 10000 megapixels, over the limit of 200 megapixels",
    ),
    Case(
        "image over a lowered --max-pixels",
        lambda ws: [str(ws.image("big.png", _rgb(20, 20))), "--max-pixels", "100"],
        1,
        "big.png is 20x20 = 400 pixels, over the limit of 100 pixels",
    ),
    Case(
        "RGBA PNG",
        lambda ws: [str(ws.image("rgba.png", np.dstack([_rgb(6, 7), np.full((6, 7), 128, np.uint8)])))],
        0,
        "",
        _expect_image("rgba_x2.png", (14, 12), "RGBA"),
    ),
    Case(
        "LA PNG (gray + alpha)",
        lambda ws: [str(ws.image("la.png", _rgb(6, 7)[..., :2], "LA"))],
        0,
        "",
        _expect_image("la_x2.png", (14, 12), "LA"),
    ),
    Case(
        "P (palette) GIF with transparency",
        _palette_with_transparency,
        0,
        "",
        _check_palette_alpha,
    ),
    Case(
        "CMYK JPEG",
        _cmyk_jpeg,
        0,
        "",
        _expect_image("cmyk_x2.jpg", (18, 16), "RGB"),
    ),
    Case(
        "I;16 PNG (16-bit gray)",
        lambda ws: [str(ws.image("g16.png", np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000))],
        0,
        "",
        _expect_image("g16_x2.png", (16, 12), "I;16"),
    ),
    Case("16-bit RGB PNG", _sixteen_bit_rgb_png, 0, "", _check_sixteen_bit_rgb),
    Case(
        "float TIFF (mode F)",
        lambda ws: [str(ws.image("f.tif", np.random.default_rng(2).random((8, 9)).astype(np.float32), "F"))],
        0,
        "",
        _expect_image("f_x2.tif", (18, 16), "I;16"),
    ),
    Case(
        "grayscale PNG",
        lambda ws: [str(ws.image("gray.png", _rgb(7, 5)[..., 0], "L"))],
        0,
        "",
        _expect_image("gray_x2.png", (10, 14), "L"),
    ),
    Case("EXIF-rotated JPEG", _exif_rotated, 0, "", _expect_image("rot_x2.jpg", (16, 28), "RGB")),
    Case(
        "animated GIF",
        _animated("anim.gif"),
        0,
        "warning: anim.gif has 3 frames; only the first one is upscaled",
        _expect_image("anim_x2.png", (16, 16), "RGB"),
    ),
    Case(
        "animated WebP",
        _animated("anim.webp"),
        0,
        "warning: anim.webp has 3 frames; only the first one is upscaled",
        _expect_image("anim_x2.webp", (16, 16), "RGB"),
    ),
    Case(
        "path with spaces",
        lambda ws: [str(ws.image("my photo 1.png", _rgb(4, 6)))],
        0,
        "",
        _expect_image("my photo 1_x2.png", (12, 8), "RGB"),
    ),
    Case(
        "non-ASCII path",
        lambda ws: [str(ws.image("фото_日本.png", _rgb(4, 6)))],
        0,
        "",
        _expect_image("фото_日本_x2.png", (12, 8), "RGB"),
    ),
    Case("unreadable file (no permission)", _unreadable, 1, "Permission denied"),
    Case(
        "output folder that cannot be created",
        _output_under_a_file,
        2,
        "cannot create the output folder",
        _file_untouched,
    ),
    Case("output folder that is a file", _output_is_a_file, 2, "is an existing file, not a folder", _file_untouched),
    Case("output path equal to the input", _output_is_input, 2, "would overwrite an input image", _input_untouched),
    Case(
        "scale the model does not have (--scale 4, x2 model)",
        lambda ws: [str(ws.image("a.png", _rgb(5, 5))), "--scale", "4"],
        2,
        "tiny_x2.safetensors is a x2 model, but x4 was asked for",
        _nothing_written,
    ),
    Case(
        "weights file for another preset",
        _other_preset,
        2,
        "do not fit the architecture it describes (preset 'light' at x2); the weights look like preset 'tiny' at x2",
        _nothing_written,
    ),
    Case(
        "non-checkpoint file as --model (a PNG)",
        lambda ws: [str(ws.image("a.png", _rgb(5, 5))), "--model", str(ws.image("w.png", _rgb(5, 5)))],
        2,
        "w.png is not a model file",
        _nothing_written,
    ),
    Case(
        "corrupt .safetensors as --model", _garbage_safetensors, 2, "is not a valid safetensors file", _nothing_written
    ),
    Case(
        "pickle checkpoint carrying a payload",
        _pickle_payload,
        2,
        "refusing to load it because unpickling them could run code",
        _payload_not_run,
    ),
    Case("missing input", lambda ws: [str(ws.root / "nowhere.png")], 2, "input not found", _nothing_written),
]


def run_case(case: Case, root: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Build the case's input in ``root``, run ``infer.py`` in-process; returns (exit code, stderr)."""
    ws = Workspace(root, weights, monkeypatch)
    args = case.build(ws)
    if "-o" not in args:
        args += ["-o", str(root / "out")]
    if "--model" not in args:
        args += ["--model", str(weights)]
    stderr = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", stderr)
        code = infer_main([*args, "--quiet"])
    if case.check is not None and code == case.code:
        case.check(ws)
    return code, stderr.getvalue()


def tiny_weights(folder: Path) -> Path:
    """A random tiny x2 model whose body matters (its last conv is not left at zero)."""
    torch.manual_seed(0)
    model = build_model("tiny", 2)
    last = [m for m in model.upsampler.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.normal_(last.weight, std=0.02)
    return save_weights(model, folder / "tiny_x2.safetensors")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("model"))


def test_corpus_has_at_least_25_kinds() -> None:
    assert len({case.kind for case in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_infer_outcome(case: Case, tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = run_case(case, tmp_path, weights, monkeypatch)
    assert code == case.code, err
    assert case.message in err, err
    assert "Traceback" not in err
    if code == 2:  # a user error: exactly one line
        assert err.startswith("error: ") and err.count("\n") == 1, err


def _mixed_folder(root: Path) -> tuple[Path, list[str], list[str]]:
    """A folder of 3 good and 5 bad images (and a folder named like one); returns (folder, good, bad)."""
    folder = root / "in put"
    folder.mkdir()
    good = {"a.png": _rgb(6, 6), "b b.jpg": _rgb(5, 7), "ü.webp": _rgb(4, 4)}
    for name, pixels in good.items():
        Image.fromarray(pixels).save(folder / name)
    bad = {
        "zero.png": b"",
        "cut.png": _encoded(_rgb(12, 10), "PNG")[:200],
        "cut.jpg": _encoded(_rgb(12, 10), "JPEG")[:300],
        "text.png": b"hello\n",
        "bomb.png": png_declaring(100_000, 100_000),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    (folder / "sub.png").mkdir()
    return folder, sorted(good), sorted(bad)


def test_folder_with_bad_files_processes_all_good_ones(tmp_path: Path, weights: Path, capsys) -> None:
    folder, good, bad = _mixed_folder(tmp_path)
    assert infer_main([str(folder), "-o", str(tmp_path / "out"), "--model", str(weights), "--quiet"]) == 1
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{Path(n).stem}_x2{Path(n).suffix}" for n in good)
    err = capsys.readouterr().err
    assert f"3 written to {tmp_path / 'out'}, 5 failed:" in err and "Traceback" not in err
    reported = [line.strip().split(": ", 1)[0] for line in err.splitlines() if line.startswith("  ")]
    assert sorted(Path(p).name for p in reported) == bad


def _run_script(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "infer.py"), *map(str, args), "--quiet"],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_script_exit_codes_and_no_traceback(tmp_path: Path, weights: Path) -> None:
    """The real script in a subprocess: a mixed folder (exit 1), a pickle payload and an impossible output
    folder (exit 2); stderr holds the messages and never a traceback."""
    folder, good, bad = _mixed_folder(tmp_path)
    mixed = _run_script(folder, "-o", tmp_path / "out", "--model", weights)
    assert mixed.returncode == 1 and "3 written" in mixed.stderr and "5 failed" in mixed.stderr, mixed.stderr
    assert len(list((tmp_path / "out").iterdir())) == len(good)

    ws = Workspace(tmp_path / "evil", weights, pytest.MonkeyPatch())
    ws.root.mkdir()
    evil = _run_script(*_pickle_payload(ws), "-o", ws.root / "out")
    assert evil.returncode == 2 and evil.stderr.startswith("error: ") and "refusing to load" in evil.stderr
    assert not ws.marker.exists()

    (tmp_path / "afile").write_text("x")
    blocked = _run_script(folder / "a.png", "-o", tmp_path / "afile" / "sub", "--model", weights)
    assert blocked.returncode == 2 and "cannot create the output folder" in blocked.stderr, blocked.stderr
    for done in (mixed, evil, blocked):
        assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------- data side
def _eval_folder(root: Path) -> tuple[Path, int]:
    """A benchmark folder with 2 good photos-like images, 4 broken files and a 1x1 image (below the scale)."""
    folder = root / "Bench"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(_rgb(24, 20, seed=k)).save(folder / f"good{k}.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "cut.jpg").write_bytes(_encoded(_rgb(12, 10), "JPEG")[:300])
    (folder / "text.png").write_bytes(b"hello\n")
    (folder / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    Image.fromarray(_rgb(1, 1)).save(folder / "dot.png")
    return folder, 2


def test_evaluate_skips_bad_images_and_scores_the_rest(tmp_path: Path, capsys, caplog) -> None:
    folder, good = _eval_folder(tmp_path)
    with caplog.at_level(logging.WARNING):
        code = evaluate.main(["--model", "bicubic", "--data", str(folder), "--scale", "2", "--no-cache", "--json"])
    assert code == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["images"] == good and np.isfinite(result["psnr"])
    assert any("skipped 5 unreadable image(s) of 7" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("only_bad", "none of the 2 images could be read"),
        ("missing", "image folder not found"),
        ("not_a_model", "is not a model file"),
        ("wrong_scale", "is a x2 model, but x3 was asked for"),
    ],
)
def test_evaluate_user_errors(tmp_path: Path, weights: Path, capsys, setup: str, message: str) -> None:
    folder = tmp_path / "Set"
    folder.mkdir()
    Image.fromarray(_rgb(16, 16)).save(folder / "ok.png")
    model, scale = "bicubic", "2"
    if setup == "only_bad":
        (folder / "ok.png").write_bytes(b"")
        (folder / "t.png").write_bytes(b"text")
    elif setup == "missing":
        folder = tmp_path / "nowhere"
    elif setup == "not_a_model":
        (tmp_path / "w.ckpt").write_text("hello")
        model = str(tmp_path / "w.ckpt")
    else:
        model, scale = str(weights), "3"
    code = evaluate.main(["--model", model, "--data", str(folder), "--scale", scale, "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_training_set_with_corrupt_images_skips_and_counts(tmp_path: Path, caplog) -> None:
    folder, good = _eval_folder(tmp_path)
    module = SRDataModule(
        str(folder), scale=2, val_dirs={}, patch_size=4, batch_size=2, patches_per_image=2, num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        module.prepare_data()
        module.setup("fit")
    assert [item.name for item in module.train_set.items] == ["good0.png", "good1.png"]
    assert any("skipped 5 unreadable image(s) of 7" in r.getMessage() for r in caplog.records)
    batch = next(iter(module.train_dataloader()))
    assert batch["lr"].shape == (2, 3, 4, 4) and batch["hr"].shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------- the table of RELIABILITY.md
def describe_outputs(out: Path) -> str:
    """``"a_x2.png 12x8 RGB"`` for every image written to ``out``."""
    if not out.is_dir():
        return "no output"
    described = []
    for path in sorted(out.iterdir()):
        with Image.open(path) as image:
            described.append(f"{path.name} {image.width}x{image.height} {image.mode}")
    return ", ".join(described) or "no output"


def print_table() -> None:
    """One markdown row per case from a real run: the kind, the exit code, what was written and stderr."""
    print("| # | input | exit | written | stderr (first line) |\n| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        weights = tiny_weights(Path(tmp) / "model")
        for number, case in enumerate(CASES, 1):
            root = Path(tmp) / f"case{number}"
            root.mkdir()
            with pytest.MonkeyPatch.context() as monkeypatch:
                code, err = run_case(case, root, weights, monkeypatch)
            lines = [line.strip() for line in err.splitlines() if line.strip()]
            shown = next((line for line in lines if not line.endswith("failed:")), "")
            shown = shown.replace(str(root), "…").replace("|", "\\|")
            shown = shown if len(shown) <= 200 else shown[:200] + " …"
            verdict = "" if code == case.code and case.message in err else " **UNEXPECTED**"
            print(f"| {number} | {case.kind} | {code}{verdict} | {describe_outputs(root / 'out')} | {shown} |")


if __name__ == "__main__":
    print_table()

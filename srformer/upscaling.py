"""Upscaling image files: the streaming pipeline from an image file through a model to an image file.

:func:`upscale_file` reads an image robustly (:mod:`srformer.imageio`), upscales it with a
:class:`~srformer.handle.ModelHandle` in tiles (:func:`srformer.inference.upscale_bands`), and writes it
atomically. The result streams from the model to the file one row of tiles at a time, converted to 8 or 16
bits on the way: PNG and TIFF are encoded band by band, so memory does not grow with the image; JPEG and WebP
are assembled in uint8 and encoded once. Output sizes a format cannot hold are refused before any compute,
and so is an output folder whose disk is too full (a disk that fills up later stops with one sentence). An
existing file is never replaced unless :attr:`UpscaleOptions.overwrite`::

    from srformer.handle import open_model
    from srformer.upscaling import UpscaleOptions, upscale_file

    handle = open_model("x4", device="cuda")
    result = upscale_file(handle, "photo.jpg", "photo_x4.png", UpscaleOptions(tta=True), on_tile=print)

The rest serves a run over many files (the ``srformer upscale`` command, benches, jobs): expanding inputs,
planning output names that collide with nothing, checking output sizes before any compute, and ``--model
auto``, which chooses a shipped model per file (:class:`AutoModel`, :mod:`srformer.autoselect`).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srformer.autoselect import Choice, choose_model
from srformer.errors import ImageError, SRFormerError
from srformer.handle import ModelHandle, Tile, open_model
from srformer.imageio import (
    DEFAULT_COMPRESSION,
    DEFAULT_MAX_PIXELS,
    FORMATS,
    INPUT_EXTENSIONS,
    LoadedImage,
    check_free_space,
    check_output_size,
    output_layout,
    peek_size,
    read_image,
    to_pixels,
    write_pixel_bands,
)
from srformer.inference import DEFAULT_TILE_OVERLAP, upscale_bands

#: Output rows converted to integers at a time: bounds the float temporaries of a band of a wide image, which
#: are allocated between two tiles' forward passes and fragment the heap those reuse (256 rows: about 60 MB
#: of temporaries per chunk 8000 px wide, and a 48 MP job's peak RSS 35 MB higher, 1290 against 1255 MiB).
_CONVERT_ROWS = 32

#: Width of the white gap between the two halves of a comparison image.
COMPARE_GAP = 8

_GLOB_CHARS = set("*?[")

#: PNG text keys under which ``--model auto`` records its choice and the reason for it.
MODEL_KEY, REASON_KEY = "srformer:model", "srformer:model-reason"

TileProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class UpscaleOptions:
    """How to upscale and write one file.

    Attributes:
        tile: tile side in input pixels, ``"auto"`` (sized from the free memory), or ``None`` (whole image).
        tile_overlap: overlap of neighbouring tiles in input pixels (rounded up to the size multiple).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``; refused where the device or the model cannot.
        tta: x8 self-ensemble (flips and rotations): better, 8 times slower.
        quality: JPEG/WebP quality.
        compression: PNG/TIFF zlib level, 0-9.
        overwrite: replace existing output files (else an existing one is an :class:`ImageError`).
        max_pixels: refuse inputs with more pixels (decompression bomb guard); ``None``: no limit.
        compare: also write ``<destination stem>_compare<suffix>``: bicubic | SR side by side.
    """

    tile: Tile = "auto"
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    precision: str = "fp32"
    tta: bool = False
    quality: int = 95
    compression: int = DEFAULT_COMPRESSION
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    compare: bool = False


@dataclass(frozen=True)
class UpscaleResult:
    """What :func:`upscale_file` wrote.

    Attributes:
        destination: the upscaled image.
        compare_destination: the bicubic | SR comparison image, or ``None``.
        width, height: the upscaled image's size in pixels.
        notes: what the user should know: the input's (first frame of an animation, ...) and what the output
            format could not keep (16 bits, alpha).
    """

    destination: Path
    compare_destination: Path | None
    width: int
    height: int
    notes: tuple[str, ...] = ()

    @property
    def output_pixels(self) -> int:
        return self.width * self.height


@dataclass
class Job:
    """One image to upscale: where it comes from and where its result (and comparison image) go."""

    source: Path
    target: Path
    compare_target: Path | None


def compare_path(destination: str | Path) -> Path:
    """Where the comparison image of ``destination`` goes: ``<stem>_compare<suffix>`` beside it."""
    destination = Path(destination)
    return destination.with_name(f"{destination.stem}_compare{destination.suffix}")


def upscale_file(
    handle: ModelHandle,
    source: str | Path,
    destination: str | Path,
    options: UpscaleOptions = UpscaleOptions(),  # noqa: B008 (frozen: one shared default is safe)
    on_tile: TileProgress | None = None,
    *,
    image: LoadedImage | None = None,
    metadata: Mapping[str, str] | None = None,
) -> UpscaleResult:
    """Upscale the image file ``source`` with ``handle`` and write ``destination`` (its format from its suffix),
    streaming from the model to the file.

    Args:
        handle: the model (:func:`srformer.handle.open_model`).
        source: an image file :func:`srformer.imageio.read_image` reads.
        destination: the file to write; its folder is created if missing.
        options: see :class:`UpscaleOptions`.
        on_tile: called as ``on_tile(done, total)`` after each tile (over all self-ensemble passes).
        image: ``source`` already decoded (e.g. to choose the model from it), to save decoding it twice.
        metadata: text to record in the output (PNG iTXt chunks; other formats do not keep it).

    Raises :class:`ImageError` for this image (unreadable, too large for its format, output exists), an
    :class:`~srformer.inference.InferenceError` for a precision the model or device cannot run,
    :class:`~srformer.imageio.DiskFullError` when no more output fits.
    """
    source, destination = Path(source), Path(destination)
    compare_target = compare_path(destination) if options.compare else None
    if not options.overwrite:
        for path in filter(None, (destination, compare_target)):
            if path.exists():
                raise ImageError(f"{path} already exists (pass --overwrite to replace it)")
    handle.check_precision(options.precision)
    tile = handle.tile_for(options.tile, options.precision)
    if image is None:
        image = read_image(source, max_pixels=options.max_pixels)
    scale = handle.scale
    width, height = image.width * scale, image.height * scale
    layout = output_layout(destination, image.grayscale, image.alpha is not None, image.bit_depth)
    needed = layout.estimated_file_bytes(width, height)
    compare_layout = None
    if compare_target is not None:
        compare_layout = output_layout(compare_target, image.grayscale, False, 8)
        needed += compare_layout.estimated_file_bytes(2 * width + COMPARE_GAP, height)
    prepare_output_folder(destination.parent)
    check_free_space(destination, needed)

    lr = torch.from_numpy(image.rgb).permute(2, 0, 1)[None]
    alpha = None if image.alpha is None else torch.from_numpy(image.alpha)[None, None]
    compare_bands: list[np.ndarray] = []  # the comparison image is small enough to keep: written second

    def pixel_bands() -> Iterator[np.ndarray]:
        """The result as ``(rows, sW, C)`` integer samples, band by band, as the model produces it."""
        top = 0
        bands = upscale_bands(
            handle, lr.to(handle.device), tile, options.tile_overlap, options.precision, options.tta, on_tile
        )
        for band in bands:
            for start in range(0, band.shape[-2], _CONVERT_ROWS):
                rgb = band[0, :, start : start + _CONVERT_ROWS].permute(1, 2, 0).contiguous().cpu().numpy()
                bottom = top + rgb.shape[0]
                rows_alpha = None if alpha is None else bicubic_rows(alpha, scale, top, bottom)[0, 0].numpy()
                if compare_layout is not None:
                    bicubic = bicubic_rows(lr, scale, top, bottom)[0].permute(1, 2, 0).numpy()
                    compare_bands.append(to_pixels(side_by_side(bicubic, rgb), None, compare_layout))
                yield to_pixels(rgb, rows_alpha, layout)
                top = bottom

    common = {"icc_profile": image.icc_profile, "quality": options.quality, "overwrite": options.overwrite}
    if metadata:
        common["text"] = dict(metadata)
    write_pixel_bands(destination, pixel_bands(), width, height, layout, compression=options.compression, **common)
    notes = [*image.warnings, *layout.notes]
    if compare_target is not None and compare_layout is not None:
        compare_width = 2 * width + COMPARE_GAP
        write_pixel_bands(compare_target, compare_bands, compare_width, height, compare_layout, **common)
        notes += compare_layout.notes
    return UpscaleResult(destination, compare_target, width, height, tuple(notes))


@dataclass
class AutoModel:
    """``--model auto``: the shipped model :func:`srformer.autoselect.choose_model` picks for each input file,
    each model opened once and kept for the next file that picks it.

    Attributes:
        scale: the upscaling factor (x4 when ``None``): the classical model of that scale, or the real-world one.
        device: where the models run.
    """

    scale: int | None = None
    device: str | torch.device = "cpu"
    handles: dict[str, ModelHandle] = field(default_factory=dict)

    def choose(self, source: str | Path, image: LoadedImage | None = None) -> tuple[ModelHandle, Choice]:
        """The handle for ``source`` (decoded ``image`` when the caller has it) and the choice behind it."""
        choice = choose_model(source, 4 if self.scale is None else self.scale, image=image)
        if choice.reference not in self.handles:
            self.handles[choice.reference] = open_model(choice.reference, scale=self.scale, device=self.device)
        return self.handles[choice.reference], choice


def choice_metadata(choice: Choice) -> dict[str, str]:
    """The text ``--model auto`` records in an output file: the model it chose and why."""
    return {MODEL_KEY: choice.reference, REASON_KEY: choice.reason}


def torch_bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, sH, sW)`` bicubic (a = -0.75, like PIL/OpenCV), clamped to [0, 1]."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def bicubic_rows(x: torch.Tensor, scale: int, top: int, bottom: int) -> torch.Tensor:
    """Rows ``[top, bottom)`` of ``torch_bicubic_upscale(x, scale)``, ``(B, C, bottom - top, sW)``, from the input
    rows they need: output row y reads input rows floor((y + 0.5) / s - 0.5) - 1 to that + 2, so two more rows
    on each side make every row equal to the whole upscale's."""
    first = max(top // scale - 2, 0)
    last = min(-(-bottom // scale) + 2, x.shape[-2])
    return torch_bicubic_upscale(x[..., first:last, :], scale)[..., top - first * scale : bottom - first * scale, :]


def side_by_side(bicubic: np.ndarray, sr: np.ndarray, gap: int = COMPARE_GAP) -> np.ndarray:
    """``(H, W, 3)`` twice -> ``(H, 2W + gap, 3)``: bicubic on the left, SR on the right, a white gap between."""
    height = bicubic.shape[0]
    separator = np.ones((height, gap, bicubic.shape[2]), dtype=bicubic.dtype)
    return np.concatenate([bicubic, separator, sr], axis=1)


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given, image files of folders (sorted, not recursive), and glob matches, without duplicates."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS)
            if not matches:
                raise SRFormerError(f"folder {path} holds no images ({', '.join(sorted(INPUT_EXTENSIONS))})")
        elif path.exists():
            matches = [path]
        elif _GLOB_CHARS & set(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise SRFormerError(f"no file matches {item!r}")
        else:
            raise SRFormerError(f"input not found: {item}")
        found.extend(matches)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_extension(source: Path, ext: str | None) -> str:
    """The output suffix: ``ext`` when given, else the input's when it can be written, else ``.png``."""
    if ext is not None:
        return "." + ext.lower()
    suffix = source.suffix.lower()
    return suffix if suffix in FORMATS else ".png"


def plan_jobs(sources: list[Path], outdir: Path, suffix: str, ext: str | None, compare: bool) -> list[Job]:
    """Output paths of every input; an output that is an input, or that two inputs share, is refused."""
    inputs = {p.resolve() for p in sources}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for source in sources:
        target = outdir / f"{source.stem}{suffix}{output_extension(source, ext)}"
        compare_target = compare_path(target) if compare else None
        for path in filter(None, (target, compare_target)):
            resolved = path.resolve()
            if resolved in inputs:
                raise SRFormerError(
                    f"output {path} would overwrite an input image; choose another output folder or --suffix"
                )
            if resolved in claimed:
                raise SRFormerError(
                    f"{claimed[resolved]} and {source} would both be written to {path}; use --ext or rename one"
                )
            claimed[resolved] = source
        jobs.append(Job(source, target, compare_target))
    return jobs


def check_output_sizes(jobs: list[Job], scale: int) -> None:
    """Refuse, before any compute, an output larger than its format holds (inputs sized from their headers)."""
    for job in jobs:
        size = peek_size(job.source)
        if size is None:
            continue  # unreadable: reported as a failure of this image when it is read
        width, height = size[0] * scale, size[1] * scale
        check_output_size(job.target, width, height)
        if job.compare_target is not None:
            check_output_size(job.compare_target, 2 * width + COMPARE_GAP, height)


def prepare_output_folder(outdir: Path) -> None:
    """Create ``outdir`` before any work, so that a path that cannot be a folder fails at once, not per image."""
    if outdir.exists() and not outdir.is_dir():
        raise SRFormerError(f"output folder {outdir} is an existing file, not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SRFormerError(f"cannot create the output folder {outdir} ({reason})") from None

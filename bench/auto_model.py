"""``--model auto`` against the two shipped x4 models it picks from, on LR photos of known degradation.

    nice -n 19 python bench/auto_model.py                 # Set14 (tuning) + B100 (held out); writes docs/BENCHMARKS.md
    nice -n 19 python bench/auto_model.py --sets Set14 --no-write

Every HR image of Set14 and B100 (``--data``) is cropped to a multiple of 4 and downscaled with MATLAB's bicubic
(the protocol's LR, :func:`srformer.scoring.benchmark_dataset`), then saved as a file the way a user would hand
it over: as PNG; as JPEG at quality 30, 50, 70, 90, 95 (Pillow's defaults); with gaussian noise of sigma 5, 10,
20 (0-255 units, seeded by the image name, :func:`srformer.data.benchmark_degradations.add_gaussian_noise_uint8`)
saved as PNG. Each file is read back with :func:`srformer.imageio.read_image`, upscaled x4 by the shipped classical
(``x4``) and real-world (``real``) models, and scored with the protocol (:func:`srformer.scoring.score_sr`: uint8
levels, Y channel, border 4). ``auto`` is the model :func:`srformer.autoselect.choose_model` picks for that file.

Per condition the table gives the mean Y-PSNR of each model, of ``auto``, of the better of the two models (the
better mean of the condition) and ``auto`` minus that. The target (issue 24): ``auto`` within 0.05 dB of the better
model at every level.

The noise threshold is tuned here, on Set14 only: every threshold from 0 to 30 (step 0.1) is tried on the same
per-image scores, and costs the sum over conditions of how far each misses the target; the chosen threshold is
the middle of the run of thresholds within 0.005 dB of the least cost (as far as the measurements allow from the
clean images' estimates on one side and the noisy ones' on the other). The JPEG quality threshold is swept the same
way and reported (the rule ships the issue's <= 90). B100 is held out and scored with the thresholds that ship
(:data:`srformer.autoselect.NOISE_SIGMA_THRESHOLD`, :data:`~srformer.autoselect.JPEG_QUALITY_THRESHOLD`).

Model outputs are not kept: each image's two scores are cached per (set, condition) in ``--cache-dir`` (keyed by
the two models' weights); the LR files, the estimates and auto's picks are remade on every run (seconds), so a
re-run after a change to :mod:`srformer.autoselect` runs no model.
Runs on one thread (the machine's cores are busy with training).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

from srformer import autoselect, shipped  # noqa: E402
from srformer.checkpoint import load_model  # noqa: E402
from srformer.data.benchmark_degradations import add_gaussian_noise_uint8  # noqa: E402
from srformer.data.cache import ImageCache, default_cache_dir  # noqa: E402
from srformer.imageio import read_image  # noqa: E402
from srformer.inference import upscale_tensor  # noqa: E402
from srformer.pixels import to_uint8  # noqa: E402
from srformer.scoring import benchmark_dataset, score_sr  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmark"
SCALE = 4
TUNING_SET = "Set14"
THRESHOLDS = np.round(np.arange(0.0, 30.01, 0.1), 1)
JPEG_THRESHOLDS = np.arange(50, 100)
#: Thresholds whose worst shortfall is within this of the best count as equally good.
TIE_DB = 0.005
TARGET_DB = 0.05
METHODS = ("classical", "real")


@dataclass(frozen=True)
class Condition:
    """How an LR image is handed over: a PNG, a JPEG of ``quality``, or a PNG with gaussian noise ``sigma``."""

    label: str
    quality: int | None = None
    sigma: float | None = None

    @property
    def key(self) -> str:
        if self.quality is not None:
            return f"jpeg{self.quality}"
        return "png" if self.sigma is None else f"noise{self.sigma:g}"

    def save(self, lr: np.ndarray, name: str, folder: Path) -> Path:
        """Write the ``(h, w, 3)`` uint8 LR of image ``name`` into ``folder`` as this condition hands it over."""
        if self.quality is not None:
            path = folder / f"{Path(name).stem}.jpg"
            Image.fromarray(lr).save(path, quality=self.quality)
            return path
        if self.sigma is not None:
            lr = add_gaussian_noise_uint8(lr, self.sigma, name)
        path = folder / f"{Path(name).stem}.png"
        Image.fromarray(lr).save(path)
        return path


CONDITIONS = (
    Condition("PNG"),
    *(Condition(f"JPEG q{q}", quality=q) for q in (30, 50, 70, 90, 95)),
    *(Condition(f"noise sigma {s}", sigma=float(s)) for s in (5, 10, 20)),
)


def _models_key(paths: dict[str, Path]) -> str:
    """A short digest of the models' weights, so cached scores follow a retrained model."""
    digest = hashlib.sha1()
    for method in METHODS:
        digest.update(paths[method].read_bytes())
    return digest.hexdigest()[:12]


def score_condition(
    folder: Path,
    condition: Condition,
    models: dict[str, torch.nn.Module],
    cache: ImageCache,
    work: Path,
    scores: dict[str, dict[str, float]] | None,
) -> list[dict]:
    """Per image of ``folder``: the name, each model's Y-PSNR, the JPEG quality and noise estimates, and auto's
    pick (:func:`srformer.autoselect.choose_model` on the file). ``scores``: the models' Y-PSNR per image name
    from an earlier run (the models are run only for images it lacks)."""
    dataset = benchmark_dataset(folder, SCALE, cache)
    records = []
    for index in range(len(dataset)):
        sample = dataset[index]
        lr_levels = to_uint8(sample["lr"]).permute(1, 2, 0).numpy()
        path = condition.save(lr_levels, sample["name"], work)
        loaded = read_image(path)
        record = {"name": sample["name"]}
        if scores is not None and sample["name"] in scores:
            record.update(scores[sample["name"]])
        else:
            lr = torch.from_numpy(loaded.rgb).permute(2, 0, 1).unsqueeze(0)
            hr = sample["hr"].unsqueeze(0)
            with torch.no_grad():
                for method, model in models.items():
                    record[method] = float(score_sr(upscale_tensor(model, lr), hr, SCALE).psnr[0])
        choice = autoselect.choose_model(path, SCALE, image=loaded)
        record["jpeg_quality"] = choice.jpeg_quality
        record["noise_sigma"] = autoselect.noise_sigma(loaded.rgb)  # also where the JPEG quality decided
        record["auto"] = "real" if choice.reference == autoselect.REAL_WORLD_MODEL else "classical"
        records.append(record)
    return records


def auto_pick(record: dict, threshold: float, jpeg_threshold: int = autoselect.JPEG_QUALITY_THRESHOLD) -> str:
    """``choose_model``'s rule on a record's cached estimates, at other thresholds."""
    quality = record["jpeg_quality"]
    if quality is not None and quality <= jpeg_threshold:
        return "real"
    return "real" if record["noise_sigma"] > threshold else "classical"


def summarize(records: list[dict], picks: list[str]) -> dict[str, float]:
    """Means over one condition's images: each model, auto (``picks``), the better model, auto minus it."""
    means = {method: float(np.mean([r[method] for r in records])) for method in METHODS}
    means["auto"] = float(np.mean([r[pick] for r, pick in zip(records, picks, strict=True)]))
    means["better"] = max(means["classical"], means["real"])
    means["gap"] = means["auto"] - means["better"]
    means["real_picks"] = sum(pick == "real" for pick in picks)
    return means


def gaps(by_condition: dict[str, list[dict]], threshold: float, jpeg_threshold: int) -> list[float]:
    """Auto minus the better model (dB), per condition, at these thresholds."""
    return [
        summarize(records, [auto_pick(r, threshold, jpeg_threshold) for r in records])["gap"]
        for records in by_condition.values()
    ]


def excess(condition_gaps: list[float]) -> float:
    """How far the conditions that miss the target miss it, summed (dB, 0 when all meet it)."""
    return float(sum(max(0.0, -gap - TARGET_DB) for gap in condition_gaps))


def shortfall(cost: float) -> str:
    """:func:`excess` in words."""
    if cost <= 0.0005:
        return f"meets the {TARGET_DB} dB target on every condition"
    return f"misses the {TARGET_DB} dB target by {cost:.3f} dB (summed over the conditions that miss it)"


def tune(values: np.ndarray, cost: Callable[[float], float]) -> tuple[float, float, tuple[float, float]]:
    """The value of least ``cost``: the middle of the run of values within :data:`TIE_DB` of the least, so that it
    sits as far as the measurements allow from either side. Returns (value, its cost, the run's ends)."""
    costs = np.array([cost(value) for value in values])
    best = int(np.argmin(costs))
    good = costs <= costs[best] + TIE_DB
    low, high = best, best
    while low > 0 and good[low - 1]:
        low -= 1
    while high < len(values) - 1 and good[high + 1]:
        high += 1
    middle = (low + high) // 2
    return float(values[middle]), float(costs[middle]), (float(values[low]), float(values[high]))


def estimate_ranges(records: list[dict]) -> str:
    """``min-max`` of the noise estimates of one condition's images."""
    sigmas = [r["noise_sigma"] for r in records]
    return f"{min(sigmas):.1f}-{max(sigmas):.1f}"


def table(by_condition: dict[str, list[dict]], threshold: float) -> tuple[str, float]:
    """Markdown rows for one set at ``threshold``, and the worst gap (auto minus better, dB)."""
    rows = [
        "| condition | classical x4 | real x4 | auto | better of two | auto - better | auto picks real | noise est. |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    worst = float("inf")
    for condition in CONDITIONS:
        records = by_condition[condition.key]
        means = summarize(records, [auto_pick(r, threshold) for r in records])
        worst = min(worst, means["gap"])
        rows.append(
            f"| {condition.label} | {means['classical']:.2f} | {means['real']:.2f} | {means['auto']:.2f} |"
            f" {means['better']:.2f} | {means['gap']:+.3f} | {means['real_picks']}/{len(records)} |"
            f" {estimate_ranges(records)} |"
        )
    return "\n".join(rows), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set14/ and B100/")
    parser.add_argument("--sets", nargs="+", default=[TUNING_SET, "B100"], help="benchmark sets (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <srformer cache>/auto_model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache_root = args.cache_dir or default_cache_dir() / "auto_model"
    images = ImageCache(default_cache_dir() / "decoded")
    paths = {"classical": shipped.model_path(shipped.DEFAULT_BY_SCALE[SCALE]), "real": shipped.model_path("real")}
    models = {method: load_model(path).eval() for method, path in paths.items()}
    key = _models_key(paths)

    results: dict[str, dict[str, list[dict]]] = {}
    for name in args.sets:
        results[name] = {}
        for condition in CONDITIONS:
            cached = cache_root / key / f"{name}_{condition.key}.json"
            scores = json.loads(cached.read_text()) if cached.is_file() else None
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as work:
                records = score_condition(args.data / name, condition, models, images, Path(work), scores)
            if scores is None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({r["name"]: {m: r[m] for m in METHODS} for r in records}, indent=1))
                print(
                    f"{name} {condition.label}: {len(records)} images in {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
            results[name][condition.key] = records
            # The tuning sweep replays choose_model's rule on the cached estimates: it must agree with it.
            replayed = [auto_pick(r, autoselect.NOISE_SIGMA_THRESHOLD) for r in records]
            if replayed != [r["auto"] for r in records]:
                raise SystemExit("auto_pick disagrees with autoselect.choose_model: update the bench's replay")

    shipped_threshold = autoselect.NOISE_SIGMA_THRESHOLD
    shipped_jpeg = autoselect.JPEG_QUALITY_THRESHOLD
    lines = []
    best_q = None
    if TUNING_SET in results:
        tuning = results[TUNING_SET]
        tuned, cost, (low, high) = tune(THRESHOLDS, lambda t: excess(gaps(tuning, t, shipped_jpeg)))
        lines.append(
            f"Noise threshold tuned on {TUNING_SET} (JPEG rule: quality <= {shipped_jpeg}): {tuned:g}; every threshold"
            f" from {low:g} to {high:g} {shortfall(cost)}. Shipped (`autoselect.NOISE_SIGMA_THRESHOLD`):"
            f" {shipped_threshold:g}."
        )
        best_q, cost_q, (low_q, high_q) = tune(JPEG_THRESHOLDS, lambda q: excess(gaps(tuning, shipped_threshold, q)))
        lines.append(
            f"The JPEG rule measured the same way (noise threshold {shipped_threshold:g}): each quality threshold from"
            f" {low_q:g} to {high_q:g} {shortfall(cost_q)} on {TUNING_SET}; the issue's <= {shipped_jpeg}"
            f" {shortfall(excess(gaps(tuning, shipped_threshold, shipped_jpeg)))}."
        )
    for name, by_condition in results.items():
        rows, worst = table(by_condition, shipped_threshold)
        role = "tuning set" if name == TUNING_SET else "held out"
        verdict = "meets" if worst >= -TARGET_DB else "misses"
        lines.append(
            f"**{name}** ({role}, {len(by_condition['png'])} images), noise threshold {shipped_threshold:g}, JPEG"
            f" quality <= {shipped_jpeg}: worst auto - better {worst:+.3f} dB ({verdict} the {TARGET_DB} dB target)."
            f"\n\n{rows}"
        )
        notes = []
        if name != TUNING_SET:
            own, own_cost, (own_low, own_high) = tune(
                THRESHOLDS, lambda t, records=by_condition: excess(gaps(records, t, shipped_jpeg))
            )
            notes.append(
                f"For scale, not used: the noise threshold best for {name} itself would be {own:g} ({own_low:g} to"
                f" {own_high:g}): it {shortfall(own_cost)}."
            )
        if best_q is not None:
            alternative = min(gaps(by_condition, shipped_threshold, int(best_q)))
            notes.append(f"With JPEG quality <= {best_q:g} instead, the worst auto - better is {alternative:+.3f} dB.")
        if notes:
            lines.append(" ".join(notes))
    report = "\n\n".join(lines)
    print(report)
    if not args.no_write:
        default_sets = args.sets == parser.get_default("sets")
        command = "nice -n 19 python bench/auto_model.py" + ("" if default_sets else " --sets " + " ".join(args.sets))
        body = (
            "`--model auto` picks, per input, the shipped real-world x4 model (JPEG quality <= 90 from the"
            " quantization tables, or estimated noise sigma above the threshold) or the classical x4 model. LR: MATLAB"
            " bicubic x4 of the HR, handed over as PNG, JPEG (Pillow) or PNG with gaussian noise; Y-PSNR, border 4."
            " 'better of two' is the better of the two models' means per condition; 'noise est.' the range of the"
            " wavelet noise estimates (0-255 units) over the images. The scores do not depend on the machine;"
            f" measured {datetime.date.today().isoformat()} ({platform.machine()}, torch {torch.__version__}, one"
            " thread). The noise estimator reads texture as noise: clean textured LR estimates as high as sigma-5"
            " noise on a smooth image, which is why no threshold parts them (noise sigma 5 and PNG on B100).\n\n"
            f"`{command}`\n\n{report}\n"
        )
        write_section("Choosing the model per image (--model auto)", body)


if __name__ == "__main__":
    main()

"""Validation PSNR against training time for a run made of one or more phases (a run continued by another
with ``init_weights``), from the run folders that ``train.py`` writes.

    python bench/training_curve.py --runs RUN_PHASE1 RUN_PHASE2 --set Set5 --plot docs/training_curve_x4.png

Reads every ``csv/version_*/metrics.csv`` of each run folder (one version per session of a resumed run).
The time of a validation is the ``time/train_hours`` column (the ``TrainingClock`` callback); for runs
made before that callback existed, the modification time of the step's panel PNG minus the time the run
folder's config was written. Later phases are placed after the end of the earlier ones, in steps and hours.
Prints a markdown table, writes it as a section of docs/BENCHMARKS.md (``--no-write`` to skip) and, with
``--plot``, a PNG.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402


@dataclass
class Point:
    phase: int
    step: int
    hours: float
    psnr: float
    ssim: float


def read_phase(run: Path, set_name: str, phase: int) -> list[Point]:
    """Validation points of one run folder, in its own steps and hours."""
    rows: list[dict[str, str]] = []
    versions = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1]))
    if not versions:
        raise SystemExit(f"error: no csv/version_*/metrics.csv under {run} (train with logger=csv or wandb_csv)")
    for path in versions:
        with path.open(newline="") as file:
            rows += list(csv.DictReader(file))
    started = (run / ".hydra" / "config.yaml").stat().st_mtime
    points: list[Point] = []
    clock = {int(r["step"]): float(r["time/train_hours"]) for r in rows if r.get("time/train_hours")}
    for row in rows:
        if not row.get(f"val/{set_name}/psnr"):
            continue
        logged_step = int(row["step"])
        step = logged_step + 1  # Lightning logs a validation at the index of the step's last batch
        if logged_step in clock:
            hours = clock[logged_step]
        else:
            panel = run / "panels" / f"step{step:07d}_0.png"
            if not panel.is_file():
                raise SystemExit(f"error: {run} has no time/train_hours and no {panel.name} to time step {step}")
            hours = (panel.stat().st_mtime - started) / 3600.0
        points.append(Point(phase, step, hours, float(row[f"val/{set_name}/psnr"]), float(row[f"val/{set_name}/ssim"])))
    return sorted(points, key=lambda p: p.step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="run folders, one per phase, in order")
    parser.add_argument("--set", default="Set5", help="validation set to plot")
    parser.add_argument("--targets", nargs="*", type=float, default=[], help="dashed horizontal lines (dB)")
    parser.add_argument("--bicubic", type=float, default=None, help="bicubic PSNR of the set, drawn as a line")
    parser.add_argument("--title", default="Default x4 model: PSNR against training time")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    points: list[Point] = []
    step_offset, hour_offset = 0, 0.0
    for phase, run in enumerate(args.runs, start=1):
        if not run.is_dir():
            raise SystemExit(f"error: no run folder at {run}")
        phase_points = read_phase(run, args.set, phase)
        points += [Point(p.phase, p.step + step_offset, p.hours + hour_offset, p.psnr, p.ssim) for p in phase_points]
        if phase_points:
            step_offset, hour_offset = points[-1].step, points[-1].hours

    lines = [
        f"| phase | step | training hours | {args.set} PSNR (dB) | {args.set} SSIM |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {p.phase} | {p.step} | {p.hours:.2f} | {p.psnr:.2f} | {p.ssim:.4f} |" for p in points]
    command = "python bench/training_curve.py " + " ".join(sys.argv[1:])
    body = f"`{command}`\n\nValidation on {args.set} with the EMA weights, as logged during training.\n\n" + "\n".join(
        lines
    )
    print(body)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axis = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
        for phase in sorted({p.phase for p in points}):
            shown = [p for p in points if p.phase == phase]
            axis.plot([p.hours for p in shown], [p.psnr for p in shown], "o-", label=f"phase {phase}")
        for target in args.targets:
            axis.axhline(target, color="tab:red", linestyle="--", linewidth=1)
            axis.annotate(f"target {target:g} dB", (0, target), textcoords="offset points", xytext=(4, 3), fontsize=8)
        if args.bicubic is not None:
            axis.axhline(args.bicubic, color="tab:gray", linestyle=":", linewidth=1)
            axis.annotate(f"bicubic {args.bicubic:g} dB", (0, args.bicubic), textcoords="offset points",
                          xytext=(4, 3), fontsize=8)  # fmt: skip
        axis.set_xlim(left=0)
        axis.set_xlabel("training wall-clock hours")
        axis.set_ylabel(f"{args.set} PSNR-Y (dB)")
        axis.set_title(args.title, fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="lower right")
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"plot: {args.plot}")
    if not args.no_write:
        write_section(args.title, body)


if __name__ == "__main__":
    main()

"""The training campaign (issue 23): the shipped models trained for as many CPU hours as the project can give,
on both cores, resumed every session and on any machine.

    python bench/campaign.py status    # each run: CPU hours, steps, restarts, last scores, budget left, state
    python bench/campaign.py start     # resume the lanes in the background (one process and thread per core)
    python bench/campaign.py stop      # each run saves its state and stops (then commit bench/campaign/)
    python bench/campaign.py report    # tables + PSNR-vs-CPU-hours plot, written to docs/BENCHMARKS.md
    python bench/campaign.py ship light@480 x4   # a score point's weights become a shipped model
    python bench/campaign.py paired-loss         # light minus light-none: training loss on the same batches

A run is one ``bench/equal_time.py`` training (one model, one recipe, a budget in CPU minutes with the cosine
annealed at its end, scored along the way) in its own folder ``bench/campaign/<run>/``. Runs are laid out in
lanes, one per core; a lane trains its runs one after the other, so runs meant to be compared sit in different
lanes at the same time (the machine's speed drifts between sessions, see docs/BENCHMARKS.md). More lanes than
cores is allowed: every run's clock is its own CPU time, so sharing a core slows the wall clock, not the result.

What a run leaves in its folder, and what survives a new machine:

* ``<model>.pt``: the full state (weights, EMA, Adam's moments, clock, step, random state), every CPU minute
  and at each score point. Git-ignored (about 3x the weights). A run that finds it resumes exactly.
* ``<model>.resume.safetensors``: the slim state, written with every ``.pt``: weights, EMA, clock, step (= the
  position in the data stream), random state. Committed. A run that finds only this (a new machine) restarts
  warm: Adam's moments start from zero and the learning rate ramps up again over 2 CPU minutes
  (``equal_time.REWARM_SECONDS``); the data order and the schedule go on as before. Each warm restart is
  counted in ``<model>.json`` (``restarts``) and in the status table.
* ``<model>.json``: the curve (every score point: CPU minutes, steps, loss, learning rate, Set5/Set14/B100).
* ``<model>_<minutes>m.safetensors`` (+ ``.json``): the scored (EMA) weights at each score point, loadable by
  ``python -m srformer.evaluate --model ...``: the weights behind every reported number.

Checkpoint selection never looks at B100: the score points are fixed in advance, and B100 is only reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROOT = HERE / "campaign"  # runs' folders (committed state), logs/ and lane files (ignored)
SETS = ("Set5", "Set14", "B100")
#: What a real-world run is scored on: the clean sets, D1 on each, and the heavy noise it must learn to remove.
REAL_SETS = (*SETS, "Set5_D1", "Set14_D1", "B100_D1", "Set14_noise20")


@dataclass(frozen=True)
class Run:
    """One training of the campaign: ``bench/equal_time.py`` arguments and where it sits."""

    name: str  # folder name under bench/campaign/
    model: str  # a bench/peers.py name: "light", "light:none", "small", ...
    minutes: float  # the budget: CPU minutes, the cosine annealed at the end
    lane: int  # which core's queue
    purpose: str
    patch: int = 32
    scale: int = 4
    amp: str = "fp32"
    init: str = ""  # "<run>@<minutes>": start from that run's scored weights at that point
    degradation: str = ""  # a configs/degradation name: train on LR made by that random pipeline (real-world)
    sets: tuple[str, ...] = SETS  # scored at each point; "Set14_D1": Set14 with the fixed D1 degradation
    points: tuple[float, ...] = (15, 30, 60, 120, 240, 480, 720, 960, 1200)
    extra: tuple[str, ...] = field(default=())  # more equal_time.py arguments

    @property
    def folder(self) -> Path:
        return ROOT / self.name

    @property
    def stem(self) -> str:
        return self.model.replace(":", "_").replace("+", "_")

    def init_file(self) -> tuple[str, float]:
        """(path relative to the repository, CPU minutes that made it) of the start, or ("", 0)."""
        if not self.init:
            return "", 0.0
        source, minutes = self.init.split("@")
        start = RUNS[source]
        path = start.folder / f"{start.stem}_{float(minutes):g}m.safetensors"
        # relative: the path is part of the run's identity, which must not depend on where the checkout is
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        return str(where), float(minutes) + start.init_file()[1]

    def command(self) -> list[str]:
        init, init_minutes = self.init_file()
        marks = [p for p in self.points if p < self.minutes]
        return [
            sys.executable,
            str(HERE / "equal_time.py"),
            "--models", self.model,
            "--minutes", f"{self.minutes:g}",
            "--horizon", f"{self.minutes:g}",
            "--patch", str(self.patch),
            "--scale", str(self.scale),
            "--amp", self.amp,
            *(["--init", init, "--init-minutes", f"{init_minutes:g}"] if init else []),
            *(["--degradation", self.degradation] if self.degradation else []),
            *(["--sets", *self.sets] if self.sets != SETS else []),
            "--points", *(f"{p:g}" for p in marks), f"{self.minutes:g}",
            "--save-every", "1",
            "--folder", str(self.folder),
            "--no-write",
            *self.extra,
        ]  # fmt: skip


# The plan, in the order each lane trains it. Later stages are added here when the earlier ones have decided
# them (a lane stops when it has nothing left). 60-CPU-minute recipe screen first (issue 23: at most 4 CPU hours).
PLAN: list[Run] = [
    Run("recipe-p32", "light", 60, lane=0, purpose="recipe screen: LR patch 32 (the 2-hour comparisons' recipe)"),
    Run("recipe-p48", "light", 60, lane=1, purpose="recipe screen: LR patch 48 (attention sees 3x3 windows)", patch=48),
    # One factor at a time against recipe-p32, all four at once (the same machine conditions for every variant).
    Run("recipe-bf16", "light", 60, lane=2, purpose="recipe screen: bf16 autocast, patch 32", amp="bf16"),
    Run("recipe-x2stage", "light", 20, lane=3, purpose="recipe screen: the x2 stage of x2start", scale=2),
    Run(
        "recipe-x2start",
        "light",
        40,
        lane=3,
        purpose="recipe screen: x4 from 20 CPU min of x2",
        init="recipe-x2stage@20",
    ),
    # Recipe chosen by the screen's curves (docs/BENCHMARKS.md, campaign): patch 32 beat 48 at 15, 30 and 60 min;
    # bf16 autocast beat fp32 at every point (+0.09 / +0.03 / +0.02 dB at 60, 3% more steps); the x2 start lost to
    # scratch at equal total CPU time (-0.04 / -0.03 / -0.02 at 60). Both models on that recipe, one per core.
    Run("light", "light", 480, lane=0, purpose="issue 23: MHSA + one MHCA block, 8 CPU h, p32 bf16", amp="bf16"),
    Run("light-none", "light:none", 480, lane=1, purpose="issue 23: MHSA only, 8 CPU h, p32 bf16", amp="bf16"),
    # Next stage (written 2026-12-06, before the pair's end, so that each lane goes on by itself): `light` goes on
    # as the x4 default whichever of the pair ends ahead. The shipped default keeps its MHCA blocks either way
    # (MHSA and MHCA together define this model; issue 23: "the architecture keeps its MHCA blocks either way"):
    # if `light:none` ends ahead, the gap is reported as the measured cost of the contract. Both runs below start
    # from `light`'s annealed 480-minute weights; the lane that finishes its half of the pair first waits for them.
    # - default-1 (dropped 2026-12-06 after 9 CPU minutes): a further 240-minute annealed segment of the default
    #   from those weights. `light@480` met the x4 targets (31.78 / 28.27 / 27.46 against 31.6 / 28.15 /
    #   27.38), which ends the default's training ("goes on as the new x4 default until the targets are met"); its
    #   schedule's second half had added only +0.08 / +0.04 / +0.04 dB, so a core's next 4 hours buy more as x2 / x3
    #   models of the `light` class (today's are 0.24M and 0.39M) than as a few hundredths more at x4.
    # - real-1: the real-world model retrained from the new default (issue 23): the `photo` mixture (widened to
    #   sigma 25 on 2026-12-06; the harness adds 0.022 CPU s per batch for it), scored clean and on the fixed
    #   D1 / noise20 sets at every point; judged at its annealed end, never on B100 alone; jpeg30 / noise10, the
    #   degradations it is not told about, scored after with `srformer evaluate`.
    # Then x2 / x3 from the default's weights (the body transfers, the upsampler starts fresh: EDSR's cross-scale
    # start; x3_small started the same way from x4_small), as CPU allows: x2-1 on the core that `default-1` had.
    Run(
        "real-1",
        "light",
        240,
        lane=0,
        purpose="issue 23: the real-world x4 model, from light@480, photo degradations",
        amp="bf16",
        init="light@480",
        degradation="photo",
        sets=REAL_SETS,
        extra=("--lr", "2e-4", "--seed", "2"),  # other patches than the first 240 minutes of `light` saw
    ),
    Run(
        "x3-1",
        "light",
        240,
        lane=0,
        purpose="issue 23: the x3 model, from light@480",
        amp="bf16",
        scale=3,
        init="light@480",
    ),
    # Added 2026-12-06 (session 15): real-1@240 (shipped as `real`) missed issue 23's D1 target by 0.01 dB on
    # Set14 and 0.04 on B100 (+0.09 / +0.06 over the previous real model against +0.10), its D1 curve nearly
    # flat (B100_D1 25.16 at 15 CPU min, 25.19 at 120, 25.21 annealed at 240). The remedy is compute, not
    # a different measure: the same run's next annealed 240 CPU minutes from its end, at half its peak rate.
    # After x3-1 (already training when real-1 ended): at real-1's last rate (+0.02 dB on B100_D1 from 120 to
    # 240 annealed) 4 more hours are unlikely to find the 0.04 missing, and x3-1 is a sure gain for x3 users.
    # On the 15 held-out photos real-1's D1 PSNR did not rise with CPU time either (28.44 at 15 CPU min, 28.39 at
    # 60 and 240): the `photo` mixture, widened to heavy noise, not compute, seems to bound D1 at this size. If
    # real-2 confirms that, the measured limit is the result (issue 23: keep the contract, report the limit).
    Run(
        "real-2",
        "light",
        240,
        lane=0,
        purpose="issue 23: the real-world model's next 4 CPU hours (from real-1@240), for D1",
        amp="bf16",
        init="real-1@240",
        degradation="photo",
        sets=REAL_SETS,
        extra=("--lr", "1e-4", "--seed", "4"),
    ),
    Run(
        "x2-1",
        "light",
        240,
        lane=1,
        purpose="issue 23: the x2 model, from light@480",
        amp="bf16",
        scale=2,
        init="light@480",
    ),
    # Added 2026-12-06 (session 14): lane 1 would idle while x3-1 trains on lane 0. The x4 default's next annealed
    # 240-minute segment from light@480 (what default-1 was to be, another seed): issue 23's flat-curve measure
    # (gain over 4 more CPU hours, both ends annealed), shipped only if it rises on the benchmarks and held out.
    Run(
        "default-2",
        "light",
        240,
        lane=1,
        purpose="issue 23: the x4 default's next 4 CPU hours (from light@480), the flat-curve measure",
        amp="bf16",
        init="light@480",
        extra=("--lr", "2e-4", "--seed", "3"),
    ),
    # Added 2026-12-07 (session 17): default-2 gained +0.065 / +0.019 / +0.024 dB over light@480 (Set5 / Set14 /
    # B100): B100 flat by the test (< +0.03 over 4 annealed CPU hours), Set5 not. The test again one
    # segment on: the next annealed 240 CPU minutes from default-2@240 (16 CPU hours in all). Shipped only if it
    # rises on the benchmarks and held out (default-2 fell held out, on `brick` most).
    Run(
        "default-3",
        "light",
        240,
        lane=1,
        purpose="issue 23: the x4 default's 12-16 CPU hours (from default-2@240), the flat-curve measure again",
        amp="bf16",
        init="default-2@240",
        extra=("--lr", "2e-4", "--seed", "5"),
    ),
    # Added 2026-12-07 (session 18): default-3 gained +0.044 / +0.026 / +0.022 dB over default-2@240: B100 flat by
    # the test again, Set5 still not (5 images; the Set5 gain fell from +0.065). Held out it fell once more
    # (15 photos: 31.92 vs the shipped x4's 32.04; `brick` -2.18 dB, the other 14 +0.03), so it was not shipped.
    # The test one segment further (16-20 CPU hours); shipped only if it rises on the benchmarks and held out.
    Run(
        "default-4",
        "light",
        240,
        lane=1,
        purpose="issue 23: the x4 default's 16-20 CPU hours (from default-3@240), the flat-curve measure again",
        amp="bf16",
        init="default-3@240",
        extra=("--lr", "2e-4", "--seed", "7"),
    ),
    # Added 2026-12-07 (session 18): real-2@240 (shipped as `real`: ahead of real-1 on every D1 set, noise 20 and
    # held out) reached D1 25.43 / 25.23 on Set14 / B100, the target 25.41 / 25.25: 0.02 short on B100, its curve
    # flat (25.21 at 15 CPU min, 25.23 at 120 and 240). One more segment, same recipe, tells whether compute still
    # moves it at this size; if not, the 0.02 is the measured limit.
    Run(
        "real-3",
        "light",
        240,
        lane=0,
        purpose="issue 23: the real-world model's 16-20 CPU hours (from real-2@240), for B100_D1",
        amp="bf16",
        init="real-2@240",
        degradation="photo",
        sets=REAL_SETS,
        extra=("--lr", "1e-4", "--seed", "6"),
    ),
    # Ended 2026-12-07 (session 20). default-4 gained +0.014 / +0.011 / +0.010 over default-3@240: under issue 23's
    # +0.03 on Set5 and B100, so the default's curve has flattened and the campaign stops by the rule.
    # real-3@240 (B100_D1 25.243 against the 25.247 target; level or ahead of real-2@240 on every mean, benchmarks
    # and held out) is the shipped `real`. A further segment is a new entry here, `init` any run's point.
]
RUNS = {run.name: run for run in PLAN}


# --- state of a run, read from its folder -----------------------------------------------------------------


@dataclass
class RunState:
    spent: float = 0.0  # CPU seconds (this run's own; init_minutes not included)
    step: int = 0
    restarts: int = 0
    points: list[dict] = field(default_factory=list)

    @property
    def last(self) -> dict | None:
        return self.points[-1] if self.points else None


def read_state(run: Run) -> RunState:
    state = RunState()
    results = run.folder / f"{run.stem}.json"
    if results.is_file():
        saved = json.loads(results.read_text())
        state.points = saved["points"]
        state.restarts = saved.get("restarts", 0)
        if state.points:
            state.spent, state.step = state.points[-1]["seconds"], state.points[-1]["steps"]
    slim = run.folder / f"{run.stem}.resume.safetensors"
    if slim.is_file():
        from safetensors import safe_open

        with safe_open(str(slim), framework="pt") as file:
            progress = json.loads(file.metadata()["progress"])
        if progress["spent"] >= state.spent:
            state.spent, state.step = progress["spent"], progress["step"]
            state.restarts = max(state.restarts, len(progress["restarts"]))
    return state


def is_done(run: Run) -> bool:
    return any(abs(p.get("mark_minutes", p["minutes"]) - run.minutes) < 1e-6 for p in read_state(run).points)


# --- lanes: background processes ---------------------------------------------------------------------------


def lane_file(lane: int) -> Path:
    return ROOT / "logs" / f"lane{lane}.json"


def lane_status(lane: int) -> dict | None:
    """The lane's pid and current run if its process is alive, else None."""
    path = lane_file(lane)
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    try:
        os.kill(info["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return info


def wait_for_start(run: Run, lane: int, stopping: list[int], poll: float = 5.0) -> bool:
    """True when ``run`` can start: it has no ``init``, or its start's weights exist. While another lane is still
    training the run they come from, the lane waits for them (the pair of a stage ends at about the same time,
    and the next stage may start from either); when nobody is, it says so and the lane stops (False)."""
    init, _ = run.init_file()
    source = RUNS[run.init.split("@")[0]] if run.init else None
    said = False
    while init and not (REPO / init).is_file():
        if stopping:
            return False
        producing = lane_status(source.lane) if source.lane != lane else None
        if not producing or producing.get("run") != source.name:
            print(f"lane {lane}: {run.name} waits for {init}, which no lane is training; lane stops", flush=True)
            return False
        if not said:
            print(f"lane {lane}: {run.name} waits for {init} (lane {source.lane} trains {source.name})", flush=True)
            said = True
        time.sleep(poll)
    return True


def run_lane(lane: int) -> int:
    """Train the lane's runs in order (skipping finished ones), each in a child process on one thread."""
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)
        if child is not None:
            child.send_signal(signal.SIGTERM)  # the run saves after its current step and exits

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for run in (r for r in PLAN if r.lane == lane):
        if stopping:
            break
        if is_done(run):
            continue
        if not wait_for_start(run, lane, stopping):
            return 0 if stopping else 1
        lane_file(lane).write_text(json.dumps({"pid": os.getpid(), "run": run.name, "since": time.time()}))
        print(f"lane {lane}: {run.name}: {' '.join(run.command()[1:])}", flush=True)
        log = (ROOT / "logs" / f"{run.name}.log").open("a")
        child = subprocess.Popen(run.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        code = child.wait()
        log.close()
        if stopping:  # the run saved its state and exited when told to
            break
        if code != 0:
            print(f"lane {lane}: {run.name} exited with {code} (see logs/{run.name}.log); lane stops", flush=True)
            return code
    lane_file(lane).unlink(missing_ok=True)
    print(f"lane {lane}: {'stopped' if stopping else 'nothing left to train'}", flush=True)
    return 0


def start() -> None:
    (ROOT / "logs").mkdir(parents=True, exist_ok=True)
    for lane in sorted({run.lane for run in PLAN}):
        if lane_status(lane):
            print(f"lane {lane}: already running ({lane_status(lane)})")
            continue
        if all(is_done(run) for run in PLAN if run.lane == lane):
            print(f"lane {lane}: every run done")
            continue
        log = (ROOT / "logs" / f"lane{lane}.log").open("a")
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "lane", str(lane)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it
        )
        print(f"lane {lane}: started (pid {process.pid}), log bench/campaign/logs/lane{lane}.log")


def stop(wait: float = 300.0) -> None:
    """SIGTERM to every lane: the current run writes its state after the step it is in, then everything exits."""
    pids = []
    for lane in sorted({run.lane for run in PLAN}):
        info = lane_status(lane)
        if info:
            os.kill(info["pid"], signal.SIGTERM)
            pids.append(info["pid"])
    deadline = time.time() + wait
    for pid in pids:
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(1)
    print(f"stopped {len(pids)} lane(s)" if pids else "no lane was running")


# --- status and report -------------------------------------------------------------------------------------


def scores_cell(point: dict | None) -> str:
    """Set5 / Set14 / B100 PSNR (clean), then any other set a run scores by name (``; Set14_D1 25.31``)."""
    if point is None:
        return "-"
    cell = " / ".join(f"{point['scores'][s]['psnr']:.2f}" if s in point["scores"] else "-" for s in SETS)
    others = [f"{name} {value['psnr']:.2f}" for name, value in point["scores"].items() if name not in SETS]
    return "; ".join([cell, *others])


def status_table() -> str:
    running = {info["run"] for lane in {r.lane for r in PLAN} if (info := lane_status(lane))}
    head = "| run | model | recipe | lane | CPU h (of budget) | steps | restarts | last point: Set5 / Set14 / B100 | state |"
    lines = [head, "|---|---|---|---:|---|---:|---:|---|---|"]
    for run in PLAN:
        state = read_state(run)
        _, init_minutes = run.init_file()
        recipe = f"x{run.scale}, p{run.patch}, {run.amp}" + (f", {run.degradation} LR" if run.degradation else "")
        recipe += f", from {run.init}" if run.init else ""
        hours = f"{(init_minutes * 60 + state.spent) / 3600:.2f} ({(init_minutes + run.minutes) / 60:.2f})"
        last = state.last
        at = f" at {last.get('mark_minutes', last['minutes']):g} min" if last else ""
        done = is_done(run)
        where = "running" if run.name in running else "done" if done else "waiting"
        lines.append(
            f"| {run.name} | {run.model} | {recipe} | {run.lane} | {hours} | {state.step:,} | {state.restarts} "
            f"| {scores_cell(last)}{at} | {where} |"
        )
    return "\n".join(lines)


def curves_table() -> str:
    """Every score point of every run: CPU minutes (including the start's), steps, Set5 / Set14 / B100."""
    lines = ["| run | CPU min | steps | Set5 / Set14 / B100 | weights |", "|---|---:|---:|---|---|"]
    for run in PLAN:
        _, init_minutes = run.init_file()
        for point in read_state(run).points:
            minutes = init_minutes + point.get("mark_minutes", point["minutes"])
            weights = point.get("weights", "")
            path = f"`bench/campaign/{run.name}/{weights}`" if weights else ""
            lines.append(f"| {run.name} | {minutes:g} | {point['steps']:,} | {scores_cell(point)} | {path} |")
    return "\n".join(lines)


def paired_table(first: str, second: str) -> str:
    """``first`` minus ``second`` (PSNR, dB) at every score point both runs have reached, with both step counts:
    issue 23's cross-attention question when the pair is ``light`` and ``light-none``."""
    points = [
        {p.get("mark_minutes", p["minutes"]): p for p in read_state(RUNS[name]).points} for name in (first, second)
    ]
    lines = [
        f"| CPU min | {first} steps | {second} steps | {first}: Set5 / Set14 / B100 | {second} | difference (dB) |",
        "|---:|---:|---:|---|---|---|",
    ]
    for minutes in sorted(set(points[0]) & set(points[1])):
        a, b = points[0][minutes], points[1][minutes]
        difference = " / ".join(
            f"{a['scores'][s]['psnr'] - b['scores'][s]['psnr']:+.3f}" if s in a["scores"] and s in b["scores"] else "-"
            for s in SETS
        )
        lines.append(
            f"| {minutes:g} | {a['steps']:,} | {b['steps']:,} | {scores_cell(a)} | {scores_cell(b)} | {difference} |"
        )
    return "\n".join(lines)


def plot(path: Path) -> None:
    """PSNR against CPU hours of every campaign run with a score point: one row of Set5 / Set14 / B100 per scale
    (a run started from another counts that run's hours; the real-world runs, trained on degraded LR, dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {run: read_state(run).points for run in PLAN}
    scales = sorted({run.scale for run, points in curves.items() if points}, reverse=True) or [4]
    fig, axes = plt.subplots(
        len(scales),
        len(SETS),
        figsize=(5.2 * len(SETS), 3.8 * len(scales)),
        constrained_layout=True,
        squeeze=False,
        sharex=True,
    )
    for row, scale in zip(axes, scales, strict=True):
        for axis, set_name in zip(row, SETS, strict=True):
            for run in (r for r in PLAN if r.scale == scale):
                _, init_minutes = run.init_file()
                points = [p for p in curves[run] if set_name in p["scores"]]
                if points:
                    hours = [(init_minutes * 60 + p["seconds"]) / 3600 for p in points]
                    psnr = [p["scores"][set_name]["psnr"] for p in points]
                    axis.plot(hours, psnr, marker="o", label=run.name, linestyle="--" if run.degradation else "-")
            axis.set_xlabel("training time (CPU hours, one thread)")
            axis.set_ylabel(f"{set_name} x{scale} PSNR-Y (dB)")
            axis.set_title(f"{set_name}, x{scale}")
            axis.ticklabel_format(axis="y", useOffset=False)
            axis.grid(True, alpha=0.3)
        row[0].legend(fontsize=8)
    fig.suptitle("Training campaign (BSD400, one CPU thread per run): PSNR against CPU time", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shipped_from_campaign() -> str:
    """Which shipped models are campaign points (``campaign.py ship`` records the point in their JSON)."""
    from srformer import shipped

    lines = []
    for name, path in shipped.installed().items():
        source = json.loads(path.with_suffix(".json").read_text()).get("source", "")
        if source.startswith("bench/campaign/"):
            lines.append(f"- `{name}` (`srformer/weights/{path.name}`): {source}")
    return "Shipped from the campaign (`python bench/campaign.py ship RUN@MINUTES NAME`):\n\n" + (
        "\n".join(lines) or "- none yet"
    )


def report(write: bool) -> str:
    sys.path.insert(0, str(HERE))
    from report import write_section

    body = (
        "`python bench/campaign.py report` (runs and their state: `bench/campaign/`, plan: `bench/campaign.py`)\n\n"
        "Each run trains on one CPU thread (process time, scoring excluded) with bench/equal_time.py's recipe: "
        "BSD400, batch 8, L1, Adam 5e-4 (0.9, 0.99), 3-minute warmup then cosine to 0 at the run's budget, as a "
        "function of CPU time; EMA of the weights (2-CPU-minute half-life) scored: Y-PSNR, MATLAB bicubic LR, "
        "full sets. A run started from another one's weights counts that run's CPU time in its own. The recipe column: "
        "scale, LR patch, precision (bf16: the forward pass under CPU autocast to bfloat16, loss and optimizer in "
        "fp32). Restarts: warm restarts from the committed slim state (weights, EMA, clock, data position; Adam's "
        "moments fresh and the rate ramped up over 2 CPU minutes).\n\n"
        "Recipe screen (1 CPU hour each, `light`, one factor at a time against patch 32 / fp32 / from scratch): "
        "patch 48 lost at 15, 30 and 60 CPU min (-0.31 / -0.20 / -0.13 dB at 60; a step costs 2.2x); bf16 "
        "autocast won at every point (+0.09 / +0.03 / +0.02 at 60, 3% more steps in the hour); 20 CPU min at x2 "
        "then 40 at x4 lost to 60 at x4 (-0.04 / -0.03 / -0.02). The 8-hour runs use patch 32, bf16, from scratch "
        "(`configs/experiment/bsd400_x4_light_campaign.yaml` is the same recipe for train.py).\n\n"
        f"{status_table()}\n\nEvery score point:\n\n{curves_table()}\n\n"
        "Cross-attention at equal CPU time: `light` (MHSA + one MHCA block) minus `light:none` (MHSA only), "
        "same recipe, trained side by side (issue 23's target: >= +0.05 dB on all three sets at 480 CPU min). "
        "Both switched together to the explicit attention path of bf16 CPU training (`bench/attention_paths.py`) "
        "at 148.5 (`light`, step 9,464) and 148.7 CPU min (`light:none`, step 10,727), resumed exactly from "
        "their full state: a `light` step costs 0.63 CPU s from there, 0.94 before; a `light:none` step 0.56 "
        "against 0.84. Both thus take about 1.5x the steps per CPU minute after that point:\n\n"
        f"{paired_table('light', 'light-none')}\n\n{shipped_from_campaign()}"
    )
    if write:
        image = REPO / "docs" / "campaign.png"
        plot(image)
        body += "\n\n![PSNR against CPU hours, every campaign run](campaign.png)"
        write_section("Training campaign (issue 23)", body)
    return body


def paired_losses(first: str, second: str) -> str:
    """Training loss of ``first`` minus ``second`` on the same batches (batch k is the same for every run of a
    recipe and seed), over the steps both full states still hold (a state keeps the losses since its last score
    point): a paired, equal-step comparison beside the equal-CPU-time one of :func:`paired_table`. Needs the
    ignored ``.pt`` files of both runs (this machine's); their learning rates differ at equal steps."""
    import statistics

    import torch

    losses = {}
    for name in (first, second):
        run = RUNS[name]
        path = run.folder / f"{run.stem}.pt"
        if not path.is_file():
            raise SystemExit(f"error: {name} has no full state here ({path.relative_to(REPO)}); it is not committed")
        state = torch.load(path, map_location="cpu", weights_only=True)
        losses[name] = (int(state["step"]) - len(state["losses"]), list(state["losses"]))
    (start_a, a), (start_b, b) = losses[first], losses[second]
    low, high = max(start_a, start_b), min(start_a + len(a), start_b + len(b))
    if high - low < 2:
        return f"{first} and {second} hold no common steps ({start_a}-{start_a + len(a)}, {start_b}-{start_b + len(b)})"
    a, b = a[low - start_a : high - start_a], b[low - start_b : high - start_b]
    differences = [x - y for x, y in zip(a, b, strict=True)]
    mean_a, mean_b, difference = statistics.fmean(a), statistics.fmean(b), statistics.fmean(differences)
    error = statistics.stdev(differences) / len(differences) ** 0.5
    return (
        f"steps {low:,}-{high - 1:,} ({high - low:,} batches, the same for both): training L1 {first} {mean_a:.6f}, "
        f"{second} {mean_b:.6f}; {first} minus {second} {difference:+.6f} "
        f"(standard error {error:.6f}, {difference / mean_b:+.2%})"
    )


def ship(point: str, name: str) -> list[Path]:
    """Make a campaign score point (``"<run>@<minutes>"``) the shipped model ``name`` (``x4``, ``real``, ...):
    its scored weights copied into ``srformer/weights/``, its JSON the point's own (architecture, preset, scale,
    steps, CPU minutes) plus the point's scores as ``metrics`` and where it came from. The scores are the
    campaign's own, the classical protocol of ``srformer evaluate`` (which re-scored the first shipped point,
    ``light@240``, to the same numbers); re-score the file after shipping all the same. Returns the paths written.
    """
    from srformer import shipped
    from srformer.atomic import atomic_file
    from srformer.errors import CheckpointError

    run_name, _, minutes = point.partition("@")
    if run_name not in RUNS or not minutes:
        raise SystemExit(f"error: {point!r} is not <run>@<minutes> of a campaign run ({', '.join(RUNS)})")
    run = RUNS[run_name]
    marks = {p.get("mark_minutes", p["minutes"]): p for p in read_state(run).points}
    scored = marks.get(float(minutes))
    if scored is None or "weights" not in scored:
        have = ", ".join(f"{m:g}" for m in marks) or "none yet"
        raise SystemExit(f"error: {run_name} has no scored weights at {minutes} CPU min (its points: {have})")
    try:
        target = shipped.weights_file(name)
    except CheckpointError as error:  # an unknown name, in one sentence
        raise SystemExit(f"error: {error}") from None
    source = run.folder / scored["weights"]
    info = json.loads(source.with_suffix(".json").read_text())
    replaced = target.with_suffix(".json")
    expected = json.loads(replaced.read_text())["scale"] if replaced.is_file() else info["scale"]
    if info["scale"] != expected:  # a shipped name keeps its scale (--scale picks models by it)
        raise SystemExit(f"error: {point} is an x{info['scale']} model; {name} is shipped at x{expected}")
    _, init_minutes = run.init_file()
    info["cpu_minutes"] = init_minutes + float(minutes)  # the whole budget behind the file, its start included
    info["metrics"] = {
        f"test/{set_name}/{metric}": round(value, 4)
        for set_name, values in scored["scores"].items()
        for metric, value in values.items()
    }
    info["source"] = f"bench/campaign/{run.name}/{scored['weights']} ({point}: bench/campaign.py run {run.name!r})"
    with atomic_file(target) as file:
        file.write(source.read_bytes())
    with atomic_file(target.with_suffix(".json"), "w") as file:
        file.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return [target, target.with_suffix(".json")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("status", help="each run's CPU hours, steps, restarts, last scores, budget, state")
    sub.add_parser("start", help="resume every lane in the background")
    sub.add_parser("stop", help="every run saves and stops")
    lane = sub.add_parser("lane", help="train one lane's runs in order (what start runs in the background)")
    lane.add_argument("lane", type=int)
    rep = sub.add_parser("report", help="tables and plot into docs/BENCHMARKS.md")
    rep.add_argument("--no-write", action="store_true")
    pair = sub.add_parser("paired-loss", help="training loss of two runs on the same batches, at equal steps")
    pair.add_argument("first", nargs="?", default="light")
    pair.add_argument("second", nargs="?", default="light-none")
    shipping = sub.add_parser("ship", help="make a score point (<run>@<minutes>) a shipped model (x4, real, ...)")
    shipping.add_argument("point")
    shipping.add_argument("name")
    args = parser.parse_args(argv)
    if args.action == "status":
        print(status_table())
    elif args.action == "start":
        start()
    elif args.action == "stop":
        stop()
    elif args.action == "lane":
        return run_lane(args.lane)
    elif args.action == "report":
        print(report(write=not args.no_write))
    elif args.action == "paired-loss":
        print(paired_losses(args.first, args.second))
    elif args.action == "ship":
        for path in ship(args.point, args.name):
            print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

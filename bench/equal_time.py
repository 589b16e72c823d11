"""Equal-time comparison: every model trains for the same CPU time on one thread, scored along the way.

    # train (or resume) one model up to 120 CPU minutes; one process per model, one thread each
    python bench/equal_time.py --models light --minutes 120
    python bench/equal_time.py --models swinir-light+skip --minutes 120
    # the table, the PSNR-vs-CPU-hours plot and the docs/BENCHMARKS.md section, from what is saved
    python bench/equal_time.py --report
    # continue one of ours with train.py: its scored (EMA) weights as a .safetensors
    python bench/equal_time.py --models light --export runs/equal_time_weights

Why time and not steps: a model that is cheaper per step takes more steps in the same time, and time is
what a user pays. The clock is the process's CPU time (``time.process_time``) with one torch thread, not the
wall clock: on a shared machine other processes slow the wall clock down but not (much) the CPU time a run
itself spends. Only training counts: loading batches, forward, backward, the optimizer and the EMA update;
scoring and checkpoint writes are off the clock.

Same for every model (bench/equal_budget.py's pieces): BSD400 patches from :class:`~equal_budget.PatchStream`
(batch ``k`` depends only on the seed and ``k``: the same patches in the same order for every model), batch
and LR patch size, L1 loss, Adam (0.9, 0.99), fp32, and the learning-rate schedule, a function of the CPU
time spent and never of the step (steps differ at equal time): a linear warmup over ``--warmup`` CPU minutes,
then a half cosine to ``--min-lr-ratio`` at ``--horizon`` CPU minutes, the same horizon for every model.
Cosine rather than constant because an annealed rate is worth a few tenths of a dB at the end, which is
where the targets are read; one shared horizon keeps every point of every curve comparable (at 60 minutes,
every model has had exactly the same rate history). A model stopped before the horizon (``--minutes 60``)
just ends there, un-annealed like every other model's 60-minute point; to go beyond the horizon, choose a
longer one from the start (it is part of the results folder's name).

Scores (Y-PSNR/SSIM, MATLAB bicubic LR, border = scale) use an exponential moving average of the weights
whose half-life is CPU time (``--ema-half-life`` minutes; 0 scores the raw weights), so every model
averages over the same span of time whatever its step rate; it smooths the noise of the intermediate
points, and at the end of the cosine the average and the raw weights agree.

Resumable: every ``--save-every`` CPU minutes and at each score point the model, EMA, optimizer, CPU time,
step (= data position) and random state go to ``<results>/<recipe>/<model>.pt``; each score point is added
to ``<model>.json`` as soon as it is measured. Re-running the command continues where it stopped (a kill
costs at most ``--save-every`` minutes); ``--restart`` starts the model over.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from equal_budget import DEFAULT_DATA, REPO, TEST_SETS, make_optimizer, patch_stream, score, train_step  # noqa: E402
from peers import architecture, build, display_name, is_ours  # noqa: E402
from report import write_section  # noqa: E402

from srformer.atomic import atomic_file, atomic_path  # noqa: E402
from srformer.data.degradation_preview import degradation_config, load_degradation  # noqa: E402
from srformer.profiling import count_parameters  # noqa: E402
from srformer.training.ema import make_ema_copy, update_ema  # noqa: E402

MODELS = ["light", "light:none", "tiny", "swinir-light", "swinir-light+skip", "srformer-light"]
PEERS_FOR_MARGINS = ["swinir-light", "swinir-light+skip"]
Clock = Callable[[], float]
REWARM_SECONDS = 120.0  # after a warm restart the learning rate ramps up again over 2 CPU minutes


@dataclass(frozen=True)
class Recipe:
    """Everything that must be equal between the models of one comparison. Times in seconds of the clock."""

    scale: int = 4
    batch: int = 8
    patch: int = 32
    lr: float = 5e-4
    horizon: float = 7200.0
    warmup: float = 180.0
    min_lr_ratio: float = 0.0
    ema_half_life: float = 120.0
    seed: int = 0
    # Added after the first comparisons; at their defaults they stay out of key() and identity(), so the folders
    # and checkpoints of earlier runs keep their names.
    amp: str = "fp32"  # "bf16": the forward pass under autocast to bfloat16 (the loss and optimizer in fp32)
    init: str = ""  # a weights file the model starts from (matching tensors; "" = the seeded random init)
    init_minutes: float = 0.0  # CPU minutes spent making ``init``: plotted and reported as part of the budget
    # A configs/degradation name ("photo"): each batch's LR is made from its HR patches by that random pipeline,
    # seeded by the batch index (as train.py's module does with the step); "" = the MATLAB bicubic LR.
    degradation: str = ""

    def lr_factor(self, spent: float) -> float:
        """Learning rate / ``lr`` after ``spent`` seconds of training: warmup, then cosine to the horizon."""
        if spent < self.warmup:
            return max(spent / self.warmup, 0.01)
        progress = min(1.0, (spent - self.warmup) / max(self.horizon - self.warmup, 1e-9))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def ema_decay(self, seconds: float) -> float:
        """EMA decay for a step that took ``seconds``: the weight of the old average halves every half-life."""
        return 0.0 if self.ema_half_life <= 0 else 0.5 ** (seconds / self.ema_half_life)

    def key(self) -> str:
        """The results folder's name: runs of different recipes never mix."""
        key = (
            f"x{self.scale}_b{self.batch}_p{self.patch}_lr{self.lr:g}_h{self.horizon / 60:g}m_w{self.warmup / 60:g}m"
            f"_min{self.min_lr_ratio:g}_ema{self.ema_half_life / 60:g}m_seed{self.seed}"
        )
        if self.amp != "fp32":
            key += f"_{self.amp}"
        if self.init:
            key += f"_init-{Path(self.init).stem}"
        if self.degradation:
            key += f"_deg-{self.degradation}"
        return key

    def as_record(self) -> dict:
        """The recipe's fields, without the later ones at their defaults (see the class body). A degradation
        is recorded with its whole configuration, so that editing the YAML under a running campaign changes
        the run's identity instead of silently changing its data."""
        record = dataclasses.asdict(self)
        for name in ("amp", "init", "init_minutes", "degradation"):
            if record[name] == Recipe.__dataclass_fields__[name].default:
                del record[name]
        if self.degradation:
            record["degradation_config"] = degradation_config(self.degradation, self.scale, self.seed)
        return record

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16}[self.amp]


def degraded_batches(
    batches: Iterator[dict[str, torch.Tensor]], degradation: Callable, seed: int, start: int
) -> Iterator[dict[str, torch.Tensor]]:
    """``batches`` (batch ``start`` first) with each LR replaced by ``degradation(hr, seed)``, the seed a
    function of the base seed and the batch index alone: a resumed run degrades its batches as an
    uninterrupted one. Its cost is on the training clock (it is part of loading a batch)."""
    from srformer.data.degradations import step_seed

    for index, batch in enumerate(batches, start):
        yield batch | {"lr": degradation(batch["hr"], seed=step_seed(seed, index))}


def make_degradation(recipe: Recipe) -> Callable | None:
    """The recipe's random degradation (:class:`srformer.data.degradations.RealWorldDegradation`), or None."""
    return load_degradation(recipe.degradation, recipe.scale, recipe.seed) if recipe.degradation else None


class TimedRun:
    """One model's training by the clock: the state that a checkpoint holds, and the training loop."""

    def __init__(self, name: str, recipe: Recipe, device: torch.device | None = None) -> None:
        self.name = name
        self.recipe = recipe
        self.device = device or torch.device("cpu")
        self.amp_dtype = recipe.amp_dtype
        torch.manual_seed(recipe.seed)  # the same initial weights for a model in every run
        self.model = build(name, recipe.scale)
        if recipe.init:
            from srformer.training.run import load_matching_weights

            load_matching_weights(self.model, str(REPO / recipe.init))
        self.model = self.model.to(self.device).train()
        self.ema = make_ema_copy(self.model) if recipe.ema_half_life > 0 else None
        self.optimizer = make_optimizer(self.model, recipe.lr)
        self.spent = 0.0  # seconds of the clock spent training
        self.step = 0  # optimizer steps taken = index of the next batch of the stream
        self.losses: list[float] = []  # since the last score point
        self.pending: float | None = None  # the mark being scored when the checkpoint was written
        self.restarts: list[float] = []  # clock seconds at each warm restart (optimizer state lost)

    def learning_rate(self) -> float:
        """The recipe's rate at the time spent, ramped up again after a warm restart: Adam's moments start
        from zero there, and a full rate on fresh moments would jolt weights trained for hours."""
        lr = self.recipe.lr * self.recipe.lr_factor(self.spent)
        if self.restarts:
            lr *= min(1.0, max(self.spent - self.restarts[-1], 0.0) / REWARM_SECONDS + 0.01)
        return lr

    @property
    def scored_model(self) -> nn.Module:
        """What is scored: the time-EMA of the weights (the raw weights when the half-life is 0)."""
        return self.ema if self.ema is not None else self.model

    def identity(self) -> str:
        return json.dumps({"architecture": architecture(self.name), "recipe": self.recipe.as_record()})

    def state_dict(self) -> dict:
        return {
            "identity": self.identity(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "spent": self.spent,
            "step": self.step,
            "losses": list(self.losses),
            "pending": -1.0 if self.pending is None else self.pending,
            "rng": torch.get_rng_state(),
            "restarts": list(self.restarts),
        }

    def load_state_dict(self, state: dict) -> None:
        if not same_identity(state["identity"], self.identity()):
            raise SystemExit(
                f"error: the checkpoint of {self.name} was made with another architecture or recipe; "
                "pass --restart to train it again"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.spent, self.step, self.losses = float(state["spent"]), int(state["step"]), list(state["losses"])
        self.pending = None if state["pending"] < 0 else float(state["pending"])
        self.restarts = [float(t) for t in state.get("restarts", [])]
        torch.set_rng_state(state["rng"])

    def save(self, path: Path) -> None:
        """The full state (``.pt``) and the slim one (``.resume.safetensors``, see :meth:`save_slim`), each
        atomically (:mod:`srformer.atomic`): a kill never leaves a broken checkpoint."""
        with atomic_path(path) as temporary:
            torch.save(self.state_dict(), temporary)
        self.save_slim(slim_path(path))

    def load(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def save_slim(self, path: Path) -> None:
        """What a new machine needs to go on, small enough to commit: the weights, their EMA, the clock, the
        step (= data position), the random state and the score point in progress; not the optimizer's
        moments (twice the weights again). :meth:`load_slim` restarts from it warm."""
        from safetensors.torch import save_file

        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()}
        tensors["rng"] = torch.get_rng_state()
        meta = {
            "identity": self.identity(),
            "progress": json.dumps(
                {"spent": self.spent, "step": self.step, "pending": self.pending, "restarts": self.restarts}
            ),
            "losses": json.dumps(self.losses),
        }
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=meta)

    def load_slim(self, path: Path) -> None:
        """A warm restart from :meth:`save_slim`'s file: weights, EMA, clock, step and random state as they were;
        the optimizer starts fresh and the learning rate ramps up over ``REWARM_SECONDS`` (counted in
        ``restarts``). Not bit-exact (the full ``.pt`` is), but the same data order and schedule."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as file:
            meta = file.metadata()
            if not same_identity(meta.get("identity", "{}"), self.identity()):
                raise SystemExit(
                    f"error: {path} was made with another architecture or recipe; pass --restart to train it again"
                )
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open has no iterator)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if self.ema is not None:
            self.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        progress = json.loads(meta["progress"])
        self.spent, self.step = float(progress["spent"]), int(progress["step"])
        self.pending = progress["pending"]
        self.losses = json.loads(meta["losses"])
        self.restarts = [*progress["restarts"], self.spent]
        torch.set_rng_state(tensors["rng"])

    def resume(self, checkpoint: Path) -> str | None:
        """Continue from ``checkpoint`` (exact) or, when it is missing or behind, its slim state (warm).
        Returns how it resumed ("exact", "warm") or None when there is nothing to resume from."""
        slim = slim_path(checkpoint)
        slim_spent = _slim_spent(slim) if slim.is_file() else None
        if checkpoint.is_file():
            self.load(checkpoint)
            if slim_spent is None or slim_spent <= self.spent + 1e-6:
                return "exact"
        if slim_spent is not None:
            self.load_slim(slim)
            return "warm"
        return None

    def train_until(
        self,
        stop: float,
        batches: Iterator[dict[str, torch.Tensor]],
        clock: Clock,
        marks: list[float],
        on_mark: Callable[[float], None],
        save_every: float = math.inf,
        on_save: Callable[[], None] | None = None,
        log_every: float = math.inf,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Train until ``stop`` seconds of ``clock`` are spent; ``batches`` must start at batch ``self.step``.

        ``on_mark(mark)`` is called once for every mark (seconds) as soon as the time spent reaches it,
        including marks already passed (a run resumed from a checkpoint written just before scoring);
        ``on_save()`` every ``save_every`` seconds. Both are off the clock. When ``should_stop()`` turns true
        (a signal), ``on_save()`` is called and the loop returns early.
        """
        marks = sorted(marks)
        last_save = last_log = self.spent
        start = clock()
        while True:
            due = [mark for mark in marks if mark <= self.spent]
            if due:
                for mark in due:
                    marks.remove(mark)
                    on_mark(mark)
                start = clock()
            if self.spent >= stop:
                return
            if should_stop():
                if on_save is not None:
                    on_save()
                return
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate()
            self.losses.append(train_step(self.model, next(batches), self.optimizer, self.device, self.amp_dtype))
            now = clock()
            seconds, start = now - start, now
            self.spent += seconds
            self.step += 1
            if self.ema is not None:  # its cost lands on the next step's clock
                update_ema(self.ema, self.model, self.recipe.ema_decay(seconds))
            if self.spent - last_log >= log_every:
                last_log = self.spent
                recent = statistics.fmean(self.losses[-50:])
                print(
                    f"  {self.name}: {self.spent / 60:.1f} min, step {self.step}, loss {recent:.4f}, "
                    f"lr {self.optimizer.param_groups[0]['lr']:.2e}",
                    flush=True,
                )
            if on_save is not None and self.spent - last_save >= save_every:
                last_save = self.spent
                on_save()
                start = clock()


def point_record(run: TimedRun, scores: dict) -> dict:
    """One point of a curve: time, steps, mean loss since the previous point, learning rate, scores."""
    loss = statistics.fmean(run.losses) if run.losses else float("nan")
    run.losses.clear()
    return {
        "minutes": run.spent / 60,
        "seconds": run.spent,
        "steps": run.step,
        "loss": loss,
        "lr": run.learning_rate(),
        "scores": scores,
    }


def file_stem(name: str) -> str:
    return name.replace(":", "_").replace("+", "_")


def train_model(name: str, recipe: Recipe, args: argparse.Namespace, folder: Path) -> dict:
    """Train (or resume) ``name`` up to ``args.minutes`` CPU minutes; returns its results (also saved)."""
    checkpoint, results_path = folder / f"{file_stem(name)}.pt", folder / f"{file_stem(name)}.json"
    run = TimedRun(name, recipe)
    results = {
        "model": name,
        "architecture": architecture(name),
        "recipe": recipe.as_record(),
        "params": count_parameters(run.model),
        "clock": f"process CPU time, {args.threads} torch thread(s)",
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "points": [],
    }
    if args.restart:
        for path in (checkpoint, slim_path(checkpoint), results_path):
            path.unlink(missing_ok=True)
    how = run.resume(checkpoint)
    if how is not None:
        saved = json.loads(results_path.read_text()) if results_path.is_file() else results
        results["points"] = [p for p in saved["points"] if p["seconds"] <= run.spent + 1e-6]
        results["restarts"] = len(run.restarts)
        print(f"{name}: resuming ({how}) at {run.spent / 60:.1f} CPU min, step {run.step}", flush=True)
    else:
        print(f"{name}: training from scratch ({results['params'] / 1e6:.3f}M parameters)", flush=True)
    stop = args.minutes * 60
    done = {round(m, 6) for m in _marks_done(results)}
    marks = [m * 60 for m in sorted({*args.points, args.minutes}) if m <= args.minutes and round(m, 6) not in done]
    # Marks already passed are not scored with later weights, except the one whose scoring a kill interrupted.
    marks = [mark for mark in marks if mark > run.spent or mark == run.pending]

    def on_mark(mark: float) -> None:
        run.pending = mark
        run.save(checkpoint)  # first: a kill while scoring re-scores this very state on resume
        began = time.perf_counter()
        scores = score(run.scored_model, args.data, args.sets, recipe.scale, args.cache_dir)
        point = point_record(run, scores) | {"mark_minutes": mark / 60}
        results["points"].append(point)
        results["s_per_step"] = run.spent / max(run.step, 1)
        if is_ours(name):  # the weights behind every reported number, re-scorable with srformer.evaluate
            from srformer.checkpoint import save_weights

            data = f"bsd400, degradation={recipe.degradation}" if recipe.degradation else "bsd400"
            meta = {"data": data, "ema": run.ema is not None, "steps": run.step, "cpu_minutes": mark / 60}
            weights = folder / f"{file_stem(name)}_{mark / 60:g}m.safetensors"
            point["weights"] = str(
                save_weights(run.scored_model, weights, meta | {"source": "bench/equal_time.py"}).name
            )
        _write_json(results_path, results)
        run.pending = None
        run.save(checkpoint)
        cells = ", ".join(f"{s} {v['psnr']:.2f}" for s, v in scores.items())
        print(
            f"{name}: {mark / 60:g} CPU min (step {run.step}, loss {point['loss']:.4f}): {cells} "
            f"[scored in {time.perf_counter() - began:.0f} s]",
            flush=True,
        )

    stream = patch_stream(args.data, recipe.scale, recipe.patch, recipe.batch, recipe.seed, args.cache_dir)
    batches = stream.batches(run.step)
    if (degradation := make_degradation(recipe)) is not None:
        batches = degraded_batches(batches, degradation, degradation.seed, run.step)
    with stop_on_signals() as stopped:
        run.train_until(
            stop,
            batches,
            time.process_time,
            marks,
            on_mark,
            save_every=args.save_every * 60,
            on_save=lambda: run.save(checkpoint),
            log_every=args.log_every * 60,
            should_stop=stopped,
        )
    if run.spent < stop:
        raise SystemExit(
            f"{name}: stopped at {run.spent / 60:.1f} CPU min, step {run.step}; saved, resume with the same command"
        )
    return results


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM / SIGINT ask the training loop to save and stop after the current step (a kill -9 still
    loses at most ``--save-every`` minutes)."""
    import signal

    received: list[int] = []
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(received)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def same_identity(a: str, b: str) -> bool:
    """Two identities (JSON) name the same run: numbers compared as numbers (a recipe built from ``--warmup 3``
    records 180, one built from ``warmup=180.0`` 180.0)."""

    def numbers_as_floats(value):
        if isinstance(value, dict):
            return {k: numbers_as_floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [numbers_as_floats(v) for v in value]
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    return numbers_as_floats(json.loads(a)) == numbers_as_floats(json.loads(b))


def slim_path(checkpoint: Path) -> Path:
    """``<model>.pt`` -> ``<model>.resume.safetensors`` (the slim state, committed)."""
    return checkpoint.with_name(checkpoint.stem + ".resume.safetensors")


def _slim_spent(path: Path) -> float:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return float(json.loads(file.metadata()["progress"])["spent"])


def export_weights(name: str, recipe: Recipe, folder: Path, out: Path) -> Path | None:
    """Write the scored (EMA) weights of one of our models' saved run as ``out/<model>.safetensors`` (+ .json),
    for ``train.py init_weights=...`` to continue; peers and models without a checkpoint are skipped."""
    checkpoint = folder / f"{file_stem(name)}.pt"
    if not is_ours(name) or not (checkpoint.is_file() or slim_path(checkpoint).is_file()):
        print(f"{name}: nothing to export ({'no checkpoint' if is_ours(name) else 'not an srformer model'})")
        return None
    from srformer.checkpoint import save_weights

    run = TimedRun(name, recipe)
    run.resume(checkpoint)
    meta = {"data": "bsd400", "ema": run.ema is not None, "steps": run.step, "cpu_minutes": round(run.spent / 60, 2)}
    path = save_weights(
        run.scored_model, out / f"{file_stem(name)}.safetensors", meta | {"source": "bench/equal_time.py"}
    )
    print(f"{name}: {run.spent / 60:.1f} CPU min, step {run.step} -> {path}")
    return path


def _marks_done(results: dict) -> list[float]:
    return [p.get("mark_minutes", p["minutes"]) for p in results["points"]]


def _write_json(path: Path, data: dict) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(json.dumps(data, indent=2))


def load_results(names: list[str], folder: Path) -> dict[str, dict]:
    """Saved results of ``names`` (those that exist and match the current architecture)."""
    found = {}
    for name in names:
        path = folder / f"{file_stem(name)}.json"
        if not path.is_file():
            print(f"{name}: no results in {folder}", flush=True)
            continue
        result = json.loads(path.read_text())
        if result.get("architecture") != architecture(name):
            print(f"{name}: {path} was trained with another architecture; left out", flush=True)
            continue
        if result["points"]:
            found[name] = result
    return found


def _cell(point: dict | None, set_name: str) -> str:
    return "-" if point is None or set_name not in point["scores"] else f"{point['scores'][set_name]['psnr']:.2f}"


def point_at(result: dict, minutes: float) -> dict | None:
    return next((p for p in result["points"] if abs(p.get("mark_minutes", p["minutes"]) - minutes) < 1e-6), None)


def make_tables(results: dict[str, dict], sets: list[str]) -> str:
    """Per set: PSNR at every score point; then each of our models' margin over the peers."""
    marks = sorted({p.get("mark_minutes", p["minutes"]) for r in results.values() for p in r["points"]})
    head = "| model | params | CPU s/step | " + " | ".join(f"{m:g} min" for m in marks) + " |"
    rule = "|---|---:|---:|" + "---:|" * len(marks)
    parts = []
    for set_name in sets:
        lines = [f"{set_name} x{next(iter(results.values()))['recipe']['scale']} PSNR-Y (dB):", "", head, rule]
        for name, result in results.items():
            cells = [
                display_name(name),
                f"{result['params'] / 1e6:.2f}M",
                f"{result.get('s_per_step', float('nan')):.2f}",
                *(_cell(point_at(result, m), set_name) for m in marks),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    margins = ["| ours - peer | at | " + " | ".join(sets) + " |", "|---|---:|" + "---:|" * len(sets)]
    for ours in (n for n in results if is_ours(n)):
        for peer in (n for n in PEERS_FOR_MARGINS if n in results):
            common = [m for m in marks if point_at(results[ours], m) and point_at(results[peer], m)]
            if not common:
                continue
            a, b = point_at(results[ours], common[-1]), point_at(results[peer], common[-1])
            deltas = [
                f"{a['scores'][s]['psnr'] - b['scores'][s]['psnr']:+.2f}"
                if s in a["scores"] and s in b["scores"]
                else "-"
                for s in sets
            ]
            margins.append(f"| {ours} - {peer} | {common[-1]:g} min | " + " | ".join(deltas) + " |")
    if len(margins) > 2:
        parts.append("Margins at the longest time both have reached (dB):\n\n" + "\n".join(margins))
    return "\n\n".join(parts)


def plot(results: dict[str, dict], sets: list[str], path: Path, title: str) -> None:
    """PSNR against CPU hours, one panel per set, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.2), constrained_layout=True, squeeze=False)
    for axis, set_name in zip(axes[0], sets, strict=True):
        for name, result in results.items():
            points = [p for p in result["points"] if set_name in p["scores"]]
            if not points:
                continue
            offset = result["recipe"].get("init_minutes", 0.0) * 60  # the CPU time that made its start
            axis.plot(
                [(offset + p["seconds"]) / 3600 for p in points],
                [p["scores"][set_name]["psnr"] for p in points],
                marker="o" if is_ours(name) else "s",
                linestyle="-" if is_ours(name) else "--",
                label=name,
            )
        axis.set_xlabel("training time (CPU hours, one thread)")
        axis.set_ylabel(f"{set_name} PSNR-Y (dB)")
        axis.set_title(set_name)
        axis.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def recipe_from(args: argparse.Namespace) -> Recipe:
    return Recipe(
        scale=args.scale,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        horizon=args.horizon * 60,
        warmup=args.warmup * 60,
        min_lr_ratio=args.min_lr_ratio,
        ema_half_life=args.ema_half_life * 60,
        seed=args.seed,
        amp=args.amp,
        init=args.init,
        init_minutes=args.init_minutes,
        degradation=args.degradation,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--minutes", type=float, default=120, help="train each model up to this many CPU minutes")
    parser.add_argument("--report", action="store_true", help="train nothing: tables, plot and docs from saved results")
    parser.add_argument("--points", type=float, nargs="+", default=[15, 30, 60, 90, 120, 180, 240, 300, 360])
    parser.add_argument("--horizon", type=float, default=120, help="CPU minutes at which the cosine reaches its end")
    parser.add_argument("--warmup", type=float, default=3, help="CPU minutes of linear warmup")
    parser.add_argument("--min-lr-ratio", type=float, default=0.0)
    parser.add_argument("--ema-half-life", type=float, default=2, help="CPU minutes; 0 scores the raw weights")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train/BSD400 and benchmark/")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=32, help="LR patch side")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", choices=["fp32", "bf16"], default="fp32", help="bf16: forward under autocast")
    parser.add_argument("--init", default="", help="start from this weights file (path relative to the repository)")
    parser.add_argument("--init-minutes", type=float, default=0.0, help="CPU minutes spent making --init")
    parser.add_argument(
        "--degradation", default="", metavar="NAME",
        help="train on LR made by configs/degradation/NAME.yaml (e.g. photo) instead of MATLAB bicubic",
    )  # fmt: skip
    parser.add_argument("--folder", type=Path, default=None, help="results folder as is (default: --results/<recipe>)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the comparison is for 1)")
    parser.add_argument("--save-every", type=float, default=5, help="CPU minutes between checkpoints")
    parser.add_argument("--log-every", type=float, default=5, help="CPU minutes between loss lines")
    parser.add_argument(
        "--sets", nargs="+", default=list(TEST_SETS),
        help="benchmark sets to score on; SET_NAME scores SET with a fixed benchmark degradation (Set14_D1)",
    )  # fmt: skip
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "equal_time")
    parser.add_argument("--restart", action="store_true", help="discard the models' checkpoints and results")
    parser.add_argument("--title", default="Equal-time comparison (CPU, one thread)")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path (default: docs/equal_time.png)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    parser.add_argument(
        "--export", type=Path, default=None, metavar="FOLDER",
        help="train nothing: write our models' scored weights to FOLDER/<model>.safetensors (train.py init_weights)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(args.threads)
    recipe = recipe_from(args)
    folder = args.folder or args.results / recipe.key()
    for name in args.models:
        architecture(name)  # unknown names fail before any training
    if args.degradation:
        from srformer.errors import DataError

        try:
            degradation_config(args.degradation, args.scale, args.seed)
        except DataError as error:
            raise SystemExit(f"error: {error}") from None
    if args.export:
        for name in args.models:
            export_weights(name, recipe, folder, args.export)
        return
    if not args.report:
        if not (args.data / "train" / "BSD400").is_dir():
            raise SystemExit(f"error: no training images at {args.data / 'train' / 'BSD400'}; pass --data")
        for name in args.models:
            train_model(name, recipe, args, folder)

    results = load_results(args.models, folder)
    if not results:
        raise SystemExit(f"error: no results in {folder}")
    sets = [s for s in args.sets if any(s in p["scores"] for r in results.values() for p in r["points"])]
    tables = make_tables(results, sets)
    command = "python bench/equal_time.py " + " ".join(sys.argv[1:])
    body = (
        f"`{command}` (results: `{folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder}`)\n\n"
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}. "
        f"Every model trains on one CPU thread for the same CPU time (process time; scoring excluded) with the "
        f"same BSD400 patches in the same order (seed {recipe.seed}), batch {recipe.batch}, LR patch "
        f"{recipe.patch}, x{recipe.scale}, L1, Adam lr {recipe.lr:g}: linear warmup over "
        f"{recipe.warmup / 60:g} CPU min, then cosine to {recipe.min_lr_ratio:g}x at {recipe.horizon / 60:g} "
        f"CPU min, as a function of CPU time, not steps. Scored with an EMA of the weights with a "
        f"{recipe.ema_half_life / 60:g}-CPU-minute half-life: Y-PSNR on the full sets (MATLAB bicubic LR, "
        f"border {recipe.scale}).\n\n{tables}"
    )
    print(body)
    plot_path = args.plot or (None if args.no_write else REPO / "docs" / "equal_time.png")
    if plot_path:
        plot(results, sets, plot_path, f"{args.title}: PSNR against CPU time")
        print(f"plot: {plot_path}")
        if plot_path.is_relative_to(REPO / "docs"):
            body += f"\n\n![PSNR against CPU hours]({plot_path.relative_to(REPO / 'docs')})"
    if not args.no_write:
        write_section(args.title, body)


if __name__ == "__main__":
    main()

"""Plan before training: each grid point's remaining steps and its wall time on a CPU and on a GPU, estimated
from the training times that finished or stopped runs recorded (their `results.json`), never from constants.

A run's `results.json` lists each process that trained it (`sessions`: steps from-to, wall seconds, backend,
device kind, CPU count; older files: one process from step 0). One such record (of at least `MIN_STEPS` steps)
gives a wall time per step, compilation, evaluation and diagnostics
included, for its cell, task length T, depth, batch, width and members (seeds x learning rates). A point is
estimated from the record of its own cell and backend nearest in T, else of its family (`FAMILY`), else of any
cell, scaled by the work per step:

    GPU (latency-bound for these sizes):   t_step ~ T x layers, never below the record's own
    CPU (compute-bound):                    t_step ~ T x layers x batch x width^2 x members

The source of each estimate is printed beside it, so a scaled guess is never mistaken for a measurement.
"""

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments import io, schema
from experiments.config import Config, learning_rates

BACKENDS = ("cpu", "gpu")
# Cells whose whole sequence is one associative scan cost far less per step at long T than those that step
# through time: a cell without a record of its own is scaled from its own family first.
FAMILY = {"lru": "linear recurrence", "mingru": "linear recurrence", "minlstm": "linear recurrence"}
MIN_STEPS = 100  # a process that trained fewer steps times mostly its compilation: not a record


@dataclasses.dataclass(frozen=True)
class Record:
    """One training process of one run: its wall seconds per step and the sizes that set them."""

    cell: str
    seq_len: int
    num_layers: int
    batch_size: int
    hidden_size: int
    members: int
    backend: str
    machine: str
    seconds_per_step: float

    def work(self, backend: str) -> float:
        return _work(self.seq_len, self.num_layers, self.batch_size, self.hidden_size, self.members, backend)


@dataclasses.dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: no record on that backend
    source: str


def _work(seq_len: int, layers: int, batch: int, width: int, members: int, backend: str) -> float:
    if backend == "gpu":
        return float(seq_len * layers)
    return float(seq_len * layers * batch * width * width * members)


def _members(config: Config) -> int:
    return config.num_seeds * len(learning_rates(config))


def records_of(results: dict[str, Any]) -> list[Record]:
    """The records of one `results.json` (a dict); [] where it holds no usable timing."""
    try:  # a record's sizes scale an estimate: each must be what a run writes (a string T, or T=0, is no record)
        config = Config.from_dict(schema.check_config(results.get("config")))
        sizes = (config.seq_len, config.num_layers, config.batch_size, config.hidden_size, config.num_seeds)
        rates = learning_rates(config)
    except (TypeError, ValueError):
        return []
    if min(sizes) < 1 or not rates:
        return []
    sessions = results.get("sessions")
    if not isinstance(sessions, list):  # written before runs listed their processes: one, from step 0
        execution = results.get("execution") if isinstance(results.get("execution"), dict) else {}
        sessions = [
            {
                "steps": [0, results.get("steps_done")],
                "wall_time_s": results.get("wall_time_s"),
                "backend": execution.get("backend") or "cpu",
                "device_kind": execution.get("device_kind"),
                "cpu_count": execution.get("cpu_count"),
            }
        ]
    out = []
    for s in sessions:
        try:
            first, last = (int(v) for v in s["steps"])
            wall, backend = float(s["wall_time_s"]), str(s["backend"])
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a step count of Infinity
            continue
        backend = "gpu" if backend in ("gpu", "cuda", "rocm") else backend
        if last - first < MIN_STEPS or not math.isfinite(wall) or wall <= 0 or backend not in BACKENDS:
            continue
        machine = s.get("device_kind") or backend
        if backend == "cpu" and s.get("cpu_count"):
            machine = f"cpu, {s['cpu_count']} cores"
        out.append(
            Record(
                config.cell,
                config.seq_len,
                config.num_layers,
                config.batch_size,
                config.hidden_size,
                _members(config),
                backend,
                str(machine),
                wall / (last - first),
            )
        )
    return out


def find_records(roots: Iterable[Path]) -> list[Record]:
    """Every record under the folders `roots` (each point's `results.json`, any depth); unreadable files skipped."""
    found, seen = [], set()
    for root in roots:
        for path in sorted(Path(root).glob("**/results.json")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                results = io.read_json(path)
            except (OSError, ValueError):
                continue
            if isinstance(results, dict):
                found += records_of(results)
    return found


def estimate(config: Config, steps: int, records: list[Record], backend: str) -> Estimate:
    """Wall seconds for `steps` more steps of `config` on `backend`, from the nearest record (see the module)."""
    own = [r for r in records if r.backend == backend]
    if not own:
        return Estimate(None, f"no {backend} record")
    same = [r for r in own if r.cell == config.cell]
    kin = [r for r in own if FAMILY.get(r.cell) == FAMILY.get(config.cell)]
    pool = same or kin or own
    best = min(pool, key=lambda r: (abs(math.log(r.seq_len / config.seq_len)), r.num_layers != config.num_layers))
    work = _work(config.seq_len, config.num_layers, config.batch_size, config.hidden_size, _members(config), backend)
    scale = work / best.work(backend)
    if backend == "gpu":  # a smaller problem's step is not assumed cheaper: launch latency sets its floor
        scale = max(scale, 1.0)
    seconds = steps * best.seconds_per_step * scale
    exact = same and best.seq_len == config.seq_len and best.work(backend) == work
    how = "recorded" if exact else "scaled from"
    return Estimate(seconds, f"{how} {best.cell} T={best.seq_len} ({best.machine})")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def plan_lines(points: dict[Any, tuple[Config, int]], records: list[Record]) -> list[str]:
    """The plan, one line per point ({key with .dirname: (config, steps done)}), then the totals per backend."""
    width = max((len(k.dirname) for k in points), default=0)
    lines, totals = [], dict.fromkeys(BACKENDS, 0.0)
    missing = dict.fromkeys(BACKENDS, 0)
    for key, (config, done) in points.items():
        todo = max(config.steps - done, 0)
        if todo == 0:
            lines.append(f"  {key.dirname:<{width}}  finished ({config.steps} steps)")
            continue
        cells = []
        for backend in BACKENDS:
            e = estimate(config, todo, records, backend)
            if e.seconds is None:
                missing[backend] += 1
            else:
                totals[backend] += e.seconds
            cells.append(f"{backend} {duration(e.seconds):>7} [{e.source}]")
        since = f" (from {done})" if done else ""
        lines.append(f"  {key.dirname:<{width}}  {todo:>6} steps{since}  " + "  ".join(cells))
    total = ", ".join(
        f"{b} {duration(totals[b] if totals[b] or not missing[b] else None)}"
        + (f" (+{missing[b]} points without a record)" if missing[b] else "")
        for b in BACKENDS
    )
    lines.append(f"in all, one point after another: {total}")
    return lines

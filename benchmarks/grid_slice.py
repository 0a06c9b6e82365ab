"""The grid section of `benchmarks.speed`: a fixed slice of a `benchmarks.tables` grid, trained as a user
launches it (`--launcher=local`), one point at a time and with `--grid_workers` workers, in seed-steps per minute.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.speed_presets import Options
from experiments.report import fmt, markdown_table


@dataclasses.dataclass(frozen=True)
class GridSlice:
    """A fixed slice of a `benchmarks.tables` grid: its table and preset, the cells, lengths, steps and seeds."""

    table: str
    preset: str
    cells: tuple[str, ...]
    seq_lens: tuple[int, ...]
    steps: int
    num_seeds: int

    def args(self) -> list[str]:
        return [
            f"--table={self.table}",
            f"--preset={self.preset}",
            f"--cells={','.join(self.cells)}",
            f"--seq_lens={','.join(map(str, self.seq_lens))}",
            f"--steps={self.steps}",
            f"--num_seeds={self.num_seeds}",
        ]


LONG_CELLS = ("lstm", "gru", "indrnn", "cornn", "lem", "exprnn", "lru", "mingru", "minlstm")
GRID_SLICES = {
    # every cell of the long adding grid at T=1000, 3 seeds, 200 steps (its evaluation at step 200 included)
    "long": GridSlice("adding", "long", LONG_CELLS, (1000,), 200, 3),
    # the long slice's cells that differ most in kind, for a few minutes of a lent GPU
    "gpu": GridSlice("adding", "long", ("lstm", "gru", "lru", "minlstm"), (1000,), 200, 3),
    "tiny": GridSlice("adding", "smoke", ("rnn", "gru"), (6,), 4, 2),  # the code path, in seconds (a test runs it)
}


@dataclasses.dataclass
class GridRun:
    """One launch of the slice: `workers` local workers, wall seconds from launch to exit, and each point's
    (cell -> members, steps done, wall seconds of its training run) from its results.json."""

    workers: int
    wall_s: float
    points: dict[str, tuple[int, int, float]]

    @property
    def seed_steps(self) -> int:
        return sum(members * steps for members, steps, _ in self.points.values())

    def per_minute(self) -> float:
        return 60 * self.seed_steps / self.wall_s


def _quiet(line: str) -> None:
    """The default `log`: say nothing."""


def run_grid(grid: GridSlice, workers: int, results_dir: Path, log: Callable[[str], None]) -> GridRun:
    """`python -m benchmarks.tables <slice> --launcher=local --workers=N` into a fresh `results_dir`, timed."""
    cmd = [sys.executable, "-m", "benchmarks.tables", *grid.args(), "--launcher=local", f"--workers={workers}"]
    cmd.append(f"--results_dir={results_dir}")
    # no persistent compilation cache: the second launch would load what the first compiled
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"grid slice with {workers} worker(s) exited {proc.returncode}: {proc.stderr[-2000:]}")
    points = {}
    for path in sorted((results_dir / grid.table).glob("*/results.json")):
        r = json.loads(path.read_text())
        points[path.parent.name] = (int(r["execution"]["members"]), int(r["steps_done"]), float(r["wall_time_s"]))
    if len(points) != len(grid.cells) * len(grid.seq_lens):
        raise RuntimeError(f"grid slice with {workers} worker(s): {len(points)} points finished: {sorted(points)}")
    log(f"grid: {workers} worker(s): {len(points)} points in {wall:.0f}s")
    return GridRun(workers, wall, points)


def benchmark_grid(options: Options, log: Callable[[str], None] = _quiet) -> list[GridRun]:
    """The slice one point at a time (one local worker), then with `grid_workers` local workers."""
    grid = GRID_SLICES[options.grid_slice]
    counts = (1,) if options.grid_workers == 1 else (1, options.grid_workers)
    with tempfile.TemporaryDirectory(prefix="rnnlab-grid-") as tmp:
        return [run_grid(grid, n, Path(tmp) / f"workers{n}", log) for n in counts]


def grid_section(options: Options, runs: list[GridRun]) -> list[str]:
    """The grid table: seed-steps per minute of each point and of the whole launch, per worker count."""
    grid = GRID_SLICES[options.grid_slice]
    header = ["point"] + [f"{r.workers} worker(s): seed-steps/min" for r in runs]
    rows = []
    for point in runs[0].points:
        rows.append([point] + [fmt(60 * m * n / w) for m, n, w in (r.points[point] for r in runs)])
    rows.append(["**all (wall clock)**"] + [fmt(r.per_minute()) for r in runs])
    out = [
        f"## Grid throughput: {grid.table} ({grid.preset} preset), cells {', '.join(grid.cells)}, "
        f"T = {', '.join(map(str, grid.seq_lens))}, {grid.num_seeds} seeds, {grid.steps} steps",
        "",
        markdown_table(header, rows),
        "",
        "Each run: `python -m benchmarks.tables " + " ".join(grid.args()) + " --launcher=local --workers=N` "
        "into a fresh results folder, as a user launches the grid. seed-steps/min of a point: seeds x steps / "
        "its training run's wall time (results.json: compiling and evaluation included, other points running "
        "beside it); all: every point's seeds x steps / the launch's wall time (process starts included).",
    ]
    if len(runs) > 1:
        out.append(
            f"{runs[1].workers} workers / one at a time, in all: {fmt(runs[1].per_minute() / runs[0].per_minute())}."
        )
    return out

"""Reproduction tables: which cell fails at which length, beside the published numbers.

    python -m benchmarks.tables --table=adding --preset=quick --results_dir=results/quick
    python -m benchmarks.tables --table=copy --preset=paper --cells=lstm --seq_lens=100,200

Tables: `adding` and `copy` train every (cell, T) of the grid — all seeds of a grid point in
one program (`--num_seeds`, vmapped) — through `experiments.train.train_and_evaluate`, with
gradient diagnostics at initialisation and at the end; `gradients` measures the diagnostics
at initialisation only (no training). Each grid point is a workdir under
`<results_dir>/<table>/`; a finished one is skipped and an unfinished one resumes, so a sweep
killed midway loses nothing. Writes `<table>.md`, `<table>.csv` and PNG plots.
Published figures come from `results/published.csv` (source, table, setting).

`--launcher=local --workers=N` trains the points in N worker processes, `--launcher=slurm` submits
them as a Slurm job array, and `--status` says what each point is doing (`benchmarks/launch.py`).
"""

import csv
import dataclasses
import io as _io
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import launch
from experiments import io
from experiments.config import Config, ConfigError, check_workdir, validate_cells
from experiments.diagnostics import TrainingRecorder
from experiments.flags import int_list_flag, list_flag, run
from experiments.lock import WorkdirLockedError, workdir_lock
from experiments.report import markdown_table, mean_std
from experiments.train import Experiment, StopSignal, check_resumable, package_versions, train_and_evaluate

PUBLISHED = Path(__file__).parent.parent / "results" / "published.csv"
TABLES = ("adding", "copy", "gradients")


@dataclasses.dataclass(frozen=True)
class Grid:
    """A preset: the cells x lengths grid and the training settings shared by its points."""

    cells: tuple[str, ...]
    seq_lens: tuple[int, ...]
    num_seeds: int
    steps: int
    hidden_size: int
    batch_size: int
    learning_rate: float
    optimizer: str
    eval_every: int
    eval_size: int = 1000
    clip_norm: float = 1.0


CELLS3 = ("rnn", "lstm", "gru")
PRESETS: dict[str, dict[str, Grid]] = {
    "smoke": {
        "adding": Grid(("rnn", "gru"), (6, 12), 2, 20, 8, 8, 1e-3, "adam", 10, eval_size=32),
        "copy": Grid(("rnn", "gru"), (5, 10), 2, 20, 8, 8, 1e-3, "adam", 10, eval_size=32),
        "gradients": Grid(("rnn", "lstm"), (10, 20), 2, 0, 8, 8, 1e-3, "adam", 1),
    },
    "quick": {
        "adding": Grid(CELLS3, (50, 100, 200), 2, 2000, 64, 50, 1e-3, "adam", 100, eval_size=500),
        "copy": Grid(CELLS3, (10, 20, 40), 2, 3000, 64, 50, 1e-3, "adam", 100, eval_size=500),
        "gradients": Grid((*CELLS3, "lstm_fb0"), (50, 100, 200, 500, 1000), 3, 0, 128, 32, 1e-3, "adam", 1),
    },
    # The literature's grid (see README): hidden 128, 3 seeds. Adding in the setting of Li et al. 2018
    # and the LEM logs (batch 50, Adam); copy in the uRNN protocol (batch 20, RMSprop 1e-3, 20k steps).
    "paper": {
        "adding": Grid(CELLS3, (100, 200, 400, 750), 3, 10000, 128, 50, 1e-3, "adam", 250),
        "copy": Grid(CELLS3, (100, 200, 500, 1000), 3, 20000, 128, 20, 1e-3, "rmsprop", 500),
        "gradients": Grid((*CELLS3, "lstm_fb0"), (100, 200, 400, 750, 1000), 3, 0, 128, 32, 1e-3, "adam", 1),
    },
}


def grid_from_flags(table: str, preset: str, overrides: dict[str, Any]) -> Grid:
    grid = PRESETS[preset][table]
    return dataclasses.replace(grid, **{k: v for k, v in overrides.items() if v is not None})


def point_config(table: str, task: str, grid: Grid, cell: str, seq_len: int) -> Config:
    """The Config of one grid point; diagnostics at step 0 and at the last step."""
    return Config(
        cell=cell, task=task, seq_len=seq_len, hidden_size=grid.hidden_size, batch_size=grid.batch_size,
        steps=max(grid.steps, 1), optimizer=grid.optimizer, learning_rate=grid.learning_rate,
        clip_norm=grid.clip_norm, eval_every=min(grid.eval_every, max(grid.steps, 1)), eval_size=grid.eval_size,
        num_seeds=grid.num_seeds, checkpoint_every=grid.eval_every * 10, diag_every=max(grid.steps, 1),
    )  # fmt: skip


def point_dir(results_dir: Path, table: str, config: Config) -> Path:
    return results_dir / table / f"{config.cell.replace(':', '_').replace('.', '_')}_T{config.seq_len}"


def run_point(table: str, config: Config, workdir: Path) -> dict[str, Any]:
    """Train (or measure, for `gradients`) one grid point unless it already finished.

    A point another process holds (`experiments.lock`) is skipped, saying so: it comes back as
    {"busy": message} and the table marks it. A point stopped by a signal comes back with its
    results ("stopped_by" set) for the sweep to stop.
    """
    done = workdir / ("diagnostics.jsonl" if table == "gradients" else "results.json")
    if _finished(table, config, workdir, done):
        print(f"  {workdir.name}: finished earlier, skipped", flush=True)
        return _load_point(table, workdir)
    t0, stopped_by, trained = time.perf_counter(), None, None
    try:
        if table == "gradients":
            workdir.mkdir(parents=True, exist_ok=True)
            with workdir_lock(workdir, "results_dir"):
                exp = Experiment(config)
                params = exp.compiled_init()(jnp.arange(config.num_seeds)).params
                io.write_json(workdir / "config.json", config.to_dict())
                TrainingRecorder(exp, workdir, jacobian_points_count=8)(0, params)
        else:
            results = train_and_evaluate(config, workdir)
            stopped_by, trained = results["stopped_by"], results["session_steps"]
    except WorkdirLockedError as e:
        print(
            f"  {workdir.name}: skipped: {workdir} is being trained by another process (pid {e.pid or '?'})", flush=True
        )
        return {"busy": f"being trained by another process (pid {e.pid or '?'})"}
    if trained == 0 and not stopped_by:  # another process finished it between the check above and the lock
        print(f"  {workdir.name}: finished by another process meanwhile, skipped", flush=True)
        return _load_point(table, workdir)
    print(f"  {workdir.name}: {time.perf_counter() - t0:.0f}s", flush=True)
    return {**_load_point(table, workdir), "stopped_by": stopped_by}


def _finished(table: str, config: Config, workdir: Path, done: Path) -> bool:
    saved, results = _read_dict(workdir / "config.json"), _read_dict(done) if table != "gradients" else {}
    if saved is None or results is None or not done.exists() or Config.from_dict(saved) != config:
        return False  # a damaged file means unfinished: the point resumes (or, for gradients, is measured again)
    return table == "gradients" or results.get("steps_done", -1) >= config.steps


def _read_dict(path: Path) -> dict | None:
    """A JSON object from `path`; None if it is missing, damaged or not an object."""
    try:
        value = io.read_json(path)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _load_point(table: str, workdir: Path) -> dict[str, Any]:
    diag = io.read_jsonl(workdir / "diagnostics.jsonl")
    first = min((r["step"] for r in diag), default=0)
    last = max((r["step"] for r in diag), default=0)
    point = {
        "diag_init": [r for r in diag if r["step"] == first],
        "diag_end": [r for r in diag if r["step"] == last and last > first],
    }
    if table != "gradients":
        point["results"] = io.read_json(workdir / "results.json")
        point["metrics"] = io.read_jsonl(workdir / "metrics.jsonl")
    return point


def _grad_entry(diag: list[dict]) -> str:
    if not diag:
        return "-"
    decay = mean_std([r["carry"]["decay_rate"] for r in diag], 2)
    horizon = mean_std([r["carry"]["horizon"] for r in diag], 2)
    return f"{decay} dec/step, horizon {horizon}"


def point_entry(point: dict[str, Any], first_line: bool = False) -> str:
    """A trained point's `metric_entry`, marked when the point is not finished: another process is
    training it, it stopped before its last step (never shown as if it had finished), or — a point with
    nothing to show, {"busy": why} — it is running, failed or has not started (`load_points`)."""
    if "busy" in point:
        return f"- ({point['busy']})"
    results = point["results"]
    entry = metric_entry(results)
    entry = entry.split("<br>")[0] if first_line else entry
    steps, done = results["config"]["steps"], results["steps_done"]
    if done < steps and not results.get("finished"):
        entry = f"**part-trained: {done}/{steps} steps**<br>{entry}"
    return entry


def metric_entry(results: dict[str, Any]) -> str:
    """'mean ± std' of the headline metric, solved fraction, steps to solve, divergences."""
    seeds = results["seeds"]
    key = "ratio" if results["task"] == "copy" else "loss"
    parts = [mean_std([s["final"][key] for s in seeds])]
    if results["task"] == "copy":
        parts.append(f"recall {mean_std([s['final']['recall_accuracy'] for s in seeds], 2)}")
    solved = [s["solved_at_step"] for s in seeds if s["solved"]]
    parts.append(f"solved {len(solved)}/{len(seeds)}" + (f" @ {int(np.median(solved))}" if solved else ""))
    diverged = [s["diverged_at_step"] for s in seeds if s["diverged_at_step"] is not None]
    if diverged:
        parts.append(f"**{len(diverged)} diverged** (step {min(diverged)})")
    return "<br>".join(parts)


def published_rows(task: str) -> list[dict[str, str]]:
    with open(PUBLISHED, newline="") as f:
        return [r for r in csv.DictReader(f) if r["task"] == task]


def _matches(row: dict[str, str], cell: str, seq_len: int) -> bool:
    low, high = int(row["seq_len_min"]), int(row["seq_len_max"] or 10**9)
    return row["cell"] == cell and low <= seq_len <= high


def render(table: str, task: str, grid: Grid, points: dict, command: str, wall: float) -> str:
    """The Markdown report of one table."""
    cells, lens = grid.cells, grid.seq_lens
    if table == "gradients":
        settings = f"task {task}, hidden {grid.hidden_size}, diagnostics batch 32, {grid.num_seeds} seeds, at init"
    else:
        settings = (
            f"task {task}, hidden {grid.hidden_size}, batch {grid.batch_size}, {grid.optimizer} "
            f"lr {grid.learning_rate}, clip {grid.clip_norm}, {grid.steps} steps, {grid.num_seeds} seeds per point, "
            f"eval on {grid.eval_size} held-out sequences"
        )
    head = [
        f"# `{table}` table", "",
        f"Command: `{command}`  ", f"Wall time: {wall / 60:.1f} min on {_machine()}  ",
        f"Versions: {', '.join(f'{k} {v}' for k, v in package_versions().items())}  ",
        f"Settings: {settings}. LSTM forget bias 1.0 (`lstm`, the default) or 0 (`lstm_fb0`).", "",
    ]  # fmt: skip
    out = head
    if table != "gradients":
        what = "CE / baseline (10 ln 8/(T+20))" if task == "copy" else "MSE (baseline 1/6 = 0.167)"
        out += [f"## Final held-out {what}, mean ± std over seeds", ""]
        rows = [[c, *(point_entry(points[c, T]) for T in lens)] for c in cells]
        out += [markdown_table(["cell", *(f"T={T}" for T in lens)], rows), ""]
    out += ["## Gradient decay of ||dL/dh_t|| (fitted decades per step; horizon in steps, 1% of max)", ""]
    phases = [("init", "diag_init")] + ([("end", "diag_end")] if table != "gradients" else [])
    rows = [[c, phase, *(_grad_entry(points[c, T].get(key, [])) for T in lens)] for c in cells for phase, key in phases]
    out += [markdown_table(["cell", "when", *(f"T={T}" for T in lens)], rows), ""]
    published = published_rows(task) if table != "gradients" else []
    if published:
        out += ["## Published, beside ours", ""]
        rows = []
        for r in published:
            ours = [
                f"T={T}: " + point_entry(points[r["cell"], T], first_line=True).replace("<br>", " ")
                for T in lens
                if r["cell"] in cells and _matches(r, r["cell"], T) and table != "gradients"
            ]
            span = _span(r["seq_len_min"], r["seq_len_max"])
            result = " ".join(x for x in (r["metric"] + " " + r["value"] if r["value"] else "", r["outcome"]) if x)
            rows.append([f"{r['source']}, {r['where']}", r["cell"], span, result, r["setting"], "; ".join(ours) or "-"])
        out += [markdown_table(["source", "cell", "T", "published", "their setting", "ours"], rows), ""]
    return "\n".join(out)


def _span(low: str, high: str) -> str:
    if not high:
        return f"≥{low}"
    return low if low == high else (f"≤{high}" if low == "1" else f"{low}–{high}")


def write_csv(path: Path, table: str, points: dict) -> None:
    rows = []
    for (cell, T), p in points.items():
        if "busy" in p:  # another process is training it: no row
            continue
        diag = {(r["seed"], ph): r for ph in ("diag_init", "diag_end") for r in p[ph]}
        seeds = p["results"]["seeds"] if "results" in p else [{"seed": r["seed"]} for r in p["diag_init"]]
        for s in seeds:
            row = {"table": table, "cell": cell, "seq_len": T, "seed": s["seed"]}
            if "results" in p:
                row["steps_done"] = p["results"]["steps_done"]
            row.update({f"final_{k}": v for k, v in s.get("final", {}).items()})
            row.update({k: s.get(k) for k in ("solved", "solved_at_step", "diverged_at_step") if k in s})
            for ph in ("diag_init", "diag_end"):
                if (s["seed"], ph) in diag:
                    carry = diag[s["seed"], ph]["carry"]
                    row.update({f"{ph}_decay_rate": carry["decay_rate"], f"{ph}_horizon": carry["horizon"]})
            rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    io.atomic_write(path, lambda f: f.write(buf.getvalue()))


def write_plots(out_dir: Path, table: str, grid: Grid, points: dict) -> list[Path]:
    from experiments.plots import plot_learning_curves, plot_metric_vs_length  # matplotlib: not for a bad flag

    if table == "gradients":
        return []
    paths, metric = [], "ratio" if table == "copy" else "loss"
    for T in grid.seq_lens:
        curves = {}
        trained = [c for c in grid.cells if "busy" not in points[c, T]]  # a busy point has no curve yet
        if not trained:
            continue
        for c in trained:
            records = points[c, T]["metrics"]
            steps = sorted({r["step"] for r in records})
            curves[c] = (steps, np.array([[r[f"eval_{metric}"] for r in records if r["step"] == s] for s in steps]))
        any_result = points[trained[0], T]["results"]
        baseline, name = (1.0, "CE / baseline") if table == "copy" else (any_result["baseline"], "MSE")
        path = out_dir / f"{table}_curves_T{T}.png"
        plot_learning_curves(curves, baseline, name, path, f"{table}, T={T}, hidden {grid.hidden_size}")
        paths.append(path)

    def final(point: dict) -> list[float]:
        return [s["final"][metric] for s in point["results"]["seeds"]] if "results" in point else [np.nan]

    if not any("results" in p for p in points.values()):  # nothing trained yet (a launcher's jobs): no plot
        return paths
    finals = {c: [final(points[c, T]) for T in grid.seq_lens] for c in grid.cells}
    path = out_dir / f"{table}_final_vs_T.png"
    baseline, name = (1.0, "final CE / baseline") if table == "copy" else (1 / 6, "final MSE")
    plot_metric_vs_length(grid.seq_lens, finals, baseline, name, path, f"{table}: final metric against length")
    return [*paths, path]


def _machine() -> str:
    import os

    return f"{os.cpu_count()} CPU cores ({jax.devices()[0].platform})"


def main(argv: list[str]) -> None:
    F = flags.FLAGS
    if F.table not in TABLES:
        raise ConfigError(f"--table={F.table!r}: must be one of {', '.join(TABLES)}")
    if F.preset not in PRESETS:
        raise ConfigError(f"--preset={F.preset!r}: must be one of {', '.join(PRESETS)}")
    if F.table == "gradients":  # it measures at initialisation: no training flag would change anything
        if given := [name for name in TRAINING_ONLY if F[name].value is not None]:
            raise ConfigError(f"--{given[0]}: does not apply to --table=gradients (no training: it measures at init)")
    elif F["task"].present:
        raise ConfigError(f"--task={F.task}: applies to --table=gradients only (the {F.table} table is on {F.table})")
    if F.steps is not None and not 1 <= F.steps <= 10**9:
        raise ConfigError(f"--steps={F.steps}: must be an integer in [1, 1000000000]")
    task = F.task if F.table == "gradients" else F.table
    overrides = {
        "cells": tuple(list_flag(F.cells, "cells")) if F.cells is not None else None,
        "seq_lens": tuple(int_list_flag(F.seq_lens, "seq_lens")) if F.seq_lens is not None else None,
        "num_seeds": F.num_seeds, "steps": F.steps, "hidden_size": F.hidden_size, "batch_size": F.batch_size,
        "learning_rate": F.learning_rate, "optimizer": F.optimizer,
    }  # fmt: skip
    launcher = check_launcher_flags()
    grid = grid_from_flags(F.table, F.preset, overrides)
    configs = {(c, T): point_config(F.table, task, grid, c, T) for c in grid.cells for T in grid.seq_lens}
    if launcher != "inline" or F.status:  # this process only validates and renders: no 75% of a GPU for it
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if F.status:
        return print_status(F.table, configs, check_grid(F.table, configs, F.results_dir, read_only=True))
    results_dir = check_grid(F.table, configs, F.results_dir)
    t0 = time.perf_counter()
    print(f"{F.table} table, preset {F.preset}: {len(configs)} grid points x {grid.num_seeds} seeds", flush=True)
    failed = []
    if launcher == "inline":
        points = sweep(F.table, configs, results_dir)
    elif launcher == "local":
        print(f"launcher local: {F.workers or DEFAULT_WORKERS} workers (submitit LocalExecutor)", flush=True)
        summaries = launch.run_local(F.table, configs, results_dir, F.workers or DEFAULT_WORKERS)
        failed = [s for s in summaries.values() if s["outcome"] == "failed"]
        points = load_points(F.table, configs, results_dir)
    else:
        points = submit_to_slurm(F.table, configs, results_dir)
        if points is None:
            return None
    write_table(F.table, task, grid, points, results_dir, time.perf_counter() - t0)
    if failed:
        names = ", ".join(f"{s['point']} ({s['message']})" for s in failed)
        print(f"error: {len(failed)} of {len(configs)} grid points failed: {names}; see --status", file=sys.stderr)
        return 1
    return None


def write_table(table: str, task: str, grid: Grid, points: dict, results_dir: Path, elapsed: float) -> None:
    """`<table>.md`, `<table>.csv` and the plots, from `points`; prints the report."""
    out_dir = results_dir / table
    command = "python -m benchmarks.tables " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    wall = sum(p["results"]["wall_time_s"] for p in points.values() if "results" in p) if table != "gradients" else 0
    report = render(table, task, grid, points, command, wall or elapsed)
    plots = write_plots(out_dir, table, grid, points)
    report += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    io.atomic_write(out_dir / f"{table}.md", lambda f: f.write(report))
    write_csv(out_dir / f"{table}.csv", table, points)
    print(report)


def load_points(table: str, configs: dict[tuple[str, int], Config], results_dir: Path) -> dict[tuple[str, int], dict]:
    """Every point as it is on disk: a finished one (or one a signal stopped, with its results) is loaded, any
    other is {"busy": what it is doing} (running, queued, failed, interrupted, not started): the table marks it."""
    points = {}
    statuses = launch.status_points(table, configs, results_dir)
    for key, config in configs.items():
        workdir = point_dir(results_dir, table, config)
        status = statuses[key]
        stopped = status.state == "interrupted" and _read_dict(workdir / "results.json") is not None
        if status.state == "finished" or stopped:  # a stopped run's entry says "part-trained: n/N steps"
            points[key] = _load_point(table, workdir)
        else:
            points[key] = {"busy": status.line.split(" (see ")[0]}
    return points


def print_status(table: str, configs: dict[tuple[str, int], Config], results_dir: Path) -> None:
    """`--status`: one line per grid point, then the count of each state. Reads files only."""
    statuses = launch.status_points(table, configs, results_dir)
    width = max(len(point_dir(results_dir, table, c).name) for c in configs.values())
    print(f"{table}: {len(configs)} grid points under {results_dir / table}")
    for key, status in statuses.items():
        print(f"  {point_dir(results_dir, table, configs[key]).name:<{width}}  {status.line}")
    counts = {}
    for status in statuses.values():
        counts[status.state] = counts.get(status.state, 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))


def submit_to_slurm(table: str, configs: dict[tuple[str, int], Config], results_dir: Path) -> dict | None:
    """Submit the points that are neither finished nor running as one job array, print the job ids and how to
    watch them; returns the points to render when at least one has finished, else None."""
    F = flags.FLAGS
    statuses = launch.status_points(table, configs, results_dir)
    todo = {k: c for k, c in configs.items() if statuses[k].state not in ("finished", "running", "queued")}
    watch = "python -m benchmarks.tables " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] if not a.startswith(("--launcher", "--slurm_"))
    )
    if todo:
        options = launch.SlurmOptions(
            partition=F.slurm_partition, gpus_per_job=F.slurm_gpus_per_job if F.slurm_gpus_per_job is not None else 1,
            time_min=F.slurm_time or 120, array_parallelism=F.slurm_array_parallelism or 256,
            additional=launch.parse_additional(F.slurm_additional),
        )  # fmt: skip
        ids = launch.submit_slurm(table, todo, results_dir, options)
        array = next(iter(ids.values())).split("_")[0]
        print(f"submitted {len(ids)} grid points as Slurm job array {array}:" if len(ids) > 1 else
              f"submitted 1 grid point as Slurm job {array}:")  # fmt: skip
        for key, job_id in ids.items():
            print(f"  {point_dir(results_dir, table, configs[key]).name}: job {job_id}")
        logs = results_dir.absolute() / table / launch.JOBS_FOLDER
        print(f"watch: {watch} --status\nlogs: {logs}/<job id>_0_log.out (and .err)")
        print("rerun this command to resubmit what did not finish and to render the table from the finished points")
    count = {state: sum(s.state == state for s in statuses.values()) for state in ("finished", "running", "queued")}
    print(f"{count['finished']} of {len(configs)} grid points finished, {count['running']} running, "
          f"{count['queued']} queued, {len(todo)} submitted now")  # fmt: skip
    finished = count["finished"]
    if not finished:
        return None
    return load_points(table, configs, results_dir)


DEFAULT_WORKERS = 2
LAUNCHER_FLAGS = {
    "local": ("workers",),
    "slurm": ("slurm_partition", "slurm_gpus_per_job", "slurm_time", "slurm_array_parallelism", "slurm_additional"),
}


def check_launcher_flags() -> str:
    """--launcher and its flags, checked before anything runs; returns the launcher."""
    F = flags.FLAGS
    if F.launcher not in launch.LAUNCHERS:
        raise ConfigError(f"--launcher={F.launcher!r}: must be one of {', '.join(launch.LAUNCHERS)}")
    for launcher, names in LAUNCHER_FLAGS.items():
        if F.launcher != launcher and (given := [n for n in names if F[n].present]):
            raise ConfigError(f"--{given[0]}: applies to --launcher={launcher} only (this is --launcher={F.launcher})")
    bounds = {"workers": (1, 1024), "slurm_gpus_per_job": (0, 64), "slurm_time": (1, 60 * 24 * 365),
              "slurm_array_parallelism": (1, 100_000)}  # fmt: skip
    for name, (low, high) in bounds.items():
        if F[name].value is not None and not low <= F[name].value <= high:
            raise ConfigError(f"--{name}={F[name].value}: must be an integer in [{low}, {high}]")
    if F.slurm_partition is not None and not re.fullmatch(r"[\w.,-]+", F.slurm_partition):
        raise ConfigError(
            f"--slurm_partition={F.slurm_partition!r}: must be a partition name (or several, comma-separated)"
        )
    launch.parse_additional(F.slurm_additional)
    if F.launcher == "slurm" and not F.status and not launch.slurm_available():
        raise ConfigError("--launcher=slurm: no Slurm here (sbatch and srun are not on PATH); run it on a login node "
                          "of the cluster, or use --launcher=local")  # fmt: skip
    return F.launcher


def sweep(table: str, configs: dict[tuple[str, int], Config], results_dir: Path) -> dict[tuple[str, int], dict]:
    """Every grid point in turn. SIGTERM/SIGINT stop the whole sweep, whether they arrive during a point
    (which saves its checkpoint) or between points: one line on stderr, exit code 128+signal, and no
    table is written, so a part-trained point is never published. The same command resumes."""
    points = {}
    with StopSignal() as stop:
        for key, config in configs.items():
            if stop.received is None:
                workdir = point_dir(results_dir, table, config)
                try:
                    points[key] = run_point(table, config, workdir)
                except Exception as e:  # for --status; the traceback goes on as before
                    launch.record_error(workdir, e)
                    raise
                if points[key].get("stopped_by"):
                    stop.received = signal.Signals[points[key]["stopped_by"]].value
            if stop.received is not None:
                finished = sum(not p.get("stopped_by") and "busy" not in p for p in points.values())
                launch.exit_stopped(stop.received, "the sweep stopped", finished, len(configs), table)
    return points


def check_grid(table: str, configs: dict[tuple[str, int], Config], results_dir: str, read_only: bool = False) -> Path:
    """Every point of the grid, before the first one trains: its config, its folder, and a run already
    there with other settings (refused, as `experiments.train` would, but before any point trains;
    a gradients point with other settings is measured again). Returns the checked --results_dir.
    `read_only` (for --status): the configs only; nothing is created or refused for what is on disk."""
    for (cell, T), config in configs.items():
        try:
            validate_cells(config, [cell])
        except ConfigError as e:  # name a flag this tool has: --seq_lens, not --seq_len or --diag_every
            raise ConfigError(re.sub(r"^--(seq_len|diag_every)=\d+", f"--seq_lens (T={T})", str(e))) from None
    if read_only:
        if not str(results_dir).strip() or Path(results_dir).is_file():
            raise ConfigError(f"--results_dir={results_dir!r}: must name a folder")
        return Path(results_dir)
    results_dir = check_workdir(results_dir, "results_dir")  # created only once every point is valid
    dirs = {point_dir(results_dir, table, c) for c in configs.values()}
    if len(dirs) < len(configs):
        raise ConfigError(f"--cells: two cells share a folder name (':' and '.' become '_' in {results_dir / table})")
    if table != "gradients":
        for config in configs.values():
            check_resumable(config, point_dir(results_dir, table, config))
    return results_dir


TRAINING_ONLY = ("steps", "batch_size", "learning_rate", "optimizer")  # flags the gradients table has no use for


def define_flags() -> None:
    flags.DEFINE_string("table", "adding", f"Which table: {', '.join(TABLES)}.")
    flags.DEFINE_string("preset", "quick", f"Grid and budget: {', '.join(PRESETS)}.")
    flags.DEFINE_string("results_dir", "results", "Where grid points, tables and plots go.")
    flags.DEFINE_string("task", "adding", "Task of the gradients table (adding or copy).")
    flags.DEFINE_string("cells", None, "Override: comma-separated cells.")
    flags.DEFINE_string("seq_lens", None, "Override: comma-separated lengths T.")
    flags.DEFINE_integer("num_seeds", None, "Override: seeds per grid point (trained together, vmapped).")
    flags.DEFINE_integer("steps", None, "Override: training steps (adding and copy tables).")
    flags.DEFINE_integer("hidden_size", None, "Override: hidden size.")
    flags.DEFINE_integer("batch_size", None, "Override: batch size.")
    flags.DEFINE_float("learning_rate", None, "Override: learning rate.")
    flags.DEFINE_string("optimizer", None, "Override: adam, rmsprop or sgd.")
    flags.DEFINE_string(
        "launcher",
        "inline",
        "inline: points one after another in this process; local: --workers "
        "worker processes (submitit's LocalExecutor); slurm: one Slurm job per point, a job array.",
    )
    flags.DEFINE_integer("workers", None, f"--launcher=local: points trained at once (default {DEFAULT_WORKERS}).")
    flags.DEFINE_string("slurm_partition", None, "--launcher=slurm: partition (default: the cluster's).")
    flags.DEFINE_integer("slurm_gpus_per_job", None, "--launcher=slurm: GPUs per job (default 1; 0 = CPU only).")
    flags.DEFINE_integer(
        "slurm_time",
        None,
        "--launcher=slurm: time limit per job in minutes (default 120); "
        "a job stopped at the limit saves a checkpoint and is requeued.",
    )
    flags.DEFINE_integer(
        "slurm_array_parallelism", None, "--launcher=slurm: jobs of the array running at once (default 256)."
    )
    flags.DEFINE_string(
        "slurm_additional",
        None,
        "--launcher=slurm: other sbatch options, key=value,... "
        "(e.g. account=lab,qos=high,mem=32G,cpus-per-task=8,constraint=a100).",
    )
    flags.DEFINE_bool(
        "status",
        False,
        "Print what each grid point is doing (finished, running with step, "
        "steps/s and ETA, failed with its error, not started) and exit; trains nothing.",
    )


if __name__ == "__main__":
    define_flags()
    run(main)

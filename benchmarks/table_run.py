"""Train or read a table's grid points and write its report: inline, with local workers or as a Slurm job array
(`TableRun` says which, checked by `check_launcher`), `--status` (what each point is doing), `--plan` (what is
left and how long it takes) and `--render_only` (the table from the points on disk).
"""

import dataclasses
import os
import re
import shlex
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import plan
from benchmarks.launch import JOBS_FOLDER, LAUNCHERS, measure
from benchmarks.local_workers import run_local
from benchmarks.point_status import status_points
from benchmarks.slurm import SCHEDULER_TIMEOUT_S, SlurmOptions, parse_additional, slurm_available, submit_slurm
from benchmarks.table_record import RECORD, write_record
from benchmarks.table_sweep import OWN_FIELDS
from experiments.config import Config, ConfigError, check_workdir
from experiments.grid import PointKey, Sweep, point_dir, task_of
from experiments.rules import check_integer, check_seconds
from experiments.schema import DamagedError
from experiments.sweep import check_points, exit_on_signal, load_point, read_dict, run_inline
from experiments.sweep_report import write_report

COMMITTED_RESULTS = Path(__file__).resolve().parent.parent / "results"
DEFAULT_WORKERS = 2
LAUNCHER_FLAGS = {
    "local": ("workers",),
    "slurm": ("slurm_partition", "slurm_gpus_per_job", "slurm_time", "slurm_array_parallelism", "slurm_additional"),
}
LAUNCHER_BOUNDS = {
    "workers": (1, 1024),
    "slurm_gpus_per_job": (0, 64),
    "slurm_time": (1, 60 * 24 * 365),
    "slurm_array_parallelism": (1, 100_000),
}


@dataclasses.dataclass(frozen=True)
class TableRun:
    """How one table command runs: its preset, what it does (train; --status and --render_only only read), the
    launcher and its options, the command the report's header records, and the sweep flags sweep.json records."""

    preset: str
    launcher: str = "inline"
    status: bool = False
    render_only: bool = False
    workers: int = DEFAULT_WORKERS
    slurm: SlurmOptions = SlurmOptions()
    command: str = ""  # this command as the one that trains the table (`table_record.training_command`)
    watch: str = ""  # this command without its launcher flags: after a Slurm submission, `<watch> --status`
    record: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # sweep flags given: name -> value


def watch_command(argv: Sequence[str]) -> str:
    """The table command of `argv` (its arguments) without its launcher flags: `<it> --status` watches the jobs."""
    kept = [shlex.quote(a) for a in argv if not a.startswith(("--launcher", "--slurm_"))]
    return "python -m benchmarks.tables " + " ".join(kept)


def check_launcher(values: Mapping[str, Any], given: Collection[str]) -> TableRun:
    """--launcher and its flags (`values`: flag name -> value, None when not set; `given`: the flags the command
    line set), checked before anything runs."""
    launcher, status, render_only = values["launcher"], values["status"], values["render_only"]
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher={launcher!r}: must be one of {', '.join(LAUNCHERS)}")
    for name, names in LAUNCHER_FLAGS.items():
        if launcher != name and (wrong := [n for n in names if n in given]):
            raise ConfigError(f"--{wrong[0]}: applies to --launcher={name} only (this is --launcher={launcher})")
    if "slurm_timeout" in given and launcher != "slurm" and not (status or render_only):
        raise ConfigError("--slurm_timeout: applies to --launcher=slurm, --status and --render_only (they call squeue)")
    if values["slurm_timeout"] is not None:  # also refuses nan
        check_seconds("slurm_timeout", values["slurm_timeout"], 0, 3600, low_open=True)
    for name, (low, high) in LAUNCHER_BOUNDS.items():
        if values[name] is not None:
            check_integer(name, values[name], low, high)
    partition = values["slurm_partition"]
    if partition is not None and not re.fullmatch(r"[\w.,-]+", partition):
        raise ConfigError(f"--slurm_partition={partition!r}: must be a partition name (or several, comma-separated)")
    additional = parse_additional(values["slurm_additional"])
    if launcher == "slurm" and not status and not slurm_available():
        raise ConfigError(
            "--launcher=slurm: no Slurm here (sbatch and srun are not on PATH); run it on a login node of the "
            "cluster, or use --launcher=local"
        )
    slurm = SlurmOptions(
        partition=partition,
        gpus_per_job=values["slurm_gpus_per_job"] if values["slurm_gpus_per_job"] is not None else 1,
        time_min=values["slurm_time"] or 120,
        array_parallelism=values["slurm_array_parallelism"] or 256,
        additional=additional,
        timeout_s=SCHEDULER_TIMEOUT_S if values["slurm_timeout"] is None else values["slurm_timeout"],
    )
    workers = values["workers"] or DEFAULT_WORKERS
    return TableRun(values["preset"], launcher, status, render_only, workers, slurm)


def run_table(
    table: str,
    sweep: Sweep,
    results_dir: Path,
    run: TableRun,
    command: str | None = None,
    written: list[Path] | None = None,
) -> int | None:
    """Train (or, with --status or --render_only, read) the points of `sweep` under `<results_dir>/<table>/` and
    write its report; `command`: what the header records (default: `run.command`, this command as the one that
    trains).
    Ends with the "wrote" line, or, given `written`, adds the paths to it for the caller's."""
    configs = sweep.points()
    if run.launcher != "inline" or run.status:  # this process only validates and renders: no 75% of a GPU for it
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = results_dir / table
    if run.status or run.render_only:
        with exit_on_signal("reading the grid points; nothing was trained or written"):
            check_points(configs, out, sweep.measure, read_only=True, own_flags=OWN_FIELDS)
            if run.status:
                return print_status(table, configs, results_dir, run.slurm.timeout_s)
            _check_writable(results_dir, table)  # before anything is read or drawn
            record = read_dict(out / RECORD) or {}
            points = load_points(table, configs, results_dir, run.slurm.timeout_s)
        written: list[Path] = []
        print(write_report(out, table, sweep, points, record.get("command") or run.command, 0.0, written))
        return print_written(written)
    with exit_on_signal("checking the grid points; nothing was trained"):
        check_points(configs, out, sweep.measure, own_flags=OWN_FIELDS)
    command = command or run.command
    write_record(out, command, run.record)
    t0 = time.perf_counter()
    print(f"{table} table, preset {run.preset}: {len(configs)} grid points x {_members(sweep)} seeds", flush=True)
    print(f"grid points under {out}", flush=True)
    failed = []
    if run.launcher == "inline":
        points = run_inline(sweep.measure, configs, out, table)
    elif run.launcher == "local":
        print(f"launcher local: {run.workers} workers (submitit LocalExecutor)", flush=True)
        summaries = run_local(table, configs, results_dir, run.workers)
        failed = [s for s in summaries.values() if s["outcome"] == "failed"]
        points = load_points(table, configs, results_dir, run.slurm.timeout_s)
    else:
        points = submit_to_slurm(table, configs, results_dir, run)
        if points is None:
            return None
    paths: list[Path] = []
    print(write_report(out, table, sweep, points, command, time.perf_counter() - t0, paths))
    if written is None:
        print_written(paths)
    else:
        written += paths
    if failed:
        names = ", ".join(f"{s['point']} ({s['message']})" for s in failed)
        print(f"error: {len(failed)} of {len(configs)} grid points failed: {names}; see --status", file=sys.stderr)
        return 1
    return None


def print_written(paths: list[Path]) -> None:
    """The run's last line: the files it wrote."""
    print("wrote " + ", ".join(str(p) for p in paths), flush=True)


def _check_writable(results_dir: Path, table: str) -> None:
    """--render_only writes the table, its CSV and plots into <results_dir>/<table>: refused up front if it cannot."""
    try:
        check_workdir(results_dir / table, "results_dir")
    except ConfigError as e:
        why = str(e).rpartition(": ")[2]
        raise ConfigError(
            f"--results_dir={results_dir}: --render_only writes {table}.md, {table}.csv and its plots into "
            f"{results_dir / table}, which is {why}; copy the folder somewhere writable and render there"
        ) from None


def _members(sweep: Sweep) -> str:
    rates = sweep.settings.get("learning_rate")
    seeds = sweep.settings.get("num_seeds", 1)
    return f"{len(rates)} learning rates x {seeds}" if isinstance(rates, tuple) else str(seeds)


def load_points(
    table: str, configs: dict[PointKey, Config], results_dir: Path, timeout_s: float = SCHEDULER_TIMEOUT_S
) -> dict[PointKey, dict]:
    """Every point as it is on disk: a finished one (or one a signal stopped, with its results) is loaded, any
    other is {"busy": what it is doing} (running, queued, failed, interrupted, not started): the table marks it."""
    points = {}
    statuses = status_points(table, configs, results_dir, timeout_s)
    records = None
    for key in configs:
        workdir = point_dir(results_dir / table, key)
        status = statuses[key]
        stopped = status.state == "interrupted" and read_dict(workdir / "results.json") is not None
        if status.state == "finished" or stopped:  # a stopped run's entry says "part-trained: n/N steps"
            try:
                points[key] = load_point(measure(table), workdir, task_of(configs[key]))
            except DamagedError as e:
                points[key] = {"busy": f"damaged: {e.short}"}
        elif status.line == "not started" and measure(table) == "train":  # nothing submitted either
            records = find_plan_records(results_dir) if records is None else records
            cpu, gpu = (plan.estimate(configs[key], configs[key].steps, records, b).seconds for b in plan.BACKENDS)
            points[key] = {
                "busy": f"not yet trained; --plan: ~{plan.duration(cpu)} on a CPU, ~{plan.duration(gpu)} on a GPU"
            }
        else:
            points[key] = {"busy": status.line.split(" (see ")[0]}
    return points


def find_plan_records(results_dir: Path) -> list[plan.Record]:
    """The timing records `--plan` estimates from: the committed results' and `results_dir`'s."""
    return plan.find_records(r for r in dict.fromkeys([COMMITTED_RESULTS, results_dir.resolve()]) if r.is_dir())


def print_plan(table: str, configs: dict[PointKey, Config], results_dir: Path) -> None:
    """`--plan`: each point's remaining steps and estimated wall time per backend (`benchmarks.plan`). Reads files."""
    from experiments.resume import steps_done

    roots = [COMMITTED_RESULTS, results_dir]
    records = find_plan_records(results_dir)
    points = {key: (config, steps_done(point_dir(results_dir / table, key))) for key, config in configs.items()}
    under = ", ".join(str(r) for r in dict.fromkeys(roots))
    print(
        f"{table}: {len(configs)} grid points under {results_dir / table}; {len(records)} timing records under {under}"
    )
    print("\n".join(plan.plan_lines(points, records)))


def print_status(
    table: str, configs: dict[PointKey, Config], results_dir: Path, timeout_s: float = SCHEDULER_TIMEOUT_S
) -> None:
    """`--status`: one line per grid point, then the count of each state. Reads files only."""
    statuses = status_points(table, configs, results_dir, timeout_s)
    width = max(len(key.dirname) for key in configs)
    print(f"{table}: {len(configs)} grid points under {results_dir / table}")
    for key, status in statuses.items():
        print(f"  {key.dirname:<{width}}  {status.line}")
    counts = {}
    for status in statuses.values():
        counts[status.state] = counts.get(status.state, 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))


def submit_to_slurm(table: str, configs: dict[PointKey, Config], results_dir: Path, run: TableRun) -> dict | None:
    """Submit the points that are neither finished nor running as one job array, print the job ids and how to
    watch them; returns the points to render when at least one has finished, else None."""
    statuses = status_points(table, configs, results_dir, run.slurm.timeout_s)
    # "unknown": squeue did not say whether its job is still queued; submitting it again could train it twice
    todo = {k: c for k, c in configs.items() if statuses[k].state not in ("finished", "running", "queued", "unknown")}
    if todo:
        ids = submit_slurm(table, todo, results_dir, run.slurm)
        array = next(iter(ids.values())).split("_")[0]
        if len(ids) > 1:
            print(f"submitted {len(ids)} grid points as Slurm job array {array}:")
        else:
            print(f"submitted 1 grid point as Slurm job {array}:")
        for key, job_id in ids.items():
            print(f"  {key.dirname}: job {job_id}")
        logs = results_dir.absolute() / table / JOBS_FOLDER
        print(f"watch: {run.watch} --status\nlogs: {logs}/<job id>_0_log.out (and .err)")
        print("rerun this command to resubmit what did not finish and to render the table from the finished points")
    states = ("finished", "running", "queued", "unknown")
    count = {state: sum(s.state == state for s in statuses.values()) for state in states}
    print(
        f"{count['finished']} of {len(configs)} grid points finished, {count['running']} running, "
        f"{count['queued']} queued, {len(todo)} submitted now"
    )
    if count["unknown"]:
        unknown = next(s.line for s in statuses.values() if s.state == "unknown")
        print(
            f"{count['unknown']} grid points not submitted: their Slurm queue state is unknown ({unknown}); "
            "rerun when squeue answers",
            file=sys.stderr,
        )
    finished = count["finished"]
    if not finished:
        return None
    return load_points(table, configs, results_dir, run.slurm.timeout_s)

"""Reproduction tables: which cell fails at which length, beside the published numbers.

    python -m benchmarks.tables --table=adding --preset=quick
    python -m benchmarks.tables --table=copy --preset=paper --cells=lstm --seq_lens=100,200
    python -m benchmarks.tables --table=selective_copy --preset=quick --learning_rate=3e-4,1e-3,3e-3
    python -m benchmarks.tables --task=path/to/my_task.py:MyTask --cells=lstm,ugrnn=path/to/ugrnn.py:UGRNN
    python -m benchmarks.tables --reproduce=results/quick/adding --steps=200 --num_seeds=1

A table is a `Sweep` of `benchmarks/presets.py` (data: the grid in Config fields, by keyword), trained
point by point by `experiments.sweep`: all seeds of a point in one program (`--num_seeds`, vmapped),
with gradient diagnostics at initialisation and at the end; `gradients` measures the diagnostics at
initialisation only. A table named after a task, registered or `--task=package.module:Class`, that the
preset does not list uses the preset's `default` sweep with that task: the report renders from what
the task declares, so a new task needs no edit here. Each point is a workdir under
`<results_dir>/<table>/` (default `runs/tables/<preset>/<table>/`); a finished one is skipped and an
unfinished one resumes, so a sweep killed midway loses nothing. Writes `<table>.md`, `<table>.csv` and
PNG plots, and ends with the paths it wrote; published figures come from `results/published.csv`.
`--learning_rate=a,b,c` trains every rate in each point's program and reports each cell at its best
rate on the validation split.

Committed results are never changed unless named: a table folder holding files git tracks is
refused without `--overwrite_tracked`. A launch records its flags in `<results_dir>/<table>/sweep.json`:
the header's "Command:" is that training command (every override; `PYTHONPATH` when a plug-in was
imported through it), `--status` and `--render_only` read the flags from there, and
`--reproduce=<table folder>` retrains a table (committed or not) into a work folder, at the `--steps`
and `--num_seeds` given (at most the table's), and prints ours beside its numbers (`benchmarks/reproduce.py`).

`--launcher=local --workers=N` trains the points in N worker processes, `--launcher=slurm` submits
them as a Slurm job array, and `--status` says what each point is doing (`benchmarks/launch.py`).
"""

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags

from benchmarks import launch, plan
from benchmarks.presets import PRESETS
from experiments import io
from experiments.config import Config, ConfigError, check_workdir, parse_learning_rates
from experiments.flags import int_list_flag, list_flag, run
from experiments.schema import DamagedError
from experiments.sweep import (
    PointKey,
    Sweep,
    check_points,
    exit_on_signal,
    load_point,
    point_dir,
    read_dict,
    run_inline,
    task_of,
    write_report,
)
from plugins import is_file_spec
from tasks import TASKS

COMMITTED_RESULTS = Path(__file__).resolve().parent.parent / "results"
RECORD = "sweep.json"  # in <results_dir>/<table>/: the flags of the launch, for --status, --render_only, --reproduce
# the flags that define a sweep (recorded at launch, read back by --status, --render_only and --reproduce)
SWEEP_FLAGS = ("table", "preset", "task", "task_options", "cells", "seq_lens", "num_seeds", "steps", "hidden_size",
               "batch_size", "learning_rate", "optimizer")  # fmt: skip
# how a command ran, not what it trains
NOT_RECORDED = ("render_only", "status", "plan", "overwrite_tracked", "reproduce")


def table_name(table: str | None, task: str | None) -> str:
    """The table to build: --table, else the task's (a registered name, or the class of an import path)."""
    if table is None:
        return "adding" if task is None else task.rpartition(":")[2]
    return table


def sweep_from_flags(preset: str, table: str, task: str | None) -> Sweep:
    """The preset's sweep of `table` (its `default` one, for a task it does not list), with the flags' overrides."""
    F = flags.FLAGS
    sweeps = PRESETS[preset]
    if table == "gradients":
        if table not in sweeps:
            tables = ", ".join(t for t in sweeps if t != "default")
            raise ConfigError(f"--table=gradients: --preset={preset} has no gradients table (it has {tables})")
        sweep = sweeps[table] if task is None else sweeps[table].with_fields(task=task)
    elif table in sweeps and task in (None, sweeps[table].task):
        sweep = sweeps[table]
    elif task is not None and table == table_name(None, task):  # --task alone: the task's own table
        sweep = sweeps["default"].with_fields(task=task)
    elif task is not None:
        raise ConfigError(f"--task={task}: its table is named after it; give --task or --table alone")
    elif table not in TASKS.names():
        tables = sorted({*sweeps, *TASKS.names()} - {"default"})
        raise ConfigError(f"--table={table!r}: must be one of {', '.join(tables)} (or --task=package.module:Class)")
    else:
        sweep = sweeps["default"].with_fields(task=table)
    overrides: dict[str, Any] = {
        k: F[k].value for k in ("num_seeds", "steps", "hidden_size", "batch_size", "optimizer", "task_options")
        if F[k].value is not None
    }  # fmt: skip
    if F.learning_rate is not None:
        overrides["learning_rate"] = parse_learning_rates(F.learning_rate)
    sweep = sweep.with_fields(**overrides)
    grid, names = dict(sweep.grid), dict(sweep.names)
    if F.cells is not None:
        cells = cells_flag(F.cells)
        grid["cell"] = tuple(cells)
        names.update({spec: name for spec, name in cells.items() if name != spec})
    if F.seq_lens is not None:
        grid["seq_len"] = tuple(int_list_flag(F.seq_lens, "seq_lens"))
    return sweep.replace(grid=grid, names=names)


def cells_flag(value: str) -> dict[str, str]:
    """`--cells`: {cell spec: row name}; an entry is a cell (registered name, package.module:Class or
    path/to/file.py:Class) or `name=cell`, a short row name for it (e.g. `ugrnn=path/to/ugrnn.py:UGRNN`)."""
    cells: dict[str, str] = {}
    for item in list_flag(value, "cells"):
        name, eq, spec = item.partition("=")
        name, spec = (name.strip(), spec.strip()) if eq else (item, item)
        if eq and not re.fullmatch(r"[A-Za-z][\w-]*", name) or not spec:
            raise ConfigError(f"--cells={value!r}: {item!r} is not cell or name=cell (a name: letters, digits, _ -)")
        if spec in cells:
            raise ConfigError(f"--cells={value!r}: {spec} given more than once")
        cells[spec] = name
    if len(set(cells.values())) < len(cells):
        raise ConfigError(f"--cells={value!r}: two cells share the row name {_repeated(list(cells.values()))}")
    return cells


def _repeated(items: list[str]) -> str:
    return next(x for x in items if items.count(x) > 1)


def default_results_dir(preset: str) -> Path:
    """Where a table's points go unless --results_dir says: a work folder, never the committed results/."""
    return Path("runs") / "tables" / preset


def tracked_files(folder: Path) -> list[str]:
    """Files under `folder` that git tracks: committed results (none outside a git work tree, or without git)."""
    if not folder.is_dir():
        return []
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return [f for f in proc.stdout.decode(errors="replace").split("\0") if f] if proc.returncode == 0 else []


def check_untracked(out: Path, flag: str = "results_dir") -> None:
    """Refuse to write into a folder holding committed files unless --overwrite_tracked says to."""
    if flags.FLAGS.overwrite_tracked or not (tracked := tracked_files(out)):
        return
    given = flags.FLAGS[flag].value
    raise ConfigError(
        f"--{flag}={given}: {out} holds {len(tracked)} files tracked by git (committed results, e.g. "
        f"{out / tracked[0]}); pass --overwrite_tracked to write there, or leave --{flag} out to write into a "
        "work folder"
    )


def training_command() -> str:
    """This command as the one that trains its table: every flag but how it ran (--render_only, --status, ...),
    with PYTHONPATH in front when a plug-in was imported through it."""
    args = [a for a in sys.argv[1:] if _flag_name(a) not in NOT_RECORDED]
    command = "python -m benchmarks.tables " + " ".join(shlex.quote(a) for a in args)
    F = flags.FLAGS
    specs = [F.task or ""] + (list(cells_flag(F.cells)) if F.cells else [])
    dotted = [s for s in specs if ":" in s and not is_file_spec(s) and not _in_repo(s)]
    if dotted and os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    return command.rstrip()


def _in_repo(spec: str) -> bool:
    """Whether a package.module:Class plug-in lives in this repository (importable from its root)."""
    root = Path(__file__).resolve().parents[1]
    return (root / spec.partition(":")[0].split(".")[0]).exists()


def _flag_name(arg: str) -> str:
    name = arg.lstrip("-").partition("=")[0]
    return name[2:] if name.startswith("no") and name[2:] in NOT_RECORDED else name


def write_record(out: Path, command: str) -> None:
    """`<out>/sweep.json`: the command of this launch and its sweep flags (those given), for --status,
    --render_only and --reproduce."""
    F = flags.FLAGS
    given = {name: F[name].value for name in SWEEP_FLAGS if F[name].present}
    io.write_json(out / RECORD, {"command": command, "flags": given})


def record_folder(results_dir: str | None, preset: str, table: str, table_given: bool) -> Path | None:
    """The table folder whose sweep.json --status or --render_only reads: `--results_dir` itself when it is one,
    else `<results_dir>/<table>` (the one table under it that has a record, when no table is named)."""
    base = Path(results_dir) if results_dir else default_results_dir(preset)
    if (base / RECORD).is_file():
        return base
    if table_given or (base / table / RECORD).is_file():
        return base / table if (base / table / RECORD).is_file() else None
    found = sorted(p.parent for p in base.glob(f"*/{RECORD}")) if base.is_dir() else []
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError(f"--table: --results_dir={base} holds several tables ({names}); name one")
    return found[0] if found else None


def apply_record() -> None:
    """--status and --render_only: the sweep flags a launch recorded, for each flag not given now."""
    F = flags.FLAGS
    table = table_name(F.table, F.task)
    folder = record_folder(F.results_dir, F.preset, table, F["table"].present or F["task"].present)
    if folder is None:
        return
    record = read_dict(folder / RECORD) or {}
    given = record.get("flags") or {}
    damaged = dict(before=f"--results_dir={folder}: ", after="; move it away and give the sweep's flags")
    if not isinstance(given, dict):
        raise DamagedError(folder / RECORD, f'"flags" must be an object, not {type(given).__name__}', **damaged)
    for name, value in given.items():
        if name in SWEEP_FLAGS and not F[name].present:
            try:  # each value as its flag reads it: a hand-edited "steps": "abc" is damage, not a crash later
                F[name].value = None if value is None else F[name].parser.parse(value)
            except (TypeError, ValueError) as e:  # absl's parsers raise these
                why = f'"flags.{name}" is not a value of --{name}: {value!r} ({e})'
                raise DamagedError(folder / RECORD, why, **damaged) from None
    recorded = table_name(F.table, F.task)
    if folder.name != recorded:
        raise ConfigError(f"--results_dir={folder}: its sweep.json records table {recorded}, not {folder.name}")
    F.results_dir = str(folder.parent)


def main(argv: list[str]) -> int | None:
    try:
        return _main()
    except launch.SchedulerError as e:  # sbatch or squeue failed or hung: its own words, one line, exit 1
        print(f"error: {e}", file=sys.stderr)
        return 1


def _main() -> int | None:
    F = flags.FLAGS
    if F.reproduce is not None:
        from benchmarks.reproduce import reproduce

        return reproduce(F.reproduce, sys.modules[__name__])
    if F.status or F.render_only:
        apply_record()
    if F.preset not in PRESETS:
        raise ConfigError(f"--preset={F.preset!r}: must be one of {', '.join(PRESETS)}")
    table = table_name(F.table, F.task)
    given = [name for name in TRAINING_ONLY if F[name].value is not None]
    if table == "gradients" and given:  # it measures at initialisation: no training flag would change anything
        raise ConfigError(f"--{given[0]}: does not apply to --table=gradients (no training: it measures at init)")
    if F.steps is not None and not 1 <= F.steps <= 10**9:
        raise ConfigError(f"--steps={F.steps}: must be an integer in [1, 1000000000]")
    sweep = sweep_from_flags(F.preset, table, F.task)
    launcher = check_launcher_flags()
    if F.results_dir is not None and not F.results_dir.strip():
        raise ConfigError(f"--results_dir={F.results_dir!r}: must name a folder")
    results_dir = Path(F.results_dir) if F.results_dir is not None else default_results_dir(F.preset)
    if F.plan:
        return print_plan(table, sweep.points(), results_dir)
    if not F.status:
        check_untracked(results_dir / table)
    return run_table(table, sweep, results_dir, launcher)


def run_table(
    table: str,
    sweep: Sweep,
    results_dir: Path,
    launcher: str,
    command: str | None = None,
    written: list[Path] | None = None,
) -> int | None:
    """Train (or, with --status or --render_only, read) the points of `sweep` under `<results_dir>/<table>/` and
    write its report; `command`: what the header records (default: this command, as the one that trains).
    Ends with the "wrote" line, or, given `written`, adds the paths to it for the caller's."""
    F = flags.FLAGS
    configs = sweep.points()
    if launcher != "inline" or F.status:  # this process only validates and renders: no 75% of a GPU for it
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = results_dir / table
    if F.status or F.render_only:
        with exit_on_signal("reading the grid points; nothing was trained or written"):
            check_points(configs, out, sweep.measure, read_only=True, own_flags=OWN_FIELDS)
            if F.status:
                return print_status(table, configs, results_dir)
            _check_writable(results_dir, table)  # before anything is read or drawn
            record = read_dict(out / RECORD) or {}
            points = load_points(table, configs, results_dir)
        written: list[Path] = []
        print(write_report(out, table, sweep, points, record.get("command") or training_command(), 0.0, written))
        return print_written(written)
    with exit_on_signal("checking the grid points; nothing was trained"):
        check_points(configs, out, sweep.measure, own_flags=OWN_FIELDS)
    command = command or training_command()
    write_record(out, command)
    t0 = time.perf_counter()
    print(f"{table} table, preset {F.preset}: {len(configs)} grid points x {_members(sweep)} seeds", flush=True)
    print(f"grid points under {out}", flush=True)
    failed = []
    if launcher == "inline":
        points = run_inline(sweep.measure, configs, out, table)
    elif launcher == "local":
        print(f"launcher local: {F.workers or DEFAULT_WORKERS} workers (submitit LocalExecutor)", flush=True)
        summaries = launch.run_local(table, configs, results_dir, F.workers or DEFAULT_WORKERS)
        failed = [s for s in summaries.values() if s["outcome"] == "failed"]
        points = load_points(table, configs, results_dir)
    else:
        points = submit_to_slurm(table, configs, results_dir)
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


def load_points(table: str, configs: dict[PointKey, Config], results_dir: Path) -> dict[PointKey, dict]:
    """Every point as it is on disk: a finished one (or one a signal stopped, with its results) is loaded, any
    other is {"busy": what it is doing} (running, queued, failed, interrupted, not started): the table marks it."""
    points = {}
    statuses = launch.status_points(table, configs, results_dir, _slurm_timeout())
    records = None
    for key in configs:
        workdir = point_dir(results_dir / table, key)
        status = statuses[key]
        stopped = status.state == "interrupted" and read_dict(workdir / "results.json") is not None
        if status.state == "finished" or stopped:  # a stopped run's entry says "part-trained: n/N steps"
            try:
                points[key] = load_point(launch.measure(table), workdir, task_of(configs[key]))
            except DamagedError as e:
                points[key] = {"busy": f"damaged: {e.short}"}
        elif status.line == "not started" and launch.measure(table) == "train":  # nothing submitted either
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
    print(f"{table}: {len(configs)} grid points under {results_dir / table}; {len(records)} timing records under "
          f"{', '.join(str(r) for r in dict.fromkeys(roots))}")  # fmt: skip
    print("\n".join(plan.plan_lines(points, records)))


def print_status(table: str, configs: dict[PointKey, Config], results_dir: Path) -> None:
    """`--status`: one line per grid point, then the count of each state. Reads files only."""
    statuses = launch.status_points(table, configs, results_dir, _slurm_timeout())
    width = max(len(key.dirname) for key in configs)
    print(f"{table}: {len(configs)} grid points under {results_dir / table}")
    for key, status in statuses.items():
        print(f"  {key.dirname:<{width}}  {status.line}")
    counts = {}
    for status in statuses.values():
        counts[status.state] = counts.get(status.state, 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))


def submit_to_slurm(table: str, configs: dict[PointKey, Config], results_dir: Path) -> dict | None:
    """Submit the points that are neither finished nor running as one job array, print the job ids and how to
    watch them; returns the points to render when at least one has finished, else None."""
    F = flags.FLAGS
    statuses = launch.status_points(table, configs, results_dir, _slurm_timeout())
    # "unknown": squeue did not say whether its job is still queued; submitting it again could train it twice
    todo = {k: c for k, c in configs.items() if statuses[k].state not in ("finished", "running", "queued", "unknown")}
    watch = "python -m benchmarks.tables " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] if not a.startswith(("--launcher", "--slurm_"))
    )
    if todo:
        options = launch.SlurmOptions(
            partition=F.slurm_partition, gpus_per_job=F.slurm_gpus_per_job if F.slurm_gpus_per_job is not None else 1,
            time_min=F.slurm_time or 120, array_parallelism=F.slurm_array_parallelism or 256,
            additional=launch.parse_additional(F.slurm_additional), timeout_s=_slurm_timeout(),
        )  # fmt: skip
        ids = launch.submit_slurm(table, todo, results_dir, options)
        array = next(iter(ids.values())).split("_")[0]
        print(f"submitted {len(ids)} grid points as Slurm job array {array}:" if len(ids) > 1 else
              f"submitted 1 grid point as Slurm job {array}:")  # fmt: skip
        for key, job_id in ids.items():
            print(f"  {key.dirname}: job {job_id}")
        logs = results_dir.absolute() / table / launch.JOBS_FOLDER
        print(f"watch: {watch} --status\nlogs: {logs}/<job id>_0_log.out (and .err)")
        print("rerun this command to resubmit what did not finish and to render the table from the finished points")
    states = ("finished", "running", "queued", "unknown")
    count = {state: sum(s.state == state for s in statuses.values()) for state in states}
    print(f"{count['finished']} of {len(configs)} grid points finished, {count['running']} running, "
          f"{count['queued']} queued, {len(todo)} submitted now")  # fmt: skip
    if count["unknown"]:
        unknown = next(s.line for s in statuses.values() if s.state == "unknown")
        print(f"{count['unknown']} grid points not submitted: their Slurm queue state is unknown ({unknown}); "
              "rerun when squeue answers", file=sys.stderr)  # fmt: skip
    finished = count["finished"]
    if not finished:
        return None
    return load_points(table, configs, results_dir)


def _slurm_timeout() -> float:
    """--slurm_timeout, or its default: the longest one sbatch or squeue call may take."""
    value = flags.FLAGS.slurm_timeout if "slurm_timeout" in flags.FLAGS else None
    return launch.SCHEDULER_TIMEOUT_S if value is None else value


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
    if F["slurm_timeout"].present and F.launcher != "slurm" and not (F.status or F.render_only):
        raise ConfigError("--slurm_timeout: applies to --launcher=slurm, --status and --render_only (they call squeue)")
    if F.slurm_timeout is not None and not 0 < F.slurm_timeout <= 3600:  # also refuses nan
        raise ConfigError(f"--slurm_timeout={F.slurm_timeout}: must be a number of seconds in (0, 3600]")
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


TRAINING_ONLY = ("steps", "batch_size", "learning_rate", "optimizer")  # flags the gradients table has no use for
# Config fields this tool has a flag for (cell and seq_len as --cells and --seq_lens): an error names those flags,
# and any other field as set by the preset
OWN_FIELDS = {"cell": "cells", "seq_len": "seq_lens"} | {
    name: name for name in (*TRAINING_ONLY, "task", "task_options", "num_seeds", "hidden_size")
}


def define_flags() -> None:
    flags.DEFINE_string(
        "table",
        None,
        "Which table: a task's (adding, copy, ...) or gradients (default: --task's, else adding).",
    )
    flags.DEFINE_string("preset", "quick", f"Grid and budget (benchmarks/presets.py): {', '.join(PRESETS)}.")
    flags.DEFINE_string(
        "results_dir",
        None,
        "Where grid points, tables and plots go, in <results_dir>/<table>/ (default runs/tables/<preset>); "
        "--status and --render_only also take a table folder itself.",
    )
    flags.DEFINE_bool(
        "overwrite_tracked",
        False,
        "Allow writing into a table folder that holds files git tracks (committed results); refused otherwise.",
    )
    flags.DEFINE_string(
        "reproduce",
        None,
        "A table folder (e.g. results/quick/adding): retrain its table from the command its header or sweep.json "
        "records into a work folder (--results_dir, default runs/reproduce/<folder>), at --steps and --num_seeds "
        "if given (at most the table's), and print ours beside its numbers.",
    )
    flags.DEFINE_string(
        "task",
        None,
        "A task (registered name, package.module:Class or path/to/file.py:Class): its table, or the gradients "
        "table's task.",
    )
    flags.DEFINE_string("task_options", None, "Override: the task's options, key=value,...")
    flags.DEFINE_string(
        "cells",
        None,
        "Override: comma-separated cells (registered names, package.module:Class or path/to/file.py:Class); "
        "name=cell gives a row its name (ugrnn=path/to/ugrnn.py:UGRNN).",
    )
    flags.DEFINE_string("seq_lens", None, "Override: comma-separated lengths T.")
    flags.DEFINE_integer("num_seeds", None, "Override: seeds per grid point (trained together, vmapped).")
    flags.DEFINE_integer("steps", None, "Override: training steps (adding and copy tables).")
    flags.DEFINE_integer("hidden_size", None, "Override: hidden size.")
    flags.DEFINE_integer("batch_size", None, "Override: batch size.")
    flags.DEFINE_string(
        "learning_rate", None, "Override: learning rate, or several (a,b,c): trained together, best on validation."
    )
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
    flags.DEFINE_float(
        "slurm_timeout",
        None,
        f"--launcher=slurm, --status: seconds any one sbatch or squeue call may take (default "
        f"{launch.SCHEDULER_TIMEOUT_S}); past it, sbatch is an error and squeue's answer unknown.",
    )
    flags.DEFINE_bool(
        "render_only",
        False,
        "Write the table from the points on disk (unfinished ones marked: running, not started, ...); train nothing.",
    )
    flags.DEFINE_bool(
        "plan",
        False,
        "Print each grid point's remaining steps and estimated wall time on a CPU and on a GPU, from the training "
        "times that committed and local results recorded (benchmarks/plan.py), and the totals; trains nothing.",
    )
    flags.DEFINE_bool(
        "status",
        False,
        "Print what each grid point is doing (finished, running with step, steps/s and ETA, interrupted, failed "
        "with its error, not started) and exit; trains nothing. Reads the flags the launch recorded, so "
        "--results_dir (or nothing, for the default folder) is enough.",
    )


FLAG_GROUPS = {
    "table": ("table", "preset", "results_dir", "status", "plan", "render_only", "overwrite_tracked", "reproduce"),
    "overrides of the preset": (
        *("task", "task_options", "cells", "seq_lens", "num_seeds", "steps", "hidden_size", "batch_size"),
        *("learning_rate", "optimizer"),
    ),
    "launcher": ("launcher", "workers", *LAUNCHER_FLAGS["slurm"]),
}

if __name__ == "__main__":
    define_flags()
    run(main, groups=FLAG_GROUPS)

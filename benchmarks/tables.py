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

This module is the command line: which sweep is `benchmarks/table_sweep.py`, what a launch records and
the committed-results guard `benchmarks/table_record.py`, training, reading and reporting the points
`benchmarks/table_run.py`.
"""

import dataclasses
import sys
from pathlib import Path
from typing import Any

from absl import flags

from benchmarks.presets import PRESETS
from benchmarks.reproduce import reproduce
from benchmarks.slurm import SCHEDULER_TIMEOUT_S, SchedulerError
from benchmarks.table_record import (
    RECORD,
    SWEEP_FLAGS,
    check_untracked,
    record_folder,
    recorded_flags,
    training_command,
)
from benchmarks.table_run import DEFAULT_WORKERS, LAUNCHER_FLAGS, check_launcher, print_plan, run_table, watch_command
from benchmarks.table_sweep import check_overrides, default_results_dir, table_name, table_sweep
from experiments.config import ConfigError
from experiments.flags import run
from experiments.schema import DamagedError

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int | None:
    try:
        return _main()
    except SchedulerError as e:  # sbatch or squeue failed or hung: its own words, one line, exit 1
        print(f"error: {e}", file=sys.stderr)
        return 1


def _main() -> int | None:
    F = FLAGS
    if F.reproduce is not None:
        return reproduce(F.reproduce, _values(), _given(), _flag_value, sys.argv[1:])
    if F.status or F.render_only:
        apply_record()
    if F.preset not in PRESETS:
        raise ConfigError(f"--preset={F.preset!r}: must be one of {', '.join(PRESETS)}")
    table = table_name(F.table, F.task)
    values = _values()
    check_overrides(table, values)
    sweep = table_sweep(F.preset, table, F.task, values)
    table_run = check_launcher(values, _given())
    if F.results_dir is not None and not F.results_dir.strip():
        raise ConfigError(f"--results_dir={F.results_dir!r}: must name a folder")
    results_dir = Path(F.results_dir) if F.results_dir is not None else default_results_dir(F.preset)
    if F.plan:
        return print_plan(table, sweep.points(), results_dir)
    if not F.status:
        check_untracked(results_dir / table, F.overwrite_tracked, "results_dir", F.results_dir)
    table_run = dataclasses.replace(
        table_run,
        command=training_command(sys.argv[1:], F.task, F.cells),
        watch=watch_command(sys.argv[1:]),
        record={name: F[name].value for name in SWEEP_FLAGS if F[name].present},
    )
    return run_table(table, sweep, results_dir, table_run)


def apply_record() -> None:
    """--status and --render_only: the sweep flags a launch recorded, for each flag not given now."""
    F = FLAGS
    table = table_name(F.table, F.task)
    folder = record_folder(F.results_dir, F.preset, table, F["table"].present or F["task"].present)
    if folder is None:
        return
    damaged = dict(before=f"--results_dir={folder}: ", after="; move it away and give the sweep's flags")
    for name, value in recorded_flags(folder, damaged).items():
        if not F[name].present:
            try:  # each value as its flag reads it: a hand-edited "steps": "abc" is damage, not a crash later
                F[name].value = None if value is None else F[name].parser.parse(value)
            except (TypeError, ValueError) as e:  # absl's parsers raise these
                why = f'"flags.{name}" is not a value of --{name}: {value!r} ({e})'
                raise DamagedError(folder / RECORD, why, **damaged) from None
    recorded = table_name(F.table, F.task)
    if folder.name != recorded:
        raise ConfigError(f"--results_dir={folder}: its sweep.json records table {recorded}, not {folder.name}")
    F.results_dir = str(folder.parent)


def _values() -> dict[str, Any]:
    """This tool's flags: name -> value (None when not set and without a default)."""
    return {name: FLAGS[name].value for name in _OWN_FLAGS}


def _given() -> set[str]:
    """The flags of this tool the command line set."""
    return {name for name in _OWN_FLAGS if FLAGS[name].present}


def _flag_value(name: str, text: str | None) -> Any:
    """The value flag `name` takes from `text` as written on a command line (None: its default)."""
    return FLAGS[name].default if text is None else FLAGS[name].parser.parse(text)


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
        f"{SCHEDULER_TIMEOUT_S}); past it, sbatch is an error and squeue's answer unknown.",
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
_OWN_FLAGS = (*(name for group in FLAG_GROUPS.values() for name in group), "slurm_timeout")

if __name__ == "__main__":
    define_flags()
    run(main, groups=FLAG_GROUPS)

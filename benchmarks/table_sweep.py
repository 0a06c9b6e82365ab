"""Which sweep a `benchmarks.tables` command trains: the table's name, its preset's `Sweep` with the overrides
the command gives, and `--cells`' row names.

A table named after a task, registered or `--task=package.module:Class`, that the preset does not list uses
the preset's `default` sweep with that task; `gradients` measures the diagnostics at initialisation only.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.presets import PRESETS
from experiments.config import ConfigError, parse_learning_rates
from experiments.grid import Sweep
from experiments.rules import check_integer, int_list, split_list
from tasks import TASKS

TRAINING_ONLY = ("steps", "batch_size", "learning_rate", "optimizer")  # flags the gradients table has no use for
# Config fields this tool has a flag for (cell and seq_len as --cells and --seq_lens): an error names those flags,
# and any other field as set by the preset
OWN_FIELDS = {"cell": "cells", "seq_len": "seq_lens"} | {
    name: name for name in (*TRAINING_ONLY, "task", "task_options", "num_seeds", "hidden_size")
}
# the overrides of a preset's sweep: flags that set one Config field for every point
FIELD_FLAGS = ("num_seeds", "steps", "hidden_size", "batch_size", "optimizer", "task_options")


def table_name(table: str | None, task: str | None) -> str:
    """The table to build: --table, else the task's (a registered name, or the class of an import path)."""
    if table is None:
        return "adding" if task is None else task.rpartition(":")[2]
    return table


def table_sweep(preset: str, table: str, task: str | None, overrides: Mapping[str, Any]) -> Sweep:
    """The preset's sweep of `table` (its `default` one, for a task it does not list), with `overrides`: flag
    name -> value (None: not given) of `FIELD_FLAGS`, learning_rate, cells and seq_lens."""
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
    fields = {k: overrides[k] for k in FIELD_FLAGS if overrides.get(k) is not None}
    if overrides.get("learning_rate") is not None:
        fields["learning_rate"] = parse_learning_rates(overrides["learning_rate"])
    sweep = sweep.with_fields(**fields)
    grid, names = dict(sweep.grid), dict(sweep.names)
    if overrides.get("cells") is not None:
        cells = cells_flag(overrides["cells"])
        grid["cell"] = tuple(cells)
        names.update({spec: name for spec, name in cells.items() if name != spec})
    if overrides.get("seq_lens") is not None:
        grid["seq_len"] = tuple(int_list(overrides["seq_lens"], "seq_lens"))
    return sweep.replace(grid=grid, names=names)


def cells_flag(value: str) -> dict[str, str]:
    """`--cells`: {cell spec: row name}; an entry is a cell (registered name, package.module:Class or
    path/to/file.py:Class) or `name=cell`, a short row name for it (e.g. `ugrnn=path/to/ugrnn.py:UGRNN`)."""
    cells: dict[str, str] = {}
    for item in split_list(value, "cells"):
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


def check_overrides(table: str, overrides: Mapping[str, Any]) -> None:
    """The overrides that cannot apply: a training flag on the gradients table, --steps out of range."""
    given = [name for name in TRAINING_ONLY if overrides.get(name) is not None]
    if table == "gradients" and given:  # it measures at initialisation: no training flag would change anything
        raise ConfigError(f"--{given[0]}: does not apply to --table=gradients (no training: it measures at init)")
    if overrides.get("steps") is not None:
        check_integer("steps", overrides["steps"], 1, 10**9)

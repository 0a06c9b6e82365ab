"""The grid of a sweep: a `Sweep` is data, the Config fields of every grid point, and a `PointKey` names one point.

A `Sweep` holds the Config fields every point shares (`settings`), the fields it sweeps (`grid`: always `cell` and
`seq_len`, any other field adds rows) and each cell's own settings (`per_cell`, its paper's optimizer or depth); in
the text fields `{seq_len}` stands for the point's T. Each grid point is a workdir `<out_dir>/<row>_T<T>/`
(`point_dir`). `experiments.sweep` trains the points, `experiments.sweep_report` reports them.
"""

import dataclasses
import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from experiments.config import Config
from experiments.report import fmt
from tasks import Task, make_task

MEASURES = ("train", "gradients")


TEMPLATED = ("cell_options", "task_options", "lr_multipliers")  # text fields where "{seq_len}" is the point's T


class PointKey(NamedTuple):
    """A grid point: its row (the cell, and any other swept field) and its column T."""

    row: str
    seq_len: int

    @property
    def dirname(self) -> str:
        """The point's folder: the row with ':' '.' ',' ' ' as '_', then `_T<T>` (e.g. `lstm_T100`)."""
        return re.sub(r"[:.,\s/]+", "_", self.row) + f"_T{self.seq_len}"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A table's grid, in Config fields.

    settings: fields every point shares, e.g. {"task": "adding", "hidden_size": 128, "steps": 2000}.
    grid: fields swept, each a tuple of values; `cell` (the rows) and `seq_len` (the columns) are
      required, any other (hidden_size, learning_rate, num_layers, ...) multiplies the rows.
    per_cell: {cell: fields} for that cell only (its paper's settings); a swept field wins over it.
      In the text fields (cell_options, task_options, lr_multipliers) `{seq_len}` stands for the
      point's T (e.g. IndRNN's bound |u| <= 2^(1/T): "bound_steps={seq_len}").
    measure: "train" (train and evaluate every point) or "gradients" (the gradient diagnostics at
      initialisation, no training).
    diagnostics: measure the gradient diagnostics at step 0 and at the last step (`diag_every = steps`)
      unless the settings say otherwise.
    names: {cell: row name} for cells given by import path or file (`--cells=ugrnn=path/to/ugrnn.py:UGRNN`);
      a cell without one is named by its spec.
    """

    settings: Mapping[str, Any]
    grid: Mapping[str, tuple]
    per_cell: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    measure: str = "train"
    diagnostics: bool = True
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if missing := [k for k in ("cell", "seq_len") if k not in self.grid]:
            raise ValueError(f"a Sweep's grid needs {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(Config)}
        fields = [*self.settings, *self.grid, *(k for c in self.per_cell.values() for k in c)]
        if unknown := sorted(set(fields) - names):
            raise ValueError(f"not Config fields: {', '.join(unknown)}")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}; got {self.measure!r}")

    @property
    def cells(self) -> tuple[str, ...]:
        return tuple(self.grid["cell"])

    @property
    def seq_lens(self) -> tuple[int, ...]:
        return tuple(self.grid["seq_len"])

    @property
    def task(self) -> str:
        return self.settings.get("task", Config.task)

    def replace(self, **changes: Any) -> "Sweep":
        return dataclasses.replace(self, **changes)

    def with_fields(self, **fields: Any) -> "Sweep":
        """The sweep with `fields` set for every point (a swept field: its axis becomes that one value)."""
        grid = {k: ((fields[k],) if k in fields else v) for k, v in self.grid.items()}
        settings = {**self.settings, **{k: v for k, v in fields.items() if k not in grid}}
        per_cell = {c: {k: v for k, v in s.items() if k not in fields} for c, s in self.per_cell.items()}
        return self.replace(settings=settings, grid=grid, per_cell=per_cell)

    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, swept values but seq_len) per row, in grid order: "lstm", or "lstm, hidden_size=64"."""
        axes = [k for k in self.grid if k != "seq_len"]
        rows = []
        for values in itertools.product(*(self.grid[k] for k in axes)):
            fields = dict(zip(axes, values, strict=True))
            extra = ", ".join(f"{k}={_text(v)}" for k, v in fields.items() if k != "cell")
            name = self.names.get(fields["cell"], fields["cell"])
            rows.append((name + (f", {extra}" if extra else ""), fields))
        return rows

    def points(self) -> dict[PointKey, Config]:
        """Every grid point's Config, row by row."""
        return {
            PointKey(label, T): self.point_config({**fields, "seq_len": T})
            for label, fields in self.rows()
            for T in self.seq_lens
        }

    def point_config(self, swept: dict[str, Any]) -> Config:
        """The Config of one point: settings, then the cell's own, then the swept values. Unless set:
        checkpoints every 10 logging steps and, with `diagnostics`, gradient diagnostics at the first
        and last step; a gradients sweep (no training) takes 1 step."""
        fields = {**self.settings, **self.per_cell.get(swept["cell"], {}), **swept}
        for k in TEMPLATED:
            if isinstance(fields.get(k), str):
                fields[k] = fields[k].replace("{seq_len}", str(fields["seq_len"]))
        if self.measure == "gradients":
            fields.setdefault("steps", 1)
            fields.setdefault("eval_every", 1)
        steps = max(fields.get("steps", Config.steps), 1)
        fields["steps"] = steps
        fields["eval_every"] = min(fields.get("eval_every", Config.eval_every), steps)
        fields.setdefault("checkpoint_every", fields["eval_every"] * 10)
        if self.diagnostics:
            fields.setdefault("diag_every", steps)
        return Config(**fields)

    def describe(self) -> str:
        """The shared settings (the main ones, and any other that differs from Config's default) and each
        cell's own, in one line."""
        main = ("hidden_size", "num_layers", "batch_size", "steps", "optimizer", "learning_rate", "num_seeds")
        default = Config()
        shown = {
            k: v
            for k, v in self.settings.items()
            if k not in ("task", "tensorboard", *self.grid) and (k in main or v != getattr(default, k))
        }
        text = ", ".join(f"{k} {_text(v)}" for k, v in shown.items())
        own = [
            f"{c}: " + ", ".join(f"{k} {_text(v)}" for k, v in s.items())
            for c, s in self.per_cell.items()
            if c in self.cells
        ]
        return text + (f". Per cell: {'; '.join(own)}" if own else "")


def _text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(_text(v) for v in value)
    return fmt(value) if isinstance(value, float) else str(value)


def task_of(config: Config) -> Task:
    return make_task(config.task, config.seq_len, config.task_options)


def point_dir(out_dir: Path, key: PointKey) -> Path:
    return Path(out_dir) / key.dirname

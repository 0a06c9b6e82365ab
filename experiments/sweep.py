"""Sweeps: a grid of Configs trained (or measured) point by point, and the table that reports it.

A `Sweep` is data: the Config fields every point shares (`settings`), the fields it sweeps (`grid`:
always `cell` and `seq_len`, any other field adds rows) and each cell's own settings (`per_cell`,
its paper's optimizer or depth). Each grid point is a workdir `<out_dir>/<row>_T<T>/`: a finished
one is skipped, an unfinished one resumes, so a sweep killed midway loses nothing.

The report renders from what the task declares (`tasks.base.Task`: `headline`, `table_metrics`,
`baseline_formula`, the solved rule), so a new task, a user's included, needs no edit here. A
run that sweeps learning rates in one program (`--learning_rate=a,b,c`) is reported at its best
rate, chosen on the validation split, with the rate shown. `benchmarks.tables` (presets,
launchers) and `experiments.compare` (one length) are this module with a command line.
"""

import contextlib
import csv
import dataclasses
import io as _io
import itertools
import json
import math
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import numpy as np

from experiments import formats, io, schema
from experiments.config import Config, ConfigError, check_workdir
from experiments.lock import WorkdirLockedError, workdir_lock
from experiments.report import fmt, markdown_table, mean_std
from experiments.validation import validate_cells
from plugins import SignalExit
from tasks import Task, make_task

MEASURES = ("train", "gradients")
ERROR_FILE = "error.txt"  # a point's error, first line then traceback (for --status)
PUBLISHED = Path(__file__).resolve().parent.parent / "results" / "published.csv"


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


# ---------------------------------------------------------------- running points


def check_points(
    points: dict[PointKey, Config],
    out_dir: str | Path,
    measure: str,
    read_only: bool = False,
    flag: str = "results_dir",
    own_flags: Mapping[str, str] | None = None,
) -> Path:
    """Every point before the first one trains: its config (an error names --cells or --seq_lens), its
    folder, and a run already there with other settings (refused, as `experiments.train` would). Returns
    `out_dir` (the --`flag`), created once every point is valid; `read_only` (--status) creates and refuses nothing.

    Errors name the tool's flags: --`flag` for the folder, and a Config field by its flag when `own_flags`
    ({field: the tool's flag for it}; None: every field is a flag of its name) has one, else as the sweep's
    setting."""
    cells = list(dict.fromkeys(c.cell for c in points.values()))
    for key, config in points.items():
        try:
            validate_cells(config, [config.cell], listed=cells, memory=not read_only)
        except ConfigError as e:  # name a flag the sweep's tools have: --seq_lens, not --seq_len or --diag_every
            if e.field in ("seq_len", "diag_every") and e.shown is not None and e.shown.isdigit():
                raise e.relabel(f"--seq_lens (T={key.seq_len})") from None
            raise
    if len({k.dirname for k in points}) < len(points):
        raise ConfigError(f"--cells: two rows share a folder name (':' '.' ',' become '_' in {out_dir})")
    if read_only:
        if not str(out_dir).strip() or Path(out_dir).is_file():
            raise ConfigError(f"--{flag}={str(out_dir)!r}: must name a folder")
        return Path(out_dir)
    from experiments.resume import check_layout, check_resumable

    out_dir = check_workdir(out_dir, flag)
    for key, config in points.items():
        workdir = point_dir(out_dir, key)
        if (workdir.exists() or workdir.is_symlink()) and not workdir.is_dir():
            raise ConfigError(f"--{flag}={out_dir}: {workdir} is a file where a grid point's folder goes; move it away")
        if measure == "gradients":
            check_layout(config, workdir, flag=flag, gradients=True)
        else:
            check_resumable(config, workdir, flag=flag, field_name=_field_namer(own_flags))
    return out_dir


def _field_namer(own_flags: Mapping[str, str] | None) -> Callable[[str], str]:
    """How an error names a Config field in a sweep: by the tool's flag for it (--steps, --cells), else as a
    setting of the sweep (`eval_every (set by the sweep, not a flag)`)."""

    def name(field: str) -> str:
        if own_flags is None or field in own_flags:
            return f"--{field if own_flags is None else own_flags[field]}"
        return f"{field} (set by the sweep, not a flag)"

    return name


@contextlib.contextmanager
def exit_on_signal(doing: str) -> Iterator[None]:
    """SIGTERM/SIGINT while `doing` (checking or reading points, before a sweep installs its own stop): one line on
    stderr, exit code 128 + signal. What was being written is intact (every write is atomic)."""

    def stop(signum: int, frame: Any) -> NoReturn:
        signal.signal(signum, signal.SIG_IGN)  # a second one while exiting changes nothing
        print(f"error: {signal.Signals(signum).name} received while {doing}; rerun the same command", file=sys.stderr)
        raise SignalExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_point(measure: str, config: Config, workdir: Path) -> dict[str, Any]:
    """Train (or measure, for "gradients") one grid point unless it already finished.

    A point another process holds (`experiments.lock`) is skipped, saying so: it comes back as
    {"busy": message} and the table marks it. A point stopped by a signal comes back with its
    results ("stopped_by" set) for the sweep to stop.
    """
    from experiments.trainer import train_and_evaluate

    if finished(measure, config, workdir):
        try:
            point = load_point(measure, workdir, task_of(config))
        except schema.DamagedError as e:
            print(f"  {workdir.name}: finished earlier, skipped: damaged: {e.short}", flush=True)
            return {"busy": f"damaged: {e.short}"}
        print(f"  {workdir.name}: finished earlier, skipped", flush=True)
        return point
    t0, stopped_by, trained = time.perf_counter(), None, None
    try:
        if measure == "gradients":
            _measure_gradients(config, workdir)
        else:
            results = train_and_evaluate(config, workdir)
            stopped_by, trained = results["stopped_by"], results["session_steps"]
    except WorkdirLockedError as e:
        pid = e.pid or "?"
        print(f"  {workdir.name}: skipped: {workdir} is being trained by another process (pid {pid})", flush=True)
        return {"busy": f"being trained by another process (pid {pid})"}
    if trained == 0 and not stopped_by:  # another process finished it between the check above and the lock
        print(f"  {workdir.name}: finished by another process meanwhile, skipped", flush=True)
        return load_point(measure, workdir, task_of(config))
    print(f"  {workdir.name}: {time.perf_counter() - t0:.0f}s", flush=True)
    return {**load_point(measure, workdir, task_of(config)), "stopped_by": stopped_by}


def _measure_gradients(config: Config, workdir: Path) -> None:
    from experiments.diagnostics import TrainingRecorder
    from experiments.experiment import Experiment

    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir, "results_dir"):
        exp = Experiment(config)
        params = exp.compiled_init()(*exp.member_inputs()).params
        io.write_json(workdir / "config.json", formats.stamp(config.to_dict()))
        TrainingRecorder(exp, workdir, jacobian_points_count=8)(0, params)


def finished(measure: str, config: Config, workdir: Path) -> bool:
    """Whether `workdir` holds this config's finished point (a damaged file means unfinished: `load_point`
    and `experiments.resume.check_resumable` say what is wrong with it)."""
    done = workdir / ("diagnostics.jsonl" if measure == "gradients" else "results.json")
    saved = read_dict(workdir / "config.json")
    if saved is None or not done.is_file() or _config_of(saved) != config:
        return False
    if measure == "gradients":
        return True
    try:
        return schema.read_results(done)["steps_done"] >= config.steps
    except (OSError, schema.DamagedError):
        return False


def _config_of(saved: dict) -> Config | None:
    """The Config a config.json holds; None when it does not hold one (a field of the wrong type)."""
    try:
        return Config.from_dict(schema.check_config(saved))
    except (TypeError, ValueError):
        return None


def read_dict(path: Path) -> dict | None:
    """A JSON object from `path`; None if it is missing, damaged or not an object (or not a regular file)."""
    try:
        value = json.loads(schema.read_text(path))
    except (OSError, ValueError, RecursionError):  # schema.DamagedError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def load_point(measure: str, workdir: Path, task: Task | None = None) -> dict[str, Any]:
    """A point's files, checked (`experiments.schema`; `task`: the metrics its results must hold, from the
    sweep's own config): its results and metrics records (trained points) and its gradient diagnostics at
    initialisation (step 0) and at the last step recorded after it. `schema.DamagedError` if a file is damaged.

    Diagnostics recorded from a later step only (a run resumed with --diag_every turned on) have no "init"."""
    diag = schema.read_records(workdir / "diagnostics.jsonl", schema.check_diagnostics_record)
    last = max((r["step"] for r in diag), default=0)
    point = {
        "diag_init": [r for r in diag if r["step"] == 0],
        "diag_end": [r for r in diag if r["step"] == last and last > 0],
    }
    if measure != "gradients":
        metrics = (task.headline, *task.table_metrics) if task else ()
        point["results"] = schema.read_results(workdir / "results.json", metrics)
        point["metrics"] = schema.read_records(
            workdir / "metrics.jsonl", lambda r: schema.check_metrics_record(r, metrics[:1])
        )
        if not point["metrics"]:
            raise schema.DamagedError(workdir / "metrics.jsonl", "no records")
    return point


def run_inline(measure: str, points: dict[PointKey, Config], out_dir: Path, what: str) -> dict[PointKey, dict]:
    """Every point in turn, in this process. SIGTERM/SIGINT stop the whole sweep, whether they arrive during a
    point (which saves its checkpoint) or between points: one line on stderr, exit code 128+signal, and no
    table is written, so a part-trained point is never published. The same command resumes."""
    from experiments.trainer import StopSignal

    loaded = {}
    with StopSignal() as stop:
        for key, config in points.items():
            if stop.received is None:
                workdir = point_dir(out_dir, key)
                try:
                    loaded[key] = run_point(measure, config, workdir)
                except Exception as e:  # for --status; the traceback goes on as before
                    record_error(workdir, e)
                    raise
                if loaded[key].get("stopped_by"):
                    stop.received = signal.Signals[loaded[key]["stopped_by"]].value
            if stop.received is not None:
                done = sum(not p.get("stopped_by") and "busy" not in p for p in loaded.values())
                exit_stopped(stop.received, "the sweep stopped", done, len(points), what)
    return loaded


def record_error(workdir: Path, error: BaseException) -> None:
    """`error.txt` in the workdir: the error in one line, then the traceback (for --status)."""
    first = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {first}\n\n" + "".join(traceback.format_exception(error))
    with contextlib.suppress(OSError):  # a full disk: the job's log still has it
        io.atomic_write(workdir / ERROR_FILE, lambda f: f.write(text))


def exit_stopped(signum: int, what: str, finished: int, total: int, table: str) -> NoReturn:
    """One line saying a sweep stopped on a signal and how to resume it; exit 128 + signal."""
    print(
        f"error: {signal.Signals(signum).name} received: {what} with {finished} of {total} grid points done; "
        f"{table}.md was not written; rerun the same command to resume",
        file=sys.stderr,
    )
    sys.exit(128 + signum)


# ---------------------------------------------------------------- what a point shows


def best_members(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The seeds a table reports: all of them, or those of the best learning rate of a rate sweep."""
    seeds, best = results["seeds"], results.get("best_learning_rate")
    if len(results.get("learning_rates", [])) > 1 and best is not None:
        return [s for s in seeds if s.get("learning_rate") == best]
    return seeds


def metric_entry(results: dict[str, Any], task: Task) -> str:
    """'mean ± std' of the task's headline metric, its table metrics, the solved fraction (and median step to
    solve), divergences, and the learning rate chosen on the validation split when the run swept several.

    `task` comes from the sweep's own config, never from the names in `results` (reading results runs no code)."""
    seeds = best_members(results)
    parts = [mean_std([s["final"][task.headline] for s in seeds])]
    parts += [f"{_short(k)} {mean_std([s['final'][k] for s in seeds])}" for k in task.table_metrics]
    solved = [s["solved_at_step"] for s in seeds if s["solved"] and s["solved_at_step"] is not None]
    parts.append(f"solved {len(solved)}/{len(seeds)}" + (f" @ {int(np.median(solved))}" if solved else ""))
    diverged = [s["diverged_at_step"] for s in seeds if s["diverged_at_step"] is not None]
    if diverged:
        parts.append(f"**{len(diverged)} diverged** (step {min(diverged)})")
    if len(rates := results.get("learning_rates", [])) > 1:
        parts.append(f"best lr {fmt(results['best_learning_rate'])} of {', '.join(fmt(r) for r in rates)}")
    return "<br>".join(parts)


def _short(key: str) -> str:
    return key.replace("_accuracy", " acc").replace("recall acc", "recall")


def point_entry(point: dict[str, Any], task: Task, first_line: bool = False) -> str:
    """A trained point's `metric_entry`, marked when the point is not finished: another process is
    training it, it stopped before its last step (never shown as if it had finished), or — a point with
    nothing to show, {"busy": why} — it is running, failed or has not started."""
    if "busy" in point:
        return f"- ({point['busy']})"
    results = point["results"]
    entry = metric_entry(results, task)
    entry = entry.split("<br>")[0] if first_line else entry
    steps, done = results["config"]["steps"], results["steps_done"]
    if done < steps and not results.get("finished"):
        entry = f"**part-trained: {done}/{steps} steps**<br>{entry}"
    return entry


def _grad_entry(diag: list[dict], point: dict | None = None) -> str:
    """The diagnostics records of one phase of a point; those of the end phase name their step when it is not
    the point's last (--diag_every that does not divide --steps, or changed on resume)."""
    if not diag:
        return "-"
    decay = mean_std([r["carry"]["decay_rate"] for r in diag], 2)
    horizon = mean_std([r["carry"]["horizon"] for r in diag], 2)
    step, done = diag[0]["step"], (point or {}).get("results", {}).get("steps_done")
    at = f" (at step {step})" if step and done is not None and done != step else ""
    return f"{decay} dec/step, horizon {horizon}{at}"


# ---------------------------------------------------------------- the report


def published_rows(task: str) -> list[dict[str, str]]:
    with open(PUBLISHED, newline="") as f:
        return [r for r in csv.DictReader(f) if r["task"] == task]


def matches(row: dict[str, str], cell: str, seq_len: int) -> bool:
    low, high = int(row["seq_len_min"]), int(row["seq_len_max"] or 10**9)
    return row["cell"] == cell and low <= seq_len <= high


def _span(low: str, high: str) -> str:
    if not high:
        return f"≥{low}"
    return low if low == high else (f"≤{high}" if low == "1" else f"{low}–{high}")


def headline_label(task: Task) -> str:
    """What the table's first line per point is: e.g. "CE / baseline (10 ln 8 / (T + 20))", "MSE (baseline 1/6)"."""
    formula = task.baseline_formula or fmt(task.baseline)
    if task.headline == "ratio":
        return f"{task.metric_name} / memoryless baseline ({formula})"
    return f"{task.metric_name} (memoryless baseline {formula} = {fmt(task.baseline)})"


def render(
    table: str, sweep: Sweep, configs: dict[PointKey, Config], points: dict[PointKey, dict], command: str, wall: float
) -> str:
    """The Markdown report of one sweep: final metrics, gradient decay, the published figures beside ours."""
    import jax

    from experiments.results import package_versions

    keys = list(points)
    rows = list(dict.fromkeys(k.row for k in keys))
    lens = list(dict.fromkeys(k.seq_len for k in keys))
    first = configs[keys[0]]
    task = task_of(first)
    cols = [f"T={T}" for T in lens]
    if sweep.measure == "gradients":
        settings = f"task {sweep.task}, diagnostics batch 32, at initialisation; {sweep.describe()}"
    else:
        held_out = jax.eval_shape(lambda: task.held_out("test", first.eval_size))[0].shape[0]
        settings = f"{sweep.describe()}; every seed evaluated on {held_out} held-out test sequences"
    out = [
        f"# `{table}` table",
        "",
        f"Command: `{command}`  ",
        *_provenance(points, wall, package_versions()),
        f"Settings: {settings}.",
        "",
    ]
    if sweep.measure != "gradients":
        extra = "".join(f", then {k}" for k in task.table_metrics)
        out += [
            f"## Final held-out {headline_label(task)}{extra}, mean ± std over seeds",
            "",
            f"Task `{sweep.task}`{_options(first)}; solved: {task.solved_rule}.",
            "",
        ]
        table_rows = [
            [r, *(point_entry(points[PointKey(r, T)], task_of(configs[PointKey(r, T)])) for T in lens)] for r in rows
        ]
        out += [markdown_table(["cell", *cols], table_rows), ""]
        out += _memoryless_line(first, lens)
    if any(p.get("diag_init") or p.get("diag_end") for p in points.values()):
        out += ["## Gradient decay of ||dL/dh_t|| (fitted decades per step; horizon in steps, 1% of max)", ""]
        phases = [("init", "diag_init")] + ([("end", "diag_end")] if sweep.measure != "gradients" else [])
        grad_rows = [
            [r, phase, *(_grad_entry(_reported(p, key), p) for p in (points[PointKey(r, T)] for T in lens))]
            for r in rows
            for phase, key in phases
        ]
        out += [markdown_table(["cell", "when", *cols], grad_rows), ""]
    cells = {k: configs[k].cell for k in keys}
    published = [r for r in published_rows(sweep.task) if r["cell"] in cells.values()]
    published = published if sweep.measure != "gradients" else []
    if published:
        out += ["## Published, beside ours", ""]
        pub_rows = []
        for r in published:
            ours = [
                f"T={k.seq_len}: " + point_entry(points[k], task_of(configs[k]), first_line=True).replace("<br>", " ")
                for k in keys
                if matches(r, cells[k], k.seq_len)
            ]
            span = _span(r["seq_len_min"], r["seq_len_max"])
            result = " ".join(x for x in (r["metric"] + " " + r["value"] if r["value"] else "", r["outcome"]) if x)
            pub_rows.append(
                [f"{r['source']}, {r['where']}", r["cell"], span, result, r["setting"], "; ".join(ours) or "-"]
            )
        out += [markdown_table(["source", "cell", "T", "published", "their setting", "ours"], pub_rows), ""]
    return "\n".join(out)


def _memoryless_line(config: Config, lens: list[int]) -> list[str]:
    """What the task's memoryless predictor scores on the held-out test set the table reports, per T: a finite
    set's own baseline differs from the analytic one (adding, 500 sequences at T=1000: 0.1585, not 1/6), so a
    ratio near 1 there is no progress. [] for a task without a memoryless predictor (`Task.memoryless_outputs`)."""
    import jax.numpy as jnp

    scores = []
    for T in lens:
        task = task_of(config.replace(seq_len=T))
        inputs, targets = task.held_out("test", config.eval_size)
        outputs = task.memoryless_outputs(inputs)
        if outputs is None:
            return []
        scores.append(f"T={T} {float(jnp.mean(task.per_example_loss(outputs, targets))):.4g}")
    return [f"The memoryless predictor on this held-out test set: {', '.join(scores)} ({task.metric_name}).", ""]


def _of_reported(results: dict[str, Any], records: list[dict]) -> list[dict]:
    """The records (metrics or diagnostics, one per member) of the members the table reports (`best_members`)."""
    members = {(s["seed"], s.get("learning_rate")) for s in best_members(results)}
    return [r for r in records if (r["seed"], r.get("learning_rate")) in members]


def _reported(point: dict, phase: str) -> list[dict]:
    """The diagnostics records of `phase` for the members the table reports."""
    records = point.get(phase, [])
    return (_of_reported(point["results"], records) or records) if "results" in point else records


def _options(config: Config) -> str:
    return f" ({config.task_options})" if config.task_options else ""


def _provenance(points: dict[PointKey, dict], wall: float, versions: dict[str, str]) -> list[str]:
    """The header's "Wall time:" and "Versions:" lines, from each point's results.json: a table may hold points
    trained on several machines (say the long ones on a lent GPU), each then named with its points. Without
    any results: this process's machine, `wall` and `versions`."""
    import jax

    machines: dict[str, dict[str, Any]] = {}
    for key, p in points.items():
        if "results" not in p:
            continue
        r = p["results"]
        ex = r.get("execution", {})
        whole = {"wall_time_s": r["wall_time_s"], "versions": r.get("versions", {}), **ex}
        for session in r.get("sessions") or [whole]:  # results before the sessions list: the last machine's
            name = _machine_name(session.get("backend"), session.get("device_kind"), session.get("cpu_count"))
            m = machines.setdefault(name, {"wall": 0.0, "at": [], "versions": []})
            m["wall"] += session.get("wall_time_s") or 0.0
            if (at := f"{key.row} T={key.seq_len}") not in m["at"]:
                m["at"].append(at)
            if (v := _versions(session.get("versions") or {}, order=list(versions))) not in m["versions"]:
                m["versions"].append(v)
    if not machines:
        here = f"{os.cpu_count()} CPU cores ({jax.devices()[0].platform})"
        return [f"Wall time: {wall / 60:.1f} min on {here}  ", f"Versions: {_versions(versions)}  "]
    if len(machines) == 1:
        ((name, m),) = machines.items()
        return [f"Wall time: {m['wall'] / 60:.1f} min on {name}  ", f"Versions: {' / '.join(m['versions'])}  "]
    total = sum(m["wall"] for m in machines.values())
    each = "; ".join(f"{m['wall'] / 60:.1f} min on {name} for {', '.join(m['at'])}" for name, m in machines.items())
    return [
        f"Wall time: {total / 60:.1f} min in all: {each}  ",
        "Versions: " + "; ".join(f"{name}: {' / '.join(m['versions'])}" for name, m in machines.items()) + "  ",
    ]


def _machine_name(backend: str | None, kind: str | None, cores: int | None) -> str:
    if backend is None:
        return "a machine not recorded"
    if backend == "cpu":
        return f"{cores} CPU cores (cpu)" if cores else "cpu"
    return backend if kind in (backend, None) else f"{backend} ({kind})"


def _versions(versions: dict[str, str], order: list[str] | None = None) -> str:
    """ "python 3.11.7, jax 0.10.2, ...": the packages in `order` first, in that order (results.json sorts them)."""
    order = order or []

    def rank(name: str) -> int:
        return order.index(name) if name in order else len(order)

    return ", ".join(f"{k} {versions[k]}" for k in sorted(versions, key=rank))


def write_csv(path: Path, table: str, points: dict[PointKey, dict]) -> None:
    """One row per seed (and learning rate) of every point that has something to show."""
    rows = []
    for key, p in points.items():
        if "busy" in p:  # another process is training it: no row
            continue
        diag = {(r["seed"], r.get("learning_rate"), ph): r for ph in ("diag_init", "diag_end") for r in p[ph]}
        seeds = (
            p["results"]["seeds"]
            if "results" in p
            else [{"seed": r["seed"], "learning_rate": r.get("learning_rate")} for r in p["diag_init"]]
        )
        for s in seeds:
            row = {"table": table, "row": key.row, "seq_len": key.seq_len, "seed": s["seed"]}
            if "learning_rate" in s:
                row["learning_rate"] = s["learning_rate"]
            if "results" in p:
                row["steps_done"] = p["results"]["steps_done"]
            row.update({f"final_{k}": v for k, v in s.get("final", {}).items()})
            row.update({f"valid_{k}": v for k, v in s.get("final_valid", {}).items()})
            row.update({k: s.get(k) for k in ("solved", "solved_at_step", "diverged_at_step") if k in s})
            for ph in ("diag_init", "diag_end"):
                found = diag.get((s["seed"], s.get("learning_rate"), ph)) or diag.get((s["seed"], None, ph))
                if found:
                    carry = found["carry"]
                    row.update({f"{ph}_decay_rate": carry["decay_rate"], f"{ph}_horizon": carry["horizon"]})
            rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    io.atomic_write(path, lambda f: f.write(buf.getvalue()))


def write_plots(
    out_dir: Path, table: str, sweep: Sweep, configs: dict[PointKey, Config], points: dict[PointKey, dict]
) -> list[Path]:
    """Learning curves of the headline metric per T, and (for several T) the final metric against T."""
    from experiments.plots import plot_learning_curves, plot_metric_vs_length  # matplotlib: not for a bad flag

    if sweep.measure == "gradients":
        return []
    rows = list(dict.fromkeys(k.row for k in points))
    lens = list(dict.fromkeys(k.seq_len for k in points))
    paths = []
    for T in lens:
        trained = [r for r in rows if "busy" not in points[PointKey(r, T)]]  # a busy point has no curve yet
        if not trained:
            continue
        task = task_of(configs[PointKey(trained[0], T)])
        curves = {r: _curve(points[PointKey(r, T)], task.headline) for r in trained}
        baseline = 1.0 if task.headline == "ratio" else task.baseline
        name = f"{task.metric_name} / baseline" if task.headline == "ratio" else task.metric_name
        path = out_dir / f"{table}_curves_T{T}.png"
        plot_learning_curves(curves, baseline, name, path, f"{table}, T={T}")
        paths.append(path)
    if len(lens) < 2 or not any("results" in p for p in points.values()):
        return paths
    task = task_of(configs[next(iter(points))])

    def final(point: dict) -> list[float]:
        return [s["final"][task.headline] for s in best_members(point["results"])] if "results" in point else [math.nan]

    finals = {r: [final(points[PointKey(r, T)]) for T in lens] for r in rows}
    path = out_dir / f"{table}_final_vs_T.png"
    baseline = 1.0 if task.headline == "ratio" else task.baseline
    name = f"final {task.metric_name}" + (" / baseline" if task.headline == "ratio" else "")
    plot_metric_vs_length(lens, finals, baseline, name, path, f"{table}: final metric against length")
    return [*paths, path]


def _curve(point: dict, metric: str) -> tuple[list[int], np.ndarray]:
    """(steps, values (steps, seeds)) of the held-out `metric`, for the seeds the table reports."""
    records = _of_reported(point["results"], point["metrics"])
    steps = sorted({r["step"] for r in records})
    return steps, np.array([[r[f"eval_{metric}"] for r in records if r["step"] == s] for s in steps])


def write_report(
    out_dir: Path,
    table: str,
    sweep: Sweep,
    points: dict[PointKey, dict],
    command: str,
    elapsed: float,
    written: list[Path] | None = None,
) -> str:
    """`<table>.md`, `<table>.csv` and the plots in `out_dir`, from `points`; returns the report and adds the
    paths of the files it wrote to `written`."""
    wall = sum(p["results"]["wall_time_s"] for p in points.values() if "results" in p)
    configs = sweep.points()
    report = render(table, sweep, configs, points, command, wall or elapsed)
    plots = write_plots(out_dir, table, sweep, configs, points)
    report += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    io.atomic_write(out_dir / f"{table}.md", lambda f: f.write(report))
    write_csv(out_dir / f"{table}.csv", table, points)
    if written is not None:
        written += [out_dir / f"{table}.md", out_dir / f"{table}.csv", *plots]
    return report

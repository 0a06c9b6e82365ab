"""Reproduce a table: retrain it from the command it records, into a work folder, and put ours beside it.

    python -m benchmarks.tables --reproduce=results/quick/adding                       # the table's own budget
    python -m benchmarks.tables --reproduce=results/quick/adding --steps=300 --num_seeds=1 --cells=gru

A table folder records how it was trained: `sweep.json` (written by every launch) or, for a table
that predates it, the "Command:" line of `<table>.md` (a `--render_only` command there is the
training command without that flag). Its sweep flags (preset, table, task, cells, lengths, budget)
rebuild the sweep; each committed point's `config.json` must agree with it (else the header is
stale: one line saying which setting differs). The reproduction trains into `--results_dir`
(default `runs/reproduce/<folder's parent>/<table>/`), at `--steps` and `--num_seeds` if given (at
most the table's: the same seeds `seed..seed+n-1`, the first `steps` of the same schedule), for
the `--cells` and `--seq_lens` given (a subset of the table's), and writes
`<table>_vs_committed.md`: per point, the table's final numbers, the table's own at the step and
seeds we trained (from its metrics.jsonl), and ours.
"""

import dataclasses
import shlex
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.table_record import RECORD, SWEEP_FLAGS, check_untracked
from benchmarks.table_run import LAUNCHER_FLAGS, check_launcher, print_written, run_table, watch_command
from benchmarks.table_sweep import cells_flag, table_name, table_sweep
from experiments import io
from experiments.config import Config, ConfigError
from experiments.grid import Sweep, point_dir, task_of
from experiments.report import markdown_table, mean_std
from experiments.rules import int_list
from experiments.sweep import load_point, read_dict
from experiments.sweep_report import best_members, grad_entry, point_entry
from tasks import Task

# flags a reproduction takes from the user; any other sweep flag comes from the table
ALLOWED = ("steps", "num_seeds", "cells", "seq_lens", "results_dir", "overwrite_tracked", "launcher", "workers")
# Config fields a table's points may differ in from a rebuilt sweep without training anything else
IGNORED_FIELDS = ("checkpoint_every", "num_devices", "seed_chunk", "tensorboard")


def recorded_command(folder: Path) -> str:
    """The training command `folder` records: sweep.json's, else its `<table>.md` header's (without
    --render_only). ConfigError if it records none."""
    record = read_dict(folder / RECORD)
    if record and isinstance(record.get("command"), str):
        return record["command"]
    report = folder / f"{folder.name}.md"
    try:
        lines = report.read_text().splitlines()
    except OSError:
        lines = []
    found = [line for line in lines if line.startswith("Command: `") and "benchmarks.tables" in line]
    if not found:
        raise ConfigError(
            f"--reproduce={folder}: no {RECORD} and no table header with a benchmarks.tables command there; "
            "give a table folder (e.g. results/quick/adding)"
        )
    return found[0].removeprefix("Command: `").split("`")[0]


def parse_command(command: str, known: Collection[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(environment assignments, {flag: value}) of a recorded `[VAR=value ...] python -m benchmarks.tables
    --flag=value ...` command; a bare `--flag` is "true", `--noflag` "false" (`flag` among the `known` flags)."""
    words = shlex.split(command)
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    start = words.index("benchmarks.tables") + 1 if "benchmarks.tables" in words else len(words)
    given = {}
    for word in words[start:]:
        name, eq, value = word.lstrip("-").partition("=")
        if not eq:
            name, value = (name[2:], "false") if name.startswith("no") and name[2:] in known else (name, "true")
        given[name] = value
    return env, given


def reproduce(
    folder_flag: str,
    values: Mapping[str, Any],
    given: Collection[str],
    flag_value: Callable[[str, str | None], Any],
    argv: Sequence[str],
) -> int | None:
    """`--reproduce`: retrain the table in `folder_flag` at the budget given and print ours beside it.

    `values`: the command's flags (name -> value), `given`: those its command line set, `flag_value(name, text)`:
    the value flag `name` takes from `text` as written on a command line (None: its default), `argv`: the
    command's arguments."""
    folder = Path(folder_flag)
    if not folder_flag.strip() or not folder.is_dir():
        raise ConfigError(f"--reproduce={folder_flag!r}: must name a table folder (e.g. results/quick/adding)")
    for name in (*SWEEP_FLAGS, "status", "render_only"):
        if name in given and name not in (*ALLOWED, *LAUNCHER_FLAGS["slurm"]):
            raise ConfigError(
                f"--{name}: does not apply to --reproduce (the table's own settings are retrained); "
                f"it takes {', '.join('--' + a for a in ALLOWED[:4])} and where to write"
            )
    command = recorded_command(folder)
    try:
        env, recorded = parse_command(command, values)
    except ValueError as e:  # shlex: an unbalanced quote in a hand-edited record
        raise ConfigError(f"--reproduce={folder}: its recorded command does not parse ({e}): {command!r}") from None
    if "PYTHONPATH" in env:  # the plug-in it was trained with was imported through it
        sys.path[:0] = [p for p in env["PYTHONPATH"].split(":") if p and p not in sys.path]
    user = {name: values[name] for name in ("steps", "num_seeds", "cells", "seq_lens")}
    values = dict(values)
    for name in SWEEP_FLAGS:
        try:
            values[name] = flag_value(name, recorded.get(name))
        except (TypeError, ValueError) as e:  # absl's parsers raise these
            text = recorded.get(name)
            raise ConfigError(f"--reproduce={folder}: its recorded command has --{name}={text}: {e}") from None
    table = table_name(values["table"], values["task"])
    if table != folder.name:
        raise ConfigError(f"--reproduce={folder}: its command trains table {table}, not {folder.name}")
    full = table_sweep(values["preset"], table, values["task"], values)
    check_committed(folder, full)
    sweep = reproduction(full, user)
    run = check_launcher(values, given)
    record = {name: values[name] for name in SWEEP_FLAGS if name in given or name in recorded}  # as sweep.json
    run = dataclasses.replace(run, watch=watch_command(argv), record=record)
    given_dir = values["results_dir"]
    results_dir = Path(given_dir) if given_dir is not None else Path("runs/reproduce") / folder.parent.name
    check_untracked(results_dir / table, values["overwrite_tracked"], "results_dir", given_dir)
    this = "python -m benchmarks.tables " + " ".join(shlex.quote(a) for a in argv)
    print(f"reproducing {folder} (trained by: {command})", flush=True)
    written: list[Path] = []
    code = run_table(table, sweep, results_dir, run, command=this, written=written)
    if code:
        return code
    out = results_dir / table
    text = comparison(folder, out, table, full, sweep)
    io.atomic_write(out / f"{table}_vs_committed.md", lambda f: f.write(text))
    print(text)
    print_written([*written, out / f"{table}_vs_committed.md"])
    return None


def check_committed(folder: Path, sweep: Sweep) -> None:
    """Every point of the rebuilt sweep that the table folder holds has its settings (config.json)."""
    found = 0
    for key, config in sweep.points().items():
        saved = read_dict(point_dir(folder, key) / "config.json")
        if saved is None:
            continue
        found += 1
        committed = Config.from_dict(saved)
        diff = [k for k, v in config.to_dict().items() if k not in IGNORED_FIELDS and getattr(committed, k) != v]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--reproduce={folder}: its command does not give the settings its points trained with "
                f"({key.dirname}: {k} {getattr(committed, k)!r} there, {getattr(config, k)!r} from the command)"
            )
    if not found:
        raise ConfigError(f"--reproduce={folder}: holds none of the grid points its command trains")


def reproduction(full: Sweep, user: dict[str, Any]) -> Sweep:
    """The table's sweep at the user's budget and on the user's subset of its grid."""
    fields: dict[str, Any] = {}
    for name in ("steps", "num_seeds"):
        if user[name] is None:
            continue
        most = max(c.steps if name == "steps" else c.num_seeds for c in full.points().values())
        if not 1 <= user[name] <= most:
            raise ConfigError(f"--{name}={user[name]}: must be an integer in [1, {most}] (the table's)")
        fields[name] = user[name]
    sweep = full.with_fields(**fields) if fields else full
    grid = dict(sweep.grid)
    if user["cells"] is not None:
        cells = cells_flag(user["cells"])
        named = {full.names.get(c, c): c for c in full.cells}
        chosen = [named.get(name, spec) for spec, name in cells.items()]
        if unknown := [c for c in chosen if c not in full.cells]:
            rows = ", ".join(named)
            raise ConfigError(f"--cells={user['cells']}: {unknown[0]} is not a row of the table (its rows: {rows})")
        grid["cell"] = tuple(chosen)
    if user["seq_lens"] is not None:
        lens = int_list(user["seq_lens"], "seq_lens")
        if unknown := [T for T in lens if T not in full.seq_lens]:
            columns = ",".join(map(str, full.seq_lens))
            raise ConfigError(f"--seq_lens={user['seq_lens']}: T={unknown[0]} is not a column of the table ({columns})")
        grid["seq_len"] = tuple(lens)
    return sweep.replace(grid=grid)


def comparison(folder: Path, out: Path, table: str, full: Sweep, sweep: Sweep) -> str:
    """Markdown: per point, the table's final numbers, the table's own at our steps and seeds, and ours."""
    theirs_configs, ours_configs = full.points(), sweep.points()
    measure = sweep.measure
    rows = []
    for key, ours_config in ours_configs.items():
        theirs_config = theirs_configs[key]
        task = task_of(ours_config)
        theirs = _load(measure, point_dir(folder, key), task)
        ours = _load(measure, point_dir(out, key), task)
        if measure == "gradients":
            seeds = set(range(ours_config.seed, ours_config.seed + ours_config.num_seeds))
            same = [r for r in (theirs or {}).get("diag_init", []) if r["seed"] in seeds]
            theirs_all, ours_all = (theirs or {}).get("diag_init", []), (ours or {}).get("diag_init", [])
            rows.append([key.row, key.seq_len, grad_entry(theirs_all), grad_entry(same), grad_entry(ours_all)])
            continue
        budget = f" ({theirs_config.steps} steps, {theirs_config.num_seeds} seeds)"
        committed = point_entry(theirs, task, first_line=True) + budget if theirs else "- (not in the table folder)"
        same = _at_step(theirs, ours, ours_config) if theirs else "-"
        mine = point_entry(ours, task, first_line=True) if ours else "- (not trained)"
        if ours and "results" in ours:
            mine += f" ({ours['results']['steps_done']} steps, {ours_config.num_seeds} seeds)"
        rows.append([key.row, key.seq_len, committed, same, mine])
    if measure == "gradients":
        headers = ["cell", "T", "table", "table, our seeds", "ours"]
        what = "gradient decay at initialisation"
    else:
        task = task_of(next(iter(ours_configs.values())))
        headers = ["cell", "T", "table: final", "table: at our steps and seeds", "ours"]
        what = f"held-out {task.metric_name}" + (" / baseline" if task.headline == "ratio" else "")
    lines = [
        f"# `{table}`: reproduction beside {folder}",
        "",
        f"Table: {folder}/{table}.md; ours: {out}/{table}.md. Each entry: {what}, mean ± std over seeds.",
        "",
        markdown_table(headers, rows),
        "",
    ]
    return "\n".join(lines)


def _load(measure: str, workdir: Path, task: Task) -> dict | None:
    """The point's files (`load_point`), or None when it has none or they are damaged."""
    try:
        return load_point(measure, workdir, task)
    except (OSError, ValueError, KeyError):
        return None


def _at_step(theirs: dict, ours: dict | None, config: Config) -> str:
    """The table's own headline metric at the step our run ended and over our seeds (from its metrics.jsonl)."""
    results = theirs.get("results") or {}
    task = task_of(config)
    step = (ours or {}).get("results", {}).get("steps_done", config.steps)
    seeds = {s["seed"] for s in best_members(ours["results"])} if ours and "results" in ours else set()
    seeds = seeds or set(range(config.seed, config.seed + config.num_seeds))
    rates = {s.get("learning_rate") for s in best_members(results)} if results else set()
    values = [
        r[f"eval_{task.headline}"]
        for r in theirs.get("metrics", [])
        if r["step"] == step and r["seed"] in seeds and (not rates or r.get("learning_rate") in rates)
    ]
    if not values:
        return f"- (step {step} not logged)"
    return f"{mean_std(values)} (step {step}, {len(values)} seeds)"

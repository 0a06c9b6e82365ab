"""What a run's result files hold, checked whenever they are read back: results.json, a metrics.jsonl line
and a diagnostics.jsonl line. One schema for every reader (`--status`, `--render_only`, a resumed run).

A file written by a run always passes (`experiments.train` and `experiments.diagnostics` write exactly
this); one edited by hand, by another tool or by a careless collaborator may not, and is then damaged:
`DamagedError` says which file and why, in one line (`benchmarks.tables --status` prints it as
"damaged: <why>" and goes on with the other points). Reading checks types only: names in these files
(a task, a cell) are strings and are never imported.

    config.json    an object: each Config field present has Config's type (a learning rate: a number or a list).
    Each may hold "format_version" (an integer; `experiments.formats` reads older versions in).
    results.json   an object: "config" (an object with an integer "steps"), "steps_done" (integer >= 0),
                   "wall_time_s" (number), "seeds" (a non-empty list of members: "seed" integer, "final"
                   {metric: number or null}, "solved" bool, "solved_at_step" and "diverged_at_step" integer
                   or null, optional "learning_rate" number and "final_valid"); optional "finished" (bool),
                   "stopped_by" (string or null), "learning_rates" (numbers), "best_learning_rate",
                   "versions", "execution", "sessions" (objects).
    metrics line   an object: "step" (integer >= 0), "seed" (integer), optional "learning_rate" (number or
                   null); every other field a number, bool or null (`eval_<metric>` the test split).
    diagnostics    an object: "step", "seed" as above; "carry" an object whose "decay_rate" and "horizon"
    line           are numbers or null.

JSON numbers include NaN and Infinity (a diverged seed's metrics); a bool is not a number.
"""

import dataclasses
import json
import os
import stat
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from experiments import formats
from experiments.config import Config, ConfigError


class DamagedError(ConfigError):
    """A result file that does not hold what a run writes: `path`, and `why` in a few words."""

    def __init__(self, path: str | Path, why: str, before: str = "", after: str = "", message: str | None = None):
        self.path, self.why = Path(path), why
        super().__init__(message or f"{before}{path} is damaged ({why}){after}")

    @property
    def short(self) -> str:
        """ "<file name>: <why>", for a line that already names the point."""
        return f"{self.path.name}: {self.why}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _show(v: Any) -> str:
    plain = isinstance(v, str | int | float | bool | type(None)) or v in ([], {})
    text = json.dumps(v) if plain else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _need(ok: bool, field: str, what: str, value: Any) -> None:
    if not ok:
        raise ValueError(f'"{field}" must be {what}, not {_show(value)}')


def _field(obj: Mapping, name: str, check: Callable[[Any], bool], what: str, where: str = "", optional=False) -> Any:
    if name not in obj:
        if optional:
            return None
        raise ValueError(f'no "{where}{name}"')
    _need(check(obj[name]), where + name, what, obj[name])
    return obj[name]


def _number_or_null(v: Any) -> bool:
    return v is None or _is_number(v)


def _metrics_object(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _number_or_null(x) for k, x in v.items())


def results_problem(value: Any, metrics: Collection[str] = ()) -> str | None:
    """Why `value` is not a results.json (None when it is one); `metrics`: keys every member's "final" must hold."""
    try:
        check_results(value, metrics)
    except ValueError as e:
        return str(e)
    return None


def check_results(value: Any, metrics: Collection[str] = ()) -> dict[str, Any]:
    """`value` if it is a results.json (see the module doc), else ValueError saying why."""
    _object(value)
    config = _field(value, "config", lambda v: isinstance(v, dict), "an object")
    _field(config, "steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1", "config.")
    _field(value, "steps_done", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    _field(value, "wall_time_s", lambda v: _is_number(v) and v >= 0, "a number >= 0")
    _field(value, "finished", lambda v: isinstance(v, bool), "true or false", optional=True)
    _field(value, "stopped_by", lambda v: v is None or isinstance(v, str), "a string or null", optional=True)
    _field(value, "steps_per_s", _number_or_null, "a number or null", optional=True)
    _field(value, "resumed_from", _is_int, "an integer", optional=True)
    _field(value, formats.KEY, _is_int, "an integer", optional=True)
    _field(
        value,
        "learning_rates",
        lambda v: isinstance(v, list) and all(map(_is_number, v)),
        "a list of numbers",
        optional=True,
    )
    _field(value, "best_learning_rate", _number_or_null, "a number or null", optional=True)
    for name in ("versions", "execution"):
        _field(value, name, lambda v: isinstance(v, dict), "an object", optional=True)
    sessions = _field(value, "sessions", lambda v: isinstance(v, list), "a list", optional=True) or []
    for i, s in enumerate(sessions):
        _need(isinstance(s, dict), f"sessions[{i}]", "an object", s)
        _field(s, "wall_time_s", _number_or_null, "a number or null", f"sessions[{i}].", optional=True)
        _field(s, "versions", lambda v: isinstance(v, dict), "an object", f"sessions[{i}].", optional=True)
    seeds = _field(value, "seeds", lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list")
    for i, s in enumerate(seeds):
        where = f"seeds[{i}]."
        _need(isinstance(s, dict), f"seeds[{i}]", "an object", s)
        _field(s, "seed", _is_int, "an integer", where)
        _field(s, "learning_rate", _number_or_null, "a number", where, optional=True)
        final = _field(s, "final", _metrics_object, "an object of numbers", where)
        _field(s, "final_valid", _metrics_object, "an object of numbers", where, optional=True)
        _field(s, "solved", lambda v: isinstance(v, bool), "true or false", where)
        for name in ("solved_at_step", "diverged_at_step"):
            _field(s, name, lambda v: v is None or _is_int(v), "an integer or null", where)
        if missing := [m for m in metrics if m not in final]:
            raise ValueError(f'no "{where}final.{missing[0]}"')
    return value


def check_config(value: Any) -> dict[str, Any]:
    """`value` if it is a config.json: an object whose Config fields have the types Config gives them (unknown
    keys, from another version, are ignored; a missing field takes its default). ValueError saying why."""
    _object(value)
    for field in dataclasses.fields(Config):
        if field.name not in value:
            continue
        default = field.default
        if field.name == "learning_rate":
            ok, what = lambda v: _is_number(v) or isinstance(v, list) and all(map(_is_number, v)), "a number or a list"
        elif isinstance(default, bool):
            ok, what = lambda v: isinstance(v, bool), "true or false"
        elif isinstance(default, int):
            ok, what = _is_int, "an integer"
        elif isinstance(default, float):
            ok, what = _is_number, "a number"
        else:
            ok, what = lambda v: isinstance(v, str), "a string"
        _need(ok(value[field.name]), field.name, what, value[field.name])
    return value


def check_metrics_record(record: Any, metrics: Collection[str] = ()) -> dict[str, Any]:
    """`record` if it is a metrics.jsonl line (see the module doc; `metrics`: `eval_<m>` keys it must hold)."""
    _member(record)
    for key, v in record.items():
        if key not in ("step", "seed", "learning_rate"):
            _need(v is None or isinstance(v, int | float), key, "a number, true, false or null", v)
    if missing := [m for m in metrics if f"eval_{m}" not in record]:
        raise ValueError(f'no "eval_{missing[0]}"')
    return record


def check_diagnostics_record(record: Any) -> dict[str, Any]:
    """`record` if it is a diagnostics.jsonl line (see the module doc)."""
    _member(record)
    carry = _field(record, "carry", lambda v: isinstance(v, dict), "an object")
    for name in ("decay_rate", "horizon"):
        _field(carry, name, _number_or_null, "a number or null", "carry.")
    return record


def _object(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"not a JSON object but {_show(value)}")


def _member(record: Any) -> None:
    _object(record)
    _field(record, "step", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    _field(record, "seed", _is_int, "an integer")
    _field(record, "learning_rate", _number_or_null, "a number", optional=True)


def read_text(path: str | Path, errors: str = "strict") -> str:
    """A result file's text, opened without following a link and only if it is a regular file (never a
    FIFO or a device, which a reader could wait on forever); `DamagedError` if it is something else or not
    UTF-8 (with `errors="strict"`; "replace" shows what it can). FileNotFoundError if there is none."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        kind = file_kind(path)
        raise DamagedError(path, f"{kind} where the run keeps a file" if kind else e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DamagedError(path, f"{file_kind(path) or 'not a regular file'} where the run keeps a file")
        data = f.read()
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        raise DamagedError(path, f"not UTF-8 text (byte {e.start})") from None


def file_kind(path: str | Path) -> str | None:
    """What stands at `path` (not following a link) when it is not a regular file: "a folder", "a symbolic
    link", "a FIFO", "a socket", "a device"; None for a regular file or nothing."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISLNK: "a symbolic link",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
    }
    return next((name for test, name in kinds.items() if test(mode)), None)


def read_results(path: str | Path, metrics: Collection[str] = ()) -> dict[str, Any]:
    """results.json at `path`, checked (`check_results`); `DamagedError` if it is not one."""
    text = read_text(path)
    try:
        return formats.upgrade_results(check_results(_loads(text), metrics))
    except formats.FormatError as e:  # not damaged: newer than this reader
        raise DamagedError(path, str(e), message=f"{path}: {e}") from None
    except ValueError as e:  # json.JSONDecodeError is one
        raise DamagedError(path, _json_why(e)) from None


def read_records(path: str | Path, check: Callable[[Any], dict]) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file, each checked by `check`; [] if there is no file. A torn last line (a
    kill while it was written: no newline after it) is skipped; any other bad line is `DamagedError`."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(check(_loads(line)))
        except ValueError as e:
            if n == len(lines) and isinstance(e, json.JSONDecodeError):
                break  # the last line, without its newline: torn by a kill
            raise DamagedError(path, f"line {n}: {_json_why(e)}") from None
    return records


def _loads(text: str) -> Any:
    """json.loads, with JSON nested deeper than Python's recursion limit a ValueError too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not JSON that can be read: nested too deeply") from None


def _json_why(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not JSON: {e.msg} at line {e.lineno}" if e.lineno > 1 else f"not JSON: {e.msg}"
    return str(e)

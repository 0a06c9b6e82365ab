"""Name -> object registries, with `module.path:Name` or `path/to/file.py:Name` for objects that live
outside the repo.

Used for cells (`--cell`) and tasks (`--task`): the one module both import, so neither imports
the other. Errors are one line: they list what is registered, so a typo is fixed without reading code.

A file path (`--cell=path/to/ugrnn.py:UGRNN`) needs no PYTHONPATH: the file is imported as a module
named after its absolute path (`rnnlab_plugin_<stem>_<hash>`), once per process, so every lookup of
it returns the same class.
"""

import ast
import cmath
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# The one way a number is written in a flag, a list flag or an option value: ASCII digits, no `_` separators
# (Python's int() and float() also take `1_000` and non-ASCII digits such as `١`; those are refused everywhere).
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NONFINITE_WORDS = ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan", "+nan", "-nan")
NUMBER_RULE = "numbers are written with ASCII digits 0-9, without `_` separators (e.g. 1000, 0.5, 1e-3)"


def looks_numeric(text: str) -> bool:
    """Whether Python's float() would read `text` as a number (in any of the ways it accepts)."""
    try:
        float(text)
    except (ValueError, TypeError):
        return False
    return True


def is_number_text(text: str, integer: bool = False) -> bool:
    """Whether `text` is a number written by the one rule (`NUMBER`, or `INTEGER` when `integer`)."""
    return bool((INTEGER if integer else NUMBER).fullmatch(text.strip()))


class Registry:
    """A mapping from short names to factories, plus lookup by import path."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` under `name`; without `obj`, return a class decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        return obj

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, spec: str) -> Any:
        """Look up a registered name, or import `package.module:Attribute` or `path/to/file.py:Attribute`."""
        if ":" in spec:
            return load_object(spec)
        if spec not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {spec!r}; registered: {', '.join(self._entries)}; "
                f"or give your own as package.module:ClassName or path/to/file.py:ClassName"
            )
        return self._entries[spec]


def is_file_spec(spec: str) -> bool:
    """Whether `spec`'s module part is a file path (`dir/file.py:Name`), not a dotted module name."""
    module = spec.rpartition(":")[0]
    return module.endswith(".py") or "/" in module or os.sep in module


def load_object(spec: str) -> Any:
    """Import `package.module:Attribute` or `path/to/file.py:Attribute` and return the attribute."""
    module_name, _, attr = spec.rpartition(":")
    if is_file_spec(spec):
        if not attr.isidentifier():
            raise ValueError(f"malformed import path {spec!r}; expected path/to/file.py:ClassName")
    elif not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + [attr]):
        raise ValueError(
            f"malformed import path {spec!r}; expected package.module:ClassName or path/to/file.py:ClassName"
        )
    module = import_module(module_name, spec)
    missing = object()
    found = call_user_code(f"module {module_name!r} (from {spec!r})", getattr, module, attr, missing)
    if found is missing:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})")
    return found


class SignalExit(SystemExit):
    """The exit a tool's own SIGTERM/SIGINT handler raises: never a user module's failure, so no guard of user code
    turns it into an error line (each re-raises it)."""


def describe_exception(e: BaseException) -> str:
    """One line saying what `e` was: `it called sys.exit(0)`, or `TypeName: first line of its message`."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def call_user_code(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, with any exception other than ValueError and TypeError, and a SystemExit, raised
    as a ValueError `<what>: <describe_exception>` (code from outside the repository may fail in any way)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, SignalExit):
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raise ValueError(f"{what}: {describe_exception(e)}") from None


def import_module(module: str, spec: str) -> ModuleType:
    """The module a plug-in `spec` names: a dotted name (imported the usual way) or a `.py` file (imported from
    the file, no PYTHONPATH needed, under `file_module_name`). The one place a user's module is imported;
    ValueError (one line) when it cannot be."""
    if not is_file_spec(spec):
        try:
            return importlib.import_module(module)
        except SignalExit:
            raise
        except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever a user's module raises, or its sys.exit()
            raise ValueError(f"cannot import {module!r} (from {spec!r}): {describe_exception(e)}") from None
    path = Path(module).expanduser()
    if not path.is_file():
        raise ValueError(f"no file {module!r} (from {spec!r}; a path is relative to the current folder)")
    name = file_module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"cannot import {module!r} (from {spec!r}): not a Python file")
    loaded = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = loaded  # before running it: dataclasses and pickle look the module up by name
    try:
        loader_spec.loader.exec_module(loaded)
    except SignalExit:
        del sys.modules[name]
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - whatever a user's module raises, or its sys.exit()
        del sys.modules[name]
        raise ValueError(f"cannot import {module!r} (from {spec!r}): {describe_exception(e)}") from None
    except BaseException:
        del sys.modules[name]
        raise
    return loaded


def file_module_name(path: str | os.PathLike) -> str:
    """The module name a plug-in file is imported under: stable for one file (its resolved path), unique
    across files, e.g. `rnnlab_plugin_ugrnn_3f2a9c1b0d`."""
    resolved = Path(path).expanduser().resolve()
    stem = re.sub(r"\W", "_", resolved.stem)
    return f"rnnlab_plugin_{stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:10]}"


def parse_options(text: str) -> dict[str, Any]:
    """Parse `key=value,key=value`; values are Python literals, else plain strings.

    A number is written by the one rule (`NUMBER_RULE`: `1_000` or `١` is refused, not read as 1000 or as a
    string); `inf`, `-inf` and `nan` are read as floats (so `check_finite_options` can refuse them)."""
    options: dict[str, Any] = {}
    items = [s.strip() for s in text.split(",")] if text.strip() else []
    if "" in items:  # `a=1,,b=2` or `,,`: a lost option, not none (list flags refuse empty entries too)
        raise ValueError(f"empty option in {text!r}; expected key=value[,key=value...]")
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"malformed option {item!r}; expected key=value[,key=value...]")
        if key in options:
            raise ValueError(f"option {key!r} given more than once")
        if value.lower() in NONFINITE_WORDS:
            options[key] = float(value)
            continue
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            options[key] = value
        number = isinstance(options[key], int | float) and not isinstance(options[key], bool)
        if (number or looks_numeric(value)) and not is_number_text(value):  # 1_000, ١, 0x10, 0o7: not this rule
            raise ValueError(f"option {key}={value!r} is not a number as written here: {NUMBER_RULE}")
    return options


def nonfinite(value: Any) -> bool:
    """Whether `value` is, or holds (in a tuple, list or dict), an infinite or nan float or complex."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, complex):
        return not cmath.isfinite(value)
    if isinstance(value, tuple | list | set | frozenset):
        return any(nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(nonfinite(v) for v in value.values())
    return False


def check_finite_options(kind: str, spec: str, cls: Any, options: dict[str, Any]) -> None:
    """ValueError naming the option unless every option value is finite; a class allows inf or nan in the
    options it lists in its `nonfinite_options` (a tuple of names, class attribute)."""
    allowed = getattr(cls, "nonfinite_options", ())
    if bad := [k for k, v in options.items() if k not in allowed and nonfinite(v)]:
        raise ValueError(
            f"{kind} {spec!r}: option {bad[0]}={options[bad[0]]!r} must be finite (inf and nan are refused "
            "unless the class lists the option in its `nonfinite_options`)"
        )


def constructor_fields(factory: Callable) -> list[str]:
    """The keyword fields a (possibly partial) flax module class accepts."""
    cls = getattr(factory, "func", factory)
    fields = getattr(cls, "__dataclass_fields__", {})
    return [f for f in fields if f not in ("parent", "name")]

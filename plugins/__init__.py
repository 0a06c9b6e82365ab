"""Name -> object registries, with `module.path:Name` for objects that live outside the repo.

Used for cells (`--cell`) and tasks (`--task`): the one module both import, so neither imports
the other. Errors are one line: they list what is registered, so a typo is fixed without reading code.
"""

import ast
import importlib
from collections.abc import Callable
from typing import Any


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
        """Look up a registered name, or import `package.module:Attribute`."""
        if ":" in spec:
            return load_object(spec)
        if spec not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {spec!r}; registered: {', '.join(self._entries)}; "
                f"or give your own as package.module:ClassName"
            )
        return self._entries[spec]


def load_object(spec: str) -> Any:
    """Import `package.module:Attribute` and return the attribute."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + [attr]):
        raise ValueError(f"malformed import path {spec!r}; expected package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} (from {spec!r}): {e}") from None
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})")
    return getattr(module, attr)


def parse_options(text: str) -> dict[str, Any]:
    """Parse `key=value,key=value`; values are Python literals, else plain strings."""
    options: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"malformed option {item!r}; expected key=value[,key=value...]")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


def constructor_fields(factory: Callable) -> list[str]:
    """The keyword fields a (possibly partial) flax module class accepts."""
    cls = getattr(factory, "func", factory)
    fields = getattr(cls, "__dataclass_fields__", {})
    return [f for f in fields if f not in ("parent", "name")]

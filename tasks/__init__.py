"""Synthetic long-range tasks, looked up by name (`--task=copy`) or import path."""

from typing import Any

from plugins import Registry, SignalExit, check_finite_options, describe_exception, parse_options
from tasks.adding import Adding
from tasks.associative_recall import AssociativeRecall
from tasks.base import Task
from tasks.copy_memory import CopyMemory
from tasks.digits import Digits, PermutedDigits
from tasks.selective_copy import SelectiveCopy
from tasks.temporal_order import TemporalOrder

TASKS = Registry("task")
TASKS.register("copy", CopyMemory)
TASKS.register("adding", Adding)
TASKS.register("selective_copy", SelectiveCopy)
TASKS.register("associative_recall", AssociativeRecall)
TASKS.register("temporal_order", TemporalOrder)
TASKS.register("digits", Digits)
TASKS.register("permuted_digits", PermutedDigits)


def make_task(spec: str, seq_len: int, options: str | dict[str, Any] = "") -> Task:
    """Build a task from a registered name or `package.module:TaskClass`.

    `options` (a dict or "key=value,...") sets the task's options (`Task.options()`).
    Raises ValueError with a one-line message on any bad input.
    """
    factory = TASKS.get(spec)
    cls = getattr(factory, "func", factory)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"{spec!r} is not a tasks.Task subclass")
    options = parse_options(options) if isinstance(options, str) else dict(options)
    if unknown := sorted(set(options) - set(cls.options())):
        raise ValueError(
            f"task {spec!r} has no option {', '.join(unknown)}; its options: {', '.join(cls.options()) or 'none'}"
        )
    check_finite_options("task", spec, cls, options)
    try:
        return factory(seq_len=seq_len, **options)
    except (TypeError, ValueError) as e:
        raise ValueError(f"task {spec!r}" + (f" rejected options {options}" if options else "") + f": {e}") from None
    except SignalExit:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a user's task may fail in any way, even sys.exit()
        raise ValueError(f"task {spec!r} failed to build: {describe_exception(e)}") from None


__all__ = [
    "TASKS",
    "Adding",
    "AssociativeRecall",
    "CopyMemory",
    "Digits",
    "PermutedDigits",
    "SelectiveCopy",
    "Task",
    "TemporalOrder",
    "make_task",
]

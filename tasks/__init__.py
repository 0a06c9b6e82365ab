"""Synthetic long-range tasks, looked up by name (`--task=copy`) or import path."""

from plugins import Registry
from tasks.adding import Adding
from tasks.base import Task
from tasks.copy_memory import CopyMemory

TASKS = Registry("task")
TASKS.register("copy", CopyMemory)
TASKS.register("adding", Adding)


def make_task(spec: str, seq_len: int) -> Task:
    """Build a task from a registered name or `package.module:TaskClass`."""
    factory = TASKS.get(spec)
    if not (isinstance(factory, type) and issubclass(factory, Task)):
        raise ValueError(f"{spec!r} is not a tasks.Task subclass")
    return factory(seq_len=seq_len)


__all__ = ["TASKS", "Adding", "CopyMemory", "Task", "make_task"]

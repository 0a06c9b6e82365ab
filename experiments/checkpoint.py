"""Checkpoints of the whole train state with orbax (written to a temp dir, then renamed)."""

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class _QuietOrbax(logging.Filter):
    """Orbax logs several INFO lines per save through absl; keep its warnings only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


logging.getLogger("absl").addFilter(_QuietOrbax())


class Checkpoints:
    """The `checkpoints/` folder of a workdir; keeps the latest two steps."""

    def __init__(self, workdir: str | Path):
        options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        if self._manager.latest_step() == step:
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def restore(self, step: int, like: Any) -> Any:
        """Restore `step` into the structure, shapes and dtypes of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()

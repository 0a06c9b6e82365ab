"""Checkpoints of the whole train state with orbax (written to a temp dir, then renamed)."""

import ast
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from experiments import io
from experiments.config import ConfigError

UNREADABLE = "checkpoints_unreadable"  # where unreadable checkpoints are moved once an older one restored


class ParamsMismatchError(ConfigError):
    """A checkpoint whose parameters do not fit the cell as its code is now (not damaged: kept as it is)."""


class _QuietOrbax(logging.Filter):
    """Orbax logs several INFO lines per save through absl: keep its warnings only. A full disk it
    logs as an error with a traceback from each of its writer threads: drop those, the failure is
    raised to the caller and reported once (`experiments.flags.run`: one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "orbax" not in record.pathname:
            return True
        disk_full = any(m in record.getMessage() for m in io.DISK_FULL_MESSAGES)
        return record.levelno >= logging.WARNING and not disk_full and not io.disk_full(_exception(record))


def _exception(record: logging.LogRecord) -> BaseException | None:
    return record.exc_info[1] if isinstance(record.exc_info, tuple) else None


_previous_unraisable_hook: Callable[[Any], object] = sys.__unraisablehook__


def _quiet_closed_loop(unraisable: Any) -> None:
    """When a restore fails (a damaged file), tensorstore's reads still in flight report back to the
    asyncio loop orbax has already closed, each printing a `RuntimeError: Event loop is closed`
    traceback from a background thread; the failure itself is reported once, by `restore_latest`."""
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
        return
    _previous_unraisable_hook(unraisable)


def quiet_orbax() -> None:
    """Keep orbax's output to what a user needs: `_QuietOrbax` on absl's logger, and `_quiet_closed_loop` in
    front of `sys.unraisablehook`. Installed once per process, by the first `Checkpoints` (importing this
    module changes nothing)."""
    global _previous_unraisable_hook
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())
    if sys.unraisablehook is not _quiet_closed_loop:
        _previous_unraisable_hook = sys.unraisablehook
        sys.unraisablehook = _quiet_closed_loop


def saved_steps(workdir: str | Path) -> list[int]:
    """Steps of the checkpoint folders under `workdir`/checkpoints (readable or not), without orbax."""
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


class Checkpoints:
    """The `checkpoints/` folder of a workdir; keeps the latest two steps."""

    def __init__(self, workdir: str | Path):
        quiet_orbax()
        options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        self._workdir = Path(workdir).absolute()
        self._manager = ocp.CheckpointManager(self._workdir / "checkpoints", options=options)

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

    def restore_latest(self, like: Any, flag: str = "workdir", quarantine: bool = True) -> tuple[int, Any] | None:
        """The newest checkpoint that restores, as (step, state); None when there is no checkpoint.

        One that fails (a truncated or emptied file, a deleted folder) gets one warning line and
        the next older one is tried. With `quarantine`, once an older one restored, the unreadable
        newer ones are moved to `<workdir>/checkpoints_unreadable/` (kept for inspection; training
        then saves those steps afresh). None restoring is a ConfigError naming `--flag`: nothing
        is moved, and nothing trains from step 0 over a run that exists.
        """
        unreadable = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            if mismatch := self.params_mismatch(step, like):
                raise ParamsMismatchError(
                    f"--{flag}={self._workdir}: checkpoint {step} holds parameters that do not match the cell as "
                    f"its code is now ({mismatch}); the checkpoint is not damaged and is kept as it is: put the "
                    f"cell's code back to resume it, or use a new --{flag} to train the changed cell"
                )
            try:
                state = self.restore(step, like)
            except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
                reason = " ".join(f"{type(e).__name__}: {e}".split())
                absl_logging.warning(
                    "checkpoint %d of %s does not restore (%s); trying an older one",
                    step,
                    self._workdir,
                    reason[:200] + ("..." if len(reason) > 200 else ""),
                )
                unreadable.append(step)
                continue
            if unreadable and quarantine:
                self._quarantine(unreadable)
            return step, state
        if unreadable:
            steps = ", ".join(map(str, unreadable))
            remedy = f"; move {self._workdir / 'checkpoints'} away to train from step 0, or use a new --{flag}"
            raise ConfigError(
                f"--{flag}={self._workdir}: no checkpoint restores (steps {steps} are damaged)"
                + (remedy if flag == "workdir" else "")
            )
        return None

    def params_mismatch(self, step: int, like: Any) -> str | None:
        """How the parameters saved at `step` differ from those of `like` (a state with a leading member axis):
        a parameter added, gone, or of another shape; None when they match or when the checkpoint's metadata
        cannot be read (restoring it then says what is wrong). Reads orbax's tree metadata, not the arrays."""
        try:
            tree = io.read_json(self._workdir / "checkpoints" / str(step) / "default" / "_METADATA")["tree_metadata"]
            saved = {}
            for key, meta in tree.items():
                path = ast.literal_eval(key)
                if path[0] == "params" and meta["value_metadata"].get("write_shape") is not None:
                    saved["/".join(path[1:])] = tuple(meta["value_metadata"]["write_shape"][1:])
        except (OSError, ValueError, KeyError, TypeError, SyntaxError, IndexError, AttributeError):
            return None
        if not saved:
            return None
        params = getattr(like, "params", None)
        now = {
            "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): tuple(leaf.shape[1:])
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        if added := sorted(now.keys() - saved.keys()):
            return f"{added[0]} is new" + (f", and {len(added) - 1} more" if len(added) > 1 else "")
        if gone := sorted(saved.keys() - now.keys()):
            return f"{gone[0]} is gone" + (f", and {len(gone) - 1} more" if len(gone) > 1 else "")
        for name in sorted(now):
            if now[name] != saved[name]:
                return f"{name} was saved with shape {saved[name]}, the cell now makes {now[name]}"
        return None

    def _quarantine(self, steps: list[int]) -> None:
        target = self._workdir / UNREADABLE
        target.mkdir(exist_ok=True)
        for step in steps:
            dest, n = target / str(step), 1
            while dest.exists():
                dest, n = target / f"{step}.{n}", n + 1
            (self._workdir / "checkpoints" / str(step)).rename(dest)
            absl_logging.warning("moved the unreadable checkpoint %d to %s", step, dest)
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()

"""Whether a workdir may be resumed with a config (`check_resumable`), and its latest checkpoint restored.

A workdir holds one run: config.json, metrics.jsonl, checkpoints/ and results.json (`RUN_FILES`,
`RUN_FOLDERS`). Resuming it with other settings than RESUMABLE_CHANGES, past what it trained, or over
damaged files is refused in one line, before anything compiles.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from experiments import formats, io, schema
from experiments.checkpoint import UNREADABLE, Checkpoints, saved_steps
from experiments.config import Config, ConfigError, learning_rates, members
from experiments.experiment import TrainState

# fields that may differ when resuming
RESUMABLE_CHANGES = (
    "steps",
    "eval_every",
    "checkpoint_every",
    "diag_every",
    "num_devices",
    "seed_chunk",
    "remat",
    "tensorboard",
)


class NotExtendableError(ConfigError):
    """More --steps asked of a run that keeps no checkpoint to go on from (`check_resumable`)."""


def check_resumable(
    config: Config, workdir: Path, flag: str = "workdir", field_name: Callable[[str], str] | None = None
) -> None:
    """Refuse to resume a workdir whose saved config differs in more than RESUMABLE_CHANGES, that holds
    a run but lost its config.json (nothing to check the flags against), whose run has already
    trained more than --steps, or fewer but without a checkpoint to extend it from (it is never
    silently trained again from step 0), whose result files are damaged (`experiments.schema`), or where
    something of another kind stands in the place of a file or folder the run writes (`check_layout`).
    Writes nothing.

    `flag` names the folder in errors and `field_name(field)` a Config field (default `--<field>`): a sweep
    names its own flags (`experiments.sweep.check_points`)."""
    field_name = field_name or (lambda field: f"--{field}")
    at = f"--{flag}={workdir}"
    check_layout(config, workdir, flag)
    path = workdir / "config.json"
    if not path.exists():
        if found := [name for name in ("checkpoints", "metrics.jsonl", "results.json") if _holds(workdir, name)]:
            raise ConfigError(
                f"{at} holds a run ({', '.join(found)}) but no config.json, so its settings cannot "
                f"be checked; put its config.json back, or use a new --{flag}"
            )
        return
    try:
        saved = json.loads(schema.read_text(path))
        if not isinstance(saved, dict):
            raise ValueError(f"holds a JSON {type(saved).__name__}, not an object")
        saved = Config.from_dict(schema.check_config(saved)).to_dict()
    except schema.DamagedError as e:
        raise schema.DamagedError(path, e.why, f"{at}: ", f"; use a new --{flag}") from None
    except formats.FormatError as e:  # not damaged: newer than this reader
        raise ConfigError(f"{at}: {path} was {e}") from None
    except RecursionError:
        raise schema.DamagedError(path, "nested too deeply", f"{at}: ", f"; use a new --{flag}") from None
    except (OSError, ValueError, TypeError) as e:  # empty, truncated, `[]`, unreadable, a folder, ...
        reason = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise schema.DamagedError(path, reason, f"{at}: ", f"; use a new --{flag}") from None
    diff = [k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES]
    if diff:
        fields = ", ".join(f"{field_name(k)} (saved {saved.get(k)!r}, now {getattr(config, k)!r})" for k in diff)
        raise ConfigError(f"{at} holds a run with other settings: {fields}; use a new --{flag}")
    _check_result_files(workdir, at, flag)
    steps = field_name("steps")
    if config.steps < (done := steps_done(workdir)):
        raise ConfigError(
            f"{steps}={config.steps}: the run in {at} has already trained {done} steps; "
            f"pass {steps}={done} or more, or use a new --{flag}"
        )
    if config.steps > done > 0 and not saved_steps(workdir):  # say, committed results in a fresh clone
        raise NotExtendableError(
            f"{steps}={config.steps}: the run in {at} trained {done} steps but keeps no checkpoint to "
            f"go on from (checkpoints are not committed with results); pass {steps}={done} to keep it, or move "
            "the folder away to train again from step 0"
        )


# what a run keeps in its workdir: files, and folders (a folder may be a link to one: checkpoints on another disk)
RUN_FILES = ("config.json", "results.json", "metrics.jsonl", "diagnostics.jsonl", "diagnostics.npz", "error.txt")


RUN_FOLDERS = ("checkpoints", UNREADABLE)


def check_layout(config: Config, workdir: Path, flag: str = "workdir", gradients: bool = False) -> None:
    """ConfigError (one line) when something of another kind stands where the run writes: a folder, link,
    FIFO or device in the place of one of its files, a file in the place of one of its folders (checkpoints,
    and the TensorBoard folder of each member with --tensorboard). Checked before anything is compiled or
    written: otherwise the run would fail at its first write of that name, after compiling and training.
    `gradients`: the files of a measurement at initialisation (`benchmarks.tables --table=gradients`)."""
    from experiments.tensorboard import FOLDER, seed_dir

    at = f"--{flag}={workdir}"
    if not workdir.is_dir():
        return
    for name in ("config.json", "diagnostics.jsonl", "diagnostics.npz") if gradients else RUN_FILES:
        path = workdir / name
        if kind := schema.file_kind(path):
            why = f"{kind} where the run keeps a file"
            raise schema.DamagedError(path, why, message=f"{at}: {path} is {why}; move it away")
    folders = [] if gradients else [workdir / name for name in RUN_FOLDERS]
    if config.tensorboard and not gradients:
        sweep = len(learning_rates(config)) > 1
        for seed, rate in members(config):
            member = seed_dir(workdir, seed, rate if sweep else None)
            folders += [p for p in (member, *member.parents) if p.is_relative_to(workdir / FOLDER)]
    for folder in dict.fromkeys(folders):
        if folder.exists() and not folder.is_dir() or folder.is_symlink() and not folder.exists():
            why = f"{'a file' if folder.exists() else 'a broken link'} where the run keeps a folder"
            raise schema.DamagedError(folder, why, message=f"{at}: {folder} is {why}; move it away")


def _check_result_files(workdir: Path, at: str, flag: str) -> None:
    """results.json and the metrics and diagnostics logs, read back as `experiments.schema` says they must be."""
    after = f"; move it away (a run resumes from its checkpoint and writes it again), or use a new --{flag}"
    try:
        if (workdir / "results.json").exists():
            schema.read_results(workdir / "results.json")
        schema.read_records(workdir / "metrics.jsonl", schema.check_metrics_record)
        schema.read_records(workdir / "diagnostics.jsonl", schema.check_diagnostics_record)
    except schema.DamagedError as e:
        raise schema.DamagedError(e.path, e.why, f"{at}: ", after) from None


def _holds(workdir: Path, name: str) -> bool:
    if name == "checkpoints":
        return bool(saved_steps(workdir))
    return (workdir / name).exists()


def steps_done(workdir: Path) -> int:
    """Steps the run in `workdir` has trained: its newest checkpoint, or results.json's steps_done."""
    results = previous_results(workdir)
    done = results.get("steps_done") if isinstance(results.get("steps_done"), int) else 0
    return max([done, *saved_steps(workdir)])


def previous_results(workdir: Path) -> dict[str, Any]:
    """results.json as a dict; {} when missing or damaged."""
    try:
        results = io.read_json(workdir / "results.json")
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def restore_latest(
    checkpoints: Checkpoints, workdir: Path, like: TrainState, flag: str = "workdir", quarantine: bool = True
) -> tuple[int, TrainState] | None:
    """`Checkpoints.restore_latest(like)`, reading too a run checkpointed before the optimizer state held its
    learning rates (before `optax.inject_hyperparams`): its optimizer state is restored as the inner
    state of `like`'s, with `like`'s rates and the count of updates it took (its steps, or up to divergence)."""
    step = checkpoints.latest_step()
    if step is None or not formats.checkpoint_predates_hyperparams(workdir / "checkpoints" / str(step)):
        return checkpoints.restore_latest(like, flag, quarantine)
    restored = checkpoints.restore_latest(like._replace(opt_state=like.opt_state.inner_state), flag, quarantine)
    if restored is None:
        return None
    step, old = restored
    count = jnp.where(old.diverged_at >= 0, old.diverged_at, old.step).astype(jnp.int32)
    return step, old._replace(opt_state=like.opt_state._replace(count=count, inner_state=old.opt_state))

"""Experiment configuration as code: one frozen dataclass, validated before anything compiles."""

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import jax

from cells import make_cell
from experiments.model import SequenceModel
from tasks import Task, make_task

OPTIMIZERS = ("adam", "rmsprop", "sgd")
MAX_SEQ_LEN = 1_000_000
MAX_WIDTH = 65_536


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything needed to rerun an experiment; saved as `config.json` in the workdir."""

    cell: str = _field("lstm", "Cell: a registered name (rnn, irnn, lstm, gru, ...) or package.module:Class.")
    cell_options: str = _field("", "Cell constructor options as key=value,... (e.g. activation=relu,forget_bias=0).")
    task: str = _field("adding", "Task: copy, adding, or package.module:TaskClass.")
    seq_len: int = _field(100, "Task length T (copy: the delay; sequences are T+20 long).")
    hidden_size: int = _field(128, "Width of the cell's hidden state.")
    batch_size: int = _field(50, "Training sequences per step (fresh each step).")
    steps: int = _field(2000, "Training steps; a larger value extends a finished run on resume.")
    optimizer: str = _field("adam", "Optimizer: adam, rmsprop or sgd (with --momentum).")
    learning_rate: float = _field(1e-3, "Learning rate.")
    momentum: float = _field(0.9, "Momentum of sgd (0 = plain sgd); adam and rmsprop ignore it.")
    clip_norm: float = _field(1.0, "Clip gradients to this global norm before the update (0 = off).")
    eval_every: int = _field(100, "Evaluate on the held-out set and log every this many steps.")
    eval_size: int = _field(1000, "Sequences in the fixed held-out evaluation set.")
    seed: int = _field(0, "Seed of parameters and training data.")
    num_seeds: int = _field(1, "Train seeds seed..seed+num_seeds-1 together in one program (vmap).")
    checkpoint_every: int = _field(1000, "Save a checkpoint every this many steps (0 = only at the end).")
    diag_every: int = _field(0, "Measure gradient diagnostics every this many steps (0 = off).")
    remat: int = _field(0, "Recompute activations in chunks of this many steps on the backward pass (0 = off).")

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class ConfigError(ValueError):
    """A bad flag or config field; the message is one line naming it and the allowed values."""


def _int_between(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"--{name}={value!r}: must be an integer in [{low}, {high}]")


def _positive_float(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"--{name}={value!r}: must be a finite number {'>= 0' if allow_zero else '> 0'}")


def validate(config: Config) -> None:
    """Check every field; raise ConfigError on the first bad one. Compiles nothing."""
    _int_between("seq_len", config.seq_len, 2, MAX_SEQ_LEN)
    _int_between("hidden_size", config.hidden_size, 1, MAX_WIDTH)
    _int_between("batch_size", config.batch_size, 1, MAX_WIDTH)
    _int_between("steps", config.steps, 1, 10**9)
    _int_between("eval_every", config.eval_every, 1, 10**9)
    _int_between("eval_size", config.eval_size, 1, 10**6)
    _int_between("seed", config.seed, 0, 2**31 - 1)
    _int_between("num_seeds", config.num_seeds, 1, 1024)
    _int_between("checkpoint_every", config.checkpoint_every, 0, 10**9)
    _int_between("diag_every", config.diag_every, 0, 10**9)
    _int_between("remat", config.remat, 0, MAX_SEQ_LEN)
    _positive_float("learning_rate", config.learning_rate)
    _positive_float("clip_norm", config.clip_norm, allow_zero=True)
    _positive_float("momentum", config.momentum, allow_zero=True)
    if config.momentum >= 1:
        raise ConfigError(f"--momentum={config.momentum!r}: must be in [0, 1)")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer={config.optimizer!r}: must be one of {', '.join(OPTIMIZERS)}")
    try:
        task = make_task(config.task, config.seq_len)
    except ValueError as e:
        raise ConfigError(f"--task={config.task}: {e}") from None
    try:
        cell = make_cell(config.cell, config.hidden_size, config.cell_options)
    except ValueError as e:
        flag = "cell_options" if "option" in str(e) else "cell"
        raise ConfigError(f"--{flag}: {e}") from None
    model = SequenceModel(cell, task.num_outputs, task.readout, config.remat)
    _check_cell_runs(config, model, task)
    _check_memory(config, model, task)


def _check_cell_runs(config: Config, model: SequenceModel, task: Task) -> None:
    """Trace (not compile) one cell step, so a broken user cell fails here, in one line."""
    x = jax.ShapeDtypeStruct((1, 2, task.input_size), "float32")
    try:
        jax.eval_shape(lambda x: model.apply(model.init(jax.random.PRNGKey(0), x), x), x)
    except Exception as e:  # noqa: BLE001 - any failure of a user's cell becomes one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--cell={config.cell}: the cell fails on a (1, {task.input_size}) input: {first}") from None


def check_workdir(workdir: str | os.PathLike) -> Path:
    """Create `workdir` if needed and make sure files can be written there; ConfigError otherwise."""
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--workdir={workdir}: not writable ({e.strerror or e})") from None
    return path


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_memory(config: Config, model: SequenceModel, task: Task, fraction: float = 0.8) -> None:
    """Refuse a run whose stored activations clearly cannot fit in RAM; suggest --remat."""
    estimate = lambda m: config.num_seeds * m.activation_bytes(config.batch_size, task.length, task.input_size)  # noqa: E731
    need, ram = estimate(model), physical_memory_bytes()
    if need <= fraction * ram:
        return
    k = max(2, math.isqrt(task.length))
    with_remat = estimate(dataclasses.replace(model, remat=k))
    raise ConfigError(
        f"--seq_len={config.seq_len}: the backward pass would keep ~{need / 2**30:.1f} GiB of activations, more than "
        f"{fraction:.0%} of this machine's {ram / 2**30:.1f} GiB; add --remat={k} (~{with_remat / 2**30:.2f} GiB) "
        f"or lower --batch_size, --hidden_size or --num_seeds"
    )

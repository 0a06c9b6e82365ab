"""Experiment configuration as code: one frozen dataclass, validated before anything compiles."""

import contextlib
import dataclasses
import errno
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax

from experiments import formats, policy
from experiments.rules import (
    MAX_SEED,
    ConfigError,
    as_float32,
    check_choice,
    check_float32_positive,
    check_integer,
    check_seeds,
    distinct_in_float32,
    flag_error,
    float32_positive,
    float32_range,
)
from plugins import NUMBER_RULE, SignalExit, describe_exception, is_number_text, looks_numeric

OPTIMIZERS = ("adam", "rmsprop", "sgd")
MAX_SEQ_LEN = 1_000_000
MAX_WIDTH = 65_536
MAX_COUNT = 10**9  # steps and step intervals
MAX_MEMBERS = 1024  # seeds x learning rates trained in one program


def _field(
    default: Any, help: str, between: tuple[int, int] | None = None, choices: tuple[str, ...] | None = None
) -> Any:
    """A Config field: its flag's help, and the rule `check_fields` holds it to, written here once: an integer
    `between` (low, high), both included, or one of `choices`."""
    rule = {"between": between} if between else {"choices": choices} if choices else {}
    return dataclasses.field(default=default, metadata={"help": help, **rule})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything needed to rerun an experiment; saved as `config.json` in the workdir."""

    cell: str = _field("lstm", "Cell: a registered name (rnn, irnn, lstm, gru, ...) or package.module:Class.")
    cell_options: str = _field("", "Cell constructor options as key=value,... (e.g. activation=relu,forget_bias=0).")
    task: str = _field("adding", "Task: a registered name (adding, copy, ...) or package.module:TaskClass.")
    task_options: str = _field("", "Task options as key=value,... (each task's docstring lists its options).")
    seq_len: int = _field(100, "Task length T (copy: the delay; sequences are T+20 long).", (2, MAX_SEQ_LEN))
    hidden_size: int = _field(128, "Width of the cell's hidden state.", (1, MAX_WIDTH))
    num_layers: int = _field(
        1, "Cells stacked in depth: each layer's output sequence is the next one's input.", (1, 64)
    )
    batch_size: int = _field(50, "Training sequences per step (fresh each step).", (1, MAX_WIDTH))
    steps: int = _field(2000, "Training steps; a larger value extends a finished run on resume.", (1, MAX_COUNT))
    optimizer: str = _field("adam", "Optimizer: adam, rmsprop or sgd (with --momentum).", choices=OPTIMIZERS)
    learning_rate: float | tuple[float, ...] = _field(
        1e-3,
        "Learning rate, or a comma-separated list of them in increasing order (e.g. 1e-4,3e-4,1e-3): a sweep, every "
        "rate x seed trained together in one program; results report each rate and the best one on the validation "
        "split.",
    )
    momentum: float = _field(0.9, "Momentum of sgd (0 = plain sgd); adam and rmsprop ignore it.")
    clip_norm: float = _field(1.0, "Clip gradients to this global norm before the update (0 = off).")
    clip_value: float = _field(
        0.0, "Clip each gradient entry to [-clip_value, clip_value] before the update (0 = off; IndRNN's code uses 10)."
    )
    rmsprop_decay: float = _field(
        0.9, "rmsprop's decay of the squared-gradient average (0.9 as in TensorFlow; PyTorch's alpha is 0.99)."
    )
    eval_every: int = _field(100, "Evaluate on the held-out set and log every this many steps.", (1, MAX_COUNT))
    eval_size: int = _field(1000, "Sequences in the fixed held-out evaluation set.", (1, 10**6))
    seed: int = _field(0, "Seed of parameters and training data.", (0, MAX_SEED))
    num_seeds: int = _field(
        1,
        "Train seeds seed..seed+num_seeds-1 together in one program (vmap); with several --learning_rate, each.",
        (1, MAX_MEMBERS),
    )
    checkpoint_every: int = _field(
        1000, "Save a checkpoint every this many steps (0 = only at the end).", (0, MAX_COUNT)
    )
    diag_every: int = _field(0, "Measure gradient diagnostics every this many steps (0 = off).", (0, MAX_COUNT))
    remat: int = _field(
        0, "Recompute activations in chunks of this many steps on the backward pass (0 = off).", (0, MAX_SEQ_LEN)
    )
    lr_multipliers: str = _field(
        "",
        "Per-parameter learning rates: name=factor,... scales --learning_rate for the cell parameters of that "
        "name (e.g. recurrent_skew=0.1 for exprnn's orthogonal parameter).",
    )
    sequence_path: str = _field(
        "auto",
        "How the cell runs over time: sequence (its whole-sequence method when it has one: the fused kernel of "
        "rnn/lstm/gru), step (lax.scan over its step), auto (per backend: experiments.policy).",
        choices=policy.PATHS,
    )
    unroll: int = _field(
        0, "Time steps per iteration of the time scans (0 = per backend: experiments.policy).", (0, 1024)
    )
    seed_chunk: int = _field(
        0, "Seeds per device vmapped at once, the rest looped (0 = per backend and memory).", (0, 1024)
    )
    num_devices: int = _field(
        0,
        "Local devices the seeds (x learning rates) are sharded over (0 = the most that divide their number).",
        (0, 4096),
    )
    matmul_precision: str = _field(
        "highest",
        "fp32 matmul precision: highest (reproducible fp32), default (lets a GPU use TF32) or tf32x3 (a GPU's "
        "three-pass TF32 dot algorithm, close to fp32; GPUs only).",
        choices=policy.PRECISIONS,
    )
    tensorboard: bool = _field(True, "Write TensorBoard event files beside metrics.jsonl: <workdir>/tb/seed_<s>/.")

    def __post_init__(self) -> None:
        # a list of rates is stored as a tuple (config.json holds a list), one rate as a plain number
        if isinstance(self.learning_rate, list | tuple):
            rates = tuple(self.learning_rate)
            object.__setattr__(self, "learning_rate", rates[0] if len(rates) == 1 else rates)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """The Config of a `to_dict` (or its JSON: a list of learning rates comes back as the tuple)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in formats.config_fields(d).items() if k in names})


def _finite_number(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise flag_error(name, f"must be a finite number {'>= 0' if allow_zero else '> 0'}", repr(value))


# fields that only act in training: a measurement at initialisation (experiments.gradients --cells) has no use for them
TRAINING_FIELDS = (
    "batch_size",
    "steps",
    "optimizer",
    "learning_rate",
    "momentum",
    "clip_norm",
    "eval_every",
    "eval_size",
    "checkpoint_every",
    "diag_every",
    "lr_multipliers",
    "tensorboard",
)
LEARNING_RATES_RULE = "must be a finite number > 0, or a comma-separated list of them in increasing order (a sweep)"


def learning_rates(config: Config) -> tuple[float, ...]:
    """The run's learning rates, R >= 1 of them: `(lr,)` for one rate, the sweep's list otherwise."""
    lr = config.learning_rate
    return tuple(lr) if isinstance(lr, list | tuple) else (lr,)


def parse_learning_rates(text: str) -> float | tuple[float, ...]:
    """`--learning_rate`'s text: one number -> a float, a comma-separated list -> a tuple of floats.

    ConfigError (one line, naming --learning_rate and what it allows) unless each is a finite number > 0 and
    the list is strictly increasing (so distinct; one order, so one config per set of rates).
    """
    items = [s.strip() for s in str(text).split(",")]
    if not all(is_number_text(s) for s in items):
        misspelt = [s for s in items if looks_numeric(s) and not is_number_text(s) and not s.strip("+-").isalpha()]
        why = f"; {NUMBER_RULE}" if misspelt else ""  # 1_000 or ١: Python reads them, this rule does not
        raise flag_error("learning_rate", f"{LEARNING_RATES_RULE}{why}", repr(text))
    rates = tuple(float(s) for s in items)
    _check_rates(rates, repr(text))
    return rates[0] if len(rates) == 1 else rates


def _check_rates(rates: tuple[Any, ...], shown: str) -> None:
    """ConfigError unless every rate is a positive normal float32 number and the list strictly increases, also
    once cast to float32 (where 1e-3 and 0.0010000000000000002 are one rate: two identical members)."""
    numbers = all(isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) and r > 0 for r in rates)
    if not rates or not numbers or not all(a < b for a, b in zip(rates, rates[1:], strict=False)):
        raise flag_error("learning_rate", LEARNING_RATES_RULE, shown)
    if bad := [r for r in rates if not float32_positive(r)]:
        raise flag_error(
            "learning_rate",
            f"{bad[0]!r} is {as_float32(bad[0])!r} in float32, the program's precision; "
            f"each rate must be in {float32_range()}",
            shown,
        )
    if same := distinct_in_float32(rates):
        a, b = same[0]
        raise flag_error(
            "learning_rate",
            f"{a!r} and {b!r} are the same float32 number ({as_float32(a)!r}): "
            "the sweep would train identical members; give distinct rates",
            shown,
        )


def _check_learning_rates(config: Config) -> None:
    rates = learning_rates(config)
    shown = ",".join(map(str, rates)) if isinstance(config.learning_rate, tuple) else repr(config.learning_rate)
    _check_rates(rates, shown)
    if (members := num_members(config)) > MAX_MEMBERS:
        raise ConfigError(
            f"--num_seeds={config.num_seeds} x {len(rates)} learning rates = {members} runs in one program: "
            f"must be at most {MAX_MEMBERS}; lower --num_seeds or give fewer --learning_rate values"
        )


def num_members(config: Config) -> int:
    """Runs trained together: --num_seeds x the number of learning rates (the leading axis of the state)."""
    return config.num_seeds * len(learning_rates(config))


def members(config: Config) -> list[tuple[int, float]]:
    """(seed, learning rate) of each member, in the order of the state's leading axis: member m = r * S + s
    trains seed `config.seed + s` at `learning_rates(config)[r]` (S = --num_seeds)."""
    return [(config.seed + s, lr) for lr in learning_rates(config) for s in range(config.num_seeds)]


def _what_is_sharded(config: Config) -> tuple[str, str]:
    """How errors name the sharded axis: ("--num_seeds=4", "seeds") or ("--num_seeds=2 x 3 learning rates = 6
    runs", "runs") for a sweep."""
    if (rates := len(learning_rates(config))) == 1:
        return f"--num_seeds={config.num_seeds}", "seeds"
    return f"--num_seeds={config.num_seeds} x {rates} learning rates = {num_members(config)} runs", "runs"


def num_devices(config: Config, available: int) -> int:
    """Devices the members are sharded over: --num_devices, or the most (<= available) dividing their number
    (--num_seeds x the number of learning rates)."""
    if config.num_devices:
        return config.num_devices
    n = num_members(config)
    return max(d for d in range(1, min(available, n) + 1) if n % d == 0)


def _check_devices(config: Config) -> None:
    if not config.num_devices:
        return
    available = jax.local_device_count()
    if config.num_devices > available:
        raise flag_error("num_devices", f"only {available} local devices", str(config.num_devices))
    if num_members(config) % config.num_devices:
        what, unit = _what_is_sharded(config)
        raise ConfigError(
            f"{what} is not a multiple of --num_devices={config.num_devices}: "
            f"each device trains the same number of {unit}"
        )


def check_fields(config: Config) -> None:
    """The scalar fields (sizes, counts, choices, rates): ConfigError on the first bad one. Builds nothing.

    Each field's range or choices are its metadata (`_field`); the rules that span fields, or the float32
    the program computes in, are written below."""
    for field in dataclasses.fields(Config):
        value = getattr(config, field.name)
        if between := field.metadata.get("between"):
            check_integer(field.name, value, *between)
        if choices := field.metadata.get("choices"):
            check_choice(field.name, value, choices)
    check_seeds(config.seed, config.num_seeds)
    _check_learning_rates(config)
    _check_devices(config)
    _finite_number("clip_norm", config.clip_norm, allow_zero=True)
    check_float32_positive("clip_norm", config.clip_norm, zero_allowed=True)  # 1e-46 is 0 in float32: no clipping
    check_float32_positive("clip_value", config.clip_value, zero_allowed=True)
    _finite_number("momentum", config.momentum, allow_zero=True)
    decay = config.rmsprop_decay
    if not 0 < decay < 1 or as_float32(decay) >= 1:
        raise flag_error("rmsprop_decay", "must be in (0, 1), also in float32", repr(decay))
    if config.momentum >= 1 or as_float32(config.momentum) >= 1:  # 0.99999999999 is 1.0 in float32
        raise flag_error("momentum", "must be in [0, 1), also in float32 (at most 0.99999994)", repr(config.momentum))
    if config.momentum and not float32_positive(config.momentum):
        raise flag_error("momentum", f"must be 0 or in {float32_range()}", repr(config.momentum))
    _check_group_rates(config)


def lr_multipliers(text: str) -> dict[str, float]:
    """`name=factor,...` -> {name: factor}; ConfigError unless every factor is a finite number > 0, written by
    the one rule (`plugins.NUMBER_RULE`)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = (p.strip() for p in item.partition("="))
        factor = float(value) if is_number_text(value) else math.nan
        if not sep or not name.isidentifier() or not (math.isfinite(factor) and factor > 0) or name in out:
            raise ConfigError(
                f"--lr_multipliers={text!r}: {item!r} is not name=factor (a parameter name, once, and a factor > 0)"
            )
        out[name] = factor
    return out


def _check_group_rates(config: Config) -> None:
    """Each --lr_multipliers group's rate, factor x learning rate, must be a positive normal float32 number for every
    learning rate (the program computes it in float64 and casts it once: `build.member_learning_rates`)."""
    for name, factor in lr_multipliers(config.lr_multipliers).items():
        for rate in learning_rates(config):
            if not float32_positive(factor * rate):
                raise ConfigError(
                    f"--lr_multipliers={config.lr_multipliers}: {name}={factor:g} x --learning_rate={rate:g} = "
                    f"{factor * rate:g}, must be in {float32_range()}; the program computes in float32"
                )


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


@contextlib.contextmanager
def user_code(what: str, field: str | None = None, shown: str | None = None) -> Iterator[None]:
    """Any exception (but a ConfigError) or SystemExit raised inside, by a user's cell or task, becomes one
    ConfigError line: `--<field>=<shown>: <what>: <what it raised>` when `field` is given (`what` may be empty),
    else `<what>: <what it raised>`."""
    try:
        yield
    except (ConfigError, SignalExit):
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raised = describe_exception(e)
        if field is None:
            raise ConfigError(f"{what}: {raised}") from None
        raise flag_error(field, f"{what}: {raised}" if what else raised, shown) from None


PROBE_BYTES = 16 * 1024  # written (and synced) by the write probe


def _probe(folder: Path, name: str = "write_probe") -> None:
    """Create `folder` if needed and write (then remove) a file there, named as `io.atomic_write` names its
    temp file for `name`; OSError (or ValueError, for a NUL byte) if that fails."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:  # a few KiB, synced: a full disk fails here, not after compiling (an empty file needs no space)
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(probe)


def check_workdir(workdir: str | os.PathLike, flag: str = "workdir") -> Path:
    """Create `workdir` if needed and make sure files can be written there; ConfigError otherwise."""
    if not str(workdir).strip():
        raise ConfigError(f"--{flag}={str(workdir)!r}: must name a folder (empty would mean the current one)")
    path = Path(workdir)
    try:
        _probe(path)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ConfigError(f"--{flag}={workdir}: not writable ({getattr(e, 'strerror', None) or e})") from None
    return path


def check_out_file(path: str | os.PathLike, flag: str = "out") -> Path:
    """Make sure a file can be written (atomically: temp file beside it, then rename) at `path`."""
    if not str(path).strip():
        raise ConfigError(f"--{flag}={str(path)!r}: must name a file")
    out = Path(path)
    try:
        is_dir = out.is_dir()
        if not is_dir:
            _probe(out.parent, out.name)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--{flag}={path}: not writable ({getattr(e, 'strerror', None) or e})") from None
    if is_dir:
        raise ConfigError(f"--{flag}={path}: is a folder; give a file name")
    return out

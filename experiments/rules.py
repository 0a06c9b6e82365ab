"""The rules a flag's value must keep, in one place: every entry point's parsers and `experiments.config` use them.

- Numbers are written one way (`plugins.NUMBER_RULE`): ASCII digits, no `_` separators, in every flag,
  list flag and option value (`int_list`, `plugins.parse_options`; `ascii_number_parsers` makes absl's
  integer and float flags keep it too).
- A value the float32 program computes with is checked after the cast it undergoes (`float32_positive`):
  a learning rate of 1e-46 is 0 there, 1e39 is inf, and two rates 1e-3 and 0.0010000000000000002 are one.
  Positive values must be normal float32 numbers, in [1.18e-38, 3.4e38]: XLA flushes subnormals to zero.
- Seeds are int32 in the program (`jax.random.PRNGKey`, the member axis): `check_seeds` keeps every seed
  of a run, seed .. seed + num_seeds - 1, in [0, 2**31 - 1].

Errors are `ConfigError`s, one line naming the flag and what it allows.
"""

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from plugins import NONFINITE_WORDS, NUMBER_RULE, is_number_text

FLOAT32 = np.finfo(np.float32)
MAX_SEED = 2**31 - 1  # seeds are int32 in the program


class ConfigError(ValueError):
    """A bad flag or config field; the message is one line naming it and the allowed values.

    Raised by `flag_error` it also carries its parts as data: `field` (the flag or Config field it names),
    `shown` (its value as the message shows it; None when the message shows none) and `reason` (what is wrong,
    the text after `--field=value: `), so a tool that names the field by another flag (`--cells` for
    `--cell`, `--seq_lens` for `--seq_len`) rewords it with `relabel`, not by editing the message. An error
    raised from a plain message has `field` None.
    """

    field: str | None = None
    shown: str | None = None
    reason: str | None = None

    def __init__(self, message: str, *, field: str | None = None, shown: str | None = None, reason: str | None = None):
        super().__init__(message)
        if field is not None:
            self.field, self.shown, self.reason = field, shown, reason

    def relabel(self, name: str) -> "ConfigError":
        """The same error under another name (`--cells=a,b (a)`, `--seq_lens (T=5)`): `<name>: <reason>`."""
        return ConfigError(f"{name}: {self.reason}", field=self.field, shown=self.shown, reason=self.reason)


def flag_error(field: str, reason: str, shown: str | None = None) -> ConfigError:
    """`ConfigError("--<field>=<shown>: <reason>")` (`--<field>: <reason>` when `shown` is None), parts kept."""
    at = f"--{field}" if shown is None else f"--{field}={shown}"
    return ConfigError(f"{at}: {reason}", field=field, shown=shown, reason=reason)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool | np.bool_)


def as_float32(value: float) -> float:
    """`value` after the cast to float32 (0, inf, a neighbour), as a Python float."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float32(value))


def float32_positive(value: Any) -> bool:
    """Whether `value` stays a positive normal float32 number once cast (not 0, subnormal, inf or nan)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        return False
    with np.errstate(over="ignore", under="ignore"):
        cast = np.float32(value)
    return bool(np.isfinite(cast) and cast >= FLOAT32.tiny)


def float32_range() -> str:
    """The range `float32_positive` allows, as errors print it."""
    return f"[{float(FLOAT32.tiny):.3g}, {float(FLOAT32.max):.3g}] (a normal float32 number)"


def check_float32_positive(flag: str, value: Any, zero_allowed: bool = False, shown: str | None = None) -> None:
    """ConfigError unless `value` is a finite number > 0 (or exactly 0, when `zero_allowed`) that float32 holds."""
    if zero_allowed and _is_real(value) and value == 0:
        return
    if not float32_positive(value):
        zero = " or 0" if zero_allowed else ""
        reason = f"must be a number > 0 in {float32_range()}{zero}; the program computes in float32"
        raise flag_error(flag, reason, shown or repr(value))


def distinct_in_float32(values: Iterable[float]) -> list[tuple[float, float]]:
    """Pairs of neighbouring `values` (in order) that float32 cannot tell apart."""
    values = list(values)
    return [(a, b) for a, b in zip(values, values[1:], strict=False) if as_float32(a) == as_float32(b)]


def check_integer(flag: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` if it is an integer (not a bool) in [low, high] (no upper bound when `high` is None), else
    ConfigError: `--<flag>=<value>: must be an integer in [low, high]` (`>= low`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise flag_error(flag, f"must be an integer {allowed}", repr(value))
    return value


def check_seconds(flag: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """`value` if it is a number of seconds in [low, high] (`(low, high]` when `low_open`), else ConfigError;
    nan and inf are refused."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and (low < value if low_open else low <= value) and value <= high):
        raise flag_error(flag, f"must be a number of seconds in {'(' if low_open else '['}{low}, {high}]", str(value))
    return value


def check_choice(flag: str, value: Any, allowed: Iterable[str]) -> None:
    """ConfigError unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise flag_error(flag, f"must be one of {', '.join(allowed)}", repr(value))


def check_seeds(seed: Any, num_seeds: Any, seed_flag: str = "seed", count_flag: str = "num_seeds") -> None:
    """ConfigError unless seed and seed + num_seeds - 1 (the last seed of the run) are in [0, 2**31 - 1]."""
    for name, value in ((seed_flag, seed), (count_flag, num_seeds)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise flag_error(name, "must be an integer", repr(value))
    if not 0 <= seed <= MAX_SEED:
        raise flag_error(seed_flag, f"must be an integer in [0, {MAX_SEED}] (seeds are int32)", str(seed))
    if num_seeds >= 1 and seed + num_seeds - 1 > MAX_SEED:
        raise ConfigError(
            f"--{seed_flag}={seed} --{count_flag}={num_seeds}: the last seed, {seed + num_seeds - 1}, is past "
            f"{MAX_SEED} (seeds are int32); lower --{seed_flag} to at most {MAX_SEED - num_seeds + 1}"
        )


def split_list(value: str, flag: str) -> list[str]:
    """A comma-separated flag value, stripped; ConfigError on an empty list or entry, or a repeated one."""
    items = [s.strip() for s in value.split(",")]
    if not value.strip() or not all(items):
        raise ConfigError(f"--{flag}={value!r}: must be a comma-separated list with no empty entries")
    if repeated := sorted({s for s in items if items.count(s) > 1}):
        raise ConfigError(f"--{flag}={value!r}: {', '.join(repeated)} given more than once")
    return items


def int_list(value: str, flag: str, low: int = 1, high: int = 10**9) -> list[int]:
    """A comma-separated list of integers in [low, high], written by the one rule; a value given twice (also as
    `1` and `01`) is an error."""
    items = split_list(value, flag)
    rule = f"must be a comma-separated list of integers in [{low}, {high}]; {NUMBER_RULE}"
    if not all(is_number_text(s, integer=True) and len(s) <= 12 and low <= int(s) <= high for s in items):
        raise ConfigError(f"--{flag}={value!r}: {rule}")
    numbers = [int(s) for s in items]
    if repeated := sorted({n for n in numbers if numbers.count(n) > 1}):
        raise ConfigError(f"--{flag}={value!r}: {', '.join(map(str, repeated))} given more than once")
    return numbers


def ascii_number_parsers(flag_values: Any) -> None:
    """Make every integer and float flag of `flag_values` (absl's `FlagValues`) read its text by the one rule:
    absl's own parsers take `1_000`, `١` (int() and float() do), and `0x10`; these refuse them."""
    from absl import flags

    class IntegerParser(flags.IntegerParser):
        def convert(self, argument: Any) -> int:
            if isinstance(argument, str) and not is_number_text(argument, integer=True):
                raise ValueError(f"not an integer; {NUMBER_RULE}")
            return super().convert(argument.strip() if isinstance(argument, str) else argument)

    class FloatParser(flags.FloatParser):
        def convert(self, argument: Any) -> float:
            # inf and nan are numbers here: each flag's own range check refuses them, in its own words
            if isinstance(argument, str) and not is_number_text(argument) and argument.lower() not in NONFINITE_WORDS:
                raise ValueError(f"not a number; {NUMBER_RULE}")
            return super().convert(argument)

    swap = {flags.IntegerParser: IntegerParser, flags.FloatParser: FloatParser}
    for name in list(flag_values):
        flag = flag_values[name]
        if (new := swap.get(type(flag.parser))) is not None:
            parser = new(flag.parser.lower_bound, flag.parser.upper_bound)
            parser.syntactic_help = flag.parser.syntactic_help
            flag.parser = parser

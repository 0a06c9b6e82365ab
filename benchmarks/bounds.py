"""One-line range checks of single flag values (integers, seconds): each a `ConfigError` naming the flag and
the values it allows, as `experiments.rules` words its list and seed checks."""

import math
from typing import Any

from experiments.rules import ConfigError


def check_integer(flag: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` if it is an integer in [low, high] (no upper bound when `high` is None), else ConfigError."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"--{flag}={value}: must be an integer {allowed}")
    return value


def check_seconds(flag: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """`value` if it is a number of seconds in [low, high] (`(low, high]` when `low_open`), else ConfigError;
    nan and inf are refused."""
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and (low < value if low_open else low <= value) and value <= high):
        raise ConfigError(f"--{flag}={value}: must be a number of seconds in {'(' if low_open else '['}{low}, {high}]")
    return value

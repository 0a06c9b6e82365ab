"""Helpers of the tasks: one-line checks of option values (for `__post_init__`; `make_task` checks the
names), distinct random integers, and the I/O of a task on a token vocabulary."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def check_int(name: str, value: Any, low: int, high: int | None = None, why: str = "") -> None:
    """Raise ValueError unless `value` is an int (not a bool) in [low, high] (high None: no upper bound)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}{f' ({why})' if why else ''}; got {value!r}")


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ValueError unless `value` is one of `allowed`."""
    if not any(type(value) is type(a) and value == a for a in allowed):  # so 1 is not True, nor "6" 6
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def distinct_integers(key: jax.Array, batch_size: int, m: int, n: int) -> jax.Array:
    """(batch_size, n) int32: in each row n distinct integers of [0, m), a uniform n-subset in uniform order.

    The first n of a random permutation: [0, m) sorted by independent random 64-bit keys (two uint32
    words), so ties, which would favour low integers, have probability about m^2 / 2^65 per row.
    """
    k_high, k_low = jax.random.split(key)
    high, low = (jax.random.bits(k, (batch_size, m), jnp.uint32) for k in (k_high, k_low))
    integers = jax.lax.broadcasted_iota(jnp.int32, (batch_size, m), 1)
    return jax.lax.sort((high, low, integers), dimension=1, num_keys=2)[2][:, :n]


class OneHotTokens:
    """A task on a vocabulary of `vocab_size` tokens: one-hot inputs over it, and logits over it."""

    vocab_size: int

    @property
    def input_size(self) -> int:
        return self.vocab_size

    @property
    def num_outputs(self) -> int:
        return self.vocab_size

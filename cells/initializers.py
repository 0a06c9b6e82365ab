"""Initialisers for fused recurrent kernels, chosen by name so they can be set from a flag."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = Callable[..., jax.Array]

RECURRENT_INITS = ("orthogonal", "identity", "lecun_normal")


def _identity(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    del key
    return jnp.eye(shape[0], shape[1], dtype=dtype)


def check_choice(field: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    """Raise a one-line ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")


def recurrent_init(name: str, num_blocks: int = 1) -> Initializer:
    """Initialiser of an (H, num_blocks * H) recurrent kernel, applied block by block.

    Each H x H gate block is initialised independently, so `orthogonal` gives every gate
    its own orthogonal matrix (as flax's `OptimizedLSTMCell` and Haiku do) and `identity`
    gives every gate the identity (Le et al. 2015, IRNN).
    """
    base = {
        "orthogonal": nn.initializers.orthogonal(),
        "identity": _identity,
        "lecun_normal": nn.initializers.lecun_normal(),
    }
    check_choice("recurrent_init", name, RECURRENT_INITS)
    block_init = base[name]

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        rows, cols = shape
        if cols != num_blocks * rows:
            raise ValueError(f"expected an ({rows}, {num_blocks * rows}) kernel, got {shape}")
        keys = jax.random.split(key, num_blocks)
        return jnp.concatenate([block_init(k, (rows, rows), dtype) for k in keys], axis=1)

    return init

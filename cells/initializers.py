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


def symmetric_uniform(limit: float) -> Initializer:
    """U[-limit, limit] (flax's `uniform(scale)` is U[0, scale)); PyTorch's nn.Linear uses limit 1/sqrt(fan_in)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def check_chrono(t_max: float) -> None:
    """Raise a one-line ValueError unless `t_max` is 0 (chrono off) or at least 2."""
    if not (t_max == 0 or t_max >= 2):
        raise ValueError(f"chrono_tmax must be 0 (off) or at least 2; got {t_max!r}")


def chrono_bias(t_max: float, num_blocks: int, keep_block: int | None, write_block: int | None = None) -> Initializer:
    """Chrono initialisation (Tallec & Ollivier 2018) of a fused (num_blocks * H,) gate bias.

    The block of the gate that keeps the old state, if any (`keep_block`), gets log(u),
    u ~ U[1, t_max - 1], so that sigmoid(bias) = 1 - 1/(1 + u): characteristic forgetting times
    1 + u spread over [2, t_max]. The block of the gate that writes new content, if any
    (`write_block`), gets -log(u): its gate starts at 1/(1 + u), the complement (minGRU has only
    this gate: h' = (1 - z) h + z h~ keeps 1 - z = u / (1 + u)). Every other block is zero. One bias per gate: no second
    (recurrent) bias is written, so the effective bias is not doubled.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        (size,) = shape
        H = size // num_blocks
        log_u = jnp.log(jax.random.uniform(key, (H,), dtype, 1.0, t_max - 1.0))
        bias = jnp.zeros(shape, dtype)
        if keep_block is not None:
            bias = bias.at[keep_block * H : (keep_block + 1) * H].set(log_u)
        if write_block is not None:
            bias = bias.at[write_block * H : (write_block + 1) * H].set(-log_u)
        return bias

    return init

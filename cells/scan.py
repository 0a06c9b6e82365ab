r"""Diagonal linear recurrences over a whole sequence, in parallel over time (`jax.lax.associative_scan`).

The whole-sequence method of the cells whose carry is linear in itself (lru, mingru, minlstm)::

    h_t = a_t * (h_{t-1} + eps_t) + b_t          t = 1..T, elementwise, real or complex

with eps_t the diagnostics' carry perturbation (zero in training). The perturbation is one more
input: b_t + a_t * eps_t. The initial carry is folded into the first step (b_1 + a_1 * h_0), so
the scan starts from zero. Pairs compose as (a, b) then (a', b') = (a' a, a' b + b'): associative,
so `jax.lax.associative_scan` computes every h_t in O(log T) sequential depth (Blelloch 1990;
Martin & Cundy 2018).

Nothing is divided by a cumulative product of the a_t, so the scan needs no log space to stay
finite: with |a_t| <= 1 the products only shrink, and one that underflows to 0 multiplies a
contribution that is below float resolution anyway. (The log-space scan of Feng et al. 2024, after
Heinsen 2023, divides by the cumulative product, which is why it must run in log space, and it
needs h_t > 0 throughout, which a signed carry perturbation or a zero initial carry breaks.)
"""

import jax
import jax.numpy as jnp


def _compose(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    (a1, b1), (a2, b2) = earlier, later
    return a2 * a1, a2 * b1 + b2


def linear_recurrence(a: jax.Array, b: jax.Array, h0: jax.Array, eps: jax.Array | None = None) -> jax.Array:
    """Every h_t of h_t = a_t * (h_{t-1} + eps_t) + b_t from h_0: (T, ..., N).

    a: (T, ..., N), or anything that broadcasts to b's shape (a time-invariant (N,) for lru);
    b: (T, ..., N); h0: (..., N); eps: like b, or None.
    """
    a = jnp.broadcast_to(a, b.shape)
    if eps is not None:
        b = b + a * eps
    b = b.at[0].add(a[0] * h0)
    _, h = jax.lax.associative_scan(_compose, (a, b))
    return h

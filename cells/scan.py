r"""Diagonal linear recurrences over a whole sequence, with a backward pass that is itself one.

The whole-sequence method of the cells whose carry is linear in itself (lru, mingru, minlstm)::

    h_t = a_t * (h_{t-1} + eps_t) + b_t          t = 1..T, elementwise, real or complex

with eps_t the diagnostics' carry perturbation (zero in training). The perturbation is one more
input: b_t + a_t * eps_t. The initial carry is folded into the first step (b_1 + a_1 * h_0), so
the scan starts from zero.

Forward. Pairs compose as (a, b) then (a', b') = (a' a, a' b + b'): associative, so
`jax.lax.associative_scan` computes every h_t in O(log T) sequential depth (Blelloch 1990;
Martin & Cundy 2018); `method="sequential"` runs the same recurrence as one `lax.scan` of
elementwise steps (O(T) depth, no extra work), which is the faster of the two on a CPU.

Backward (`jax.custom_vjp`). With g_t = dL/dh_t from outside the recurrence, the gradient
reaching h_t is the reverse recurrence::

    d_t = g_t + a_{t+1} * d_{t+1}     (d_{T+1} = 0)         dL/db_t = d_t,  dL/da_t = d_t * h_{t-1}

(h_0 = 0 after the fold), a linear recurrence run backwards in time: the same scan, reversed
(the construction of recurrentgemma's `scan`). It keeps only a and h for the backward pass,
where autodiff through `associative_scan` keeps every level of the tree. Complex values follow
JAX's convention (cotangents are not conjugated: the transpose of multiplying by a is
multiplying by a), so gradients equal JAX autodiff's.

Nothing is divided by a cumulative product of the a_t, so no log space is needed to stay finite:
with |a_t| <= 1 the products only shrink, and one that underflows to 0 multiplies a contribution
that is below float resolution anyway. (The log-space scan of Feng et al. 2024, after Heinsen
2023, divides by the cumulative product, which is why it must run in log space, and it needs
h_t > 0 throughout, which a signed carry perturbation or a zero initial carry breaks.)
"""

import functools

import jax
import jax.numpy as jnp

METHODS = ("associative", "sequential")


def _compose(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    (a1, b1), (a2, b2) = earlier, later
    return a2 * a1, a2 * b1 + b2


def scan_from_zero(a: jax.Array, b: jax.Array, method: str = "associative", reverse: bool = False) -> jax.Array:
    """Every h_t of h_t = a_t * h_{t-1} + b_t from h_0 = 0 (or, `reverse`, h_t = a_t * h_{t+1} + b_t
    from h_{T+1} = 0): b (T, ..., N) -> h (T, ..., N). Plain JAX (autodiff differentiates it as is).

    a: (T, ...) broadcasting to b, or time-invariant: fewer axes than b, broadcasting to b[0].
    """
    time_invariant = a.ndim < b.ndim
    if method == "associative":
        full = jnp.broadcast_to(a, b.shape)
        return jax.lax.associative_scan(_compose, (full, b), reverse=reverse)[1]
    if method != "sequential":
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")

    def step(h: jax.Array, ab: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        a_t, b_t = (a, ab) if time_invariant else ab
        h = a_t * h + b_t
        return h, h

    zero = jnp.zeros(b.shape[1:], jnp.result_type(a, b))
    return jax.lax.scan(step, zero, b if time_invariant else (a, b), reverse=reverse)[1]


def _sum_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum x over the axes that broadcasting `shape` to x.shape added or stretched."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return jnp.sum(x, axis=axes).reshape(shape) if axes else x


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _recurrence(a: jax.Array, b: jax.Array, method: str) -> jax.Array:
    return scan_from_zero(a, b, method)


def _recurrence_fwd(a: jax.Array, b: jax.Array, method: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    h = scan_from_zero(a, b, method)
    return h, (a, h)


def _recurrence_bwd(method: str, residuals: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    a, h = residuals
    # d_t = g_t + a_{t+1} d_{t+1}: a shifted one step earlier; the last entry multiplies d_{T+1} = 0,
    # so a time-invariant a needs no shift at all
    a_next = a if a.ndim < h.ndim else jnp.concatenate([a[1:], jnp.zeros_like(a[:1])])
    d = scan_from_zero(a_next, g, method, reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(h[:1]), h[:-1]])
    return _sum_to(d * h_prev, a.shape).astype(a.dtype), d.astype(g.dtype)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def linear_recurrence(
    a: jax.Array, b: jax.Array, h0: jax.Array, eps: jax.Array | None = None, method: str = "associative"
) -> jax.Array:
    """Every h_t of h_t = a_t * (h_{t-1} + eps_t) + b_t from h_0: (T, ..., N).

    a: (T, ..., N) broadcasting to b's shape, or time-invariant without the time axis (an (N,) for
    lru); b: (T, ..., N); h0: (..., N); eps: like b, or None. `method`: "associative" (O(log T)
    depth) or "sequential" (one `lax.scan`); either way the backward pass is the reverse
    recurrence of the module docstring, by the same method.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if a.ndim == b.ndim and a.shape[0] == 1:
        a = a[0]  # time-invariant
    a_first = a if a.ndim < b.ndim else a[0]
    if eps is not None:
        b = b + a * eps
    b = b.at[0].add(a_first * h0)
    dtype = jnp.result_type(a, b)
    return _recurrence(a.astype(dtype), b.astype(dtype), method)

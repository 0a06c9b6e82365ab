r"""A whole-sequence kernel with a hand-written backward pass, for cells whose step is affine-then-pointwise.

The built-in rnn, lstm and gru cells all compute one step as::

    a_x = x_t W + b            (..., G)    input projection, G = gates x H
    a_h = read_h(c_in) U + b_h (..., G)    recurrent projection of the carry's hidden state
    c_t, y_t = pointwise(a_x, a_h, c_in)   elementwise gate equations
    c_in = c_{t-1} + eps_t                 (eps: the diagnostics' carry perturbation, else 0)

`affine_recurrence` runs T such steps the way cuDNN does (Appleyard et al. 2016, "Optimizing
performance of recurrent neural networks on GPUs"):

- forward: the input projection of all T steps is one GEMM (T*B rows); the scan does only the
  recurrent GEMM and the pointwise equations, and keeps, per step, the hidden state h_in that
  entered U and the residuals of `pointwise`'s vjp (the gate activations, as autodiff keeps them);
- backward (`jax.custom_vjp`): a reverse scan does only the per-step transposed recurrent GEMM
  ``da_h U^T`` and the vjp of `pointwise` from the kept residuals (elementwise, no recompute);
- after the loop the weight gradients are one GEMM each over all T*B rows:
  ``dW = X^T da_x``, ``dU = H_in^T da_h``, ``db = sum da_x``, ``db_h = sum da_h``, ``dX = da_x W^T``.

Autodiff of a plain `lax.scan` instead accumulates dW and dU with a small GEMM per step inside the
backward loop. The gradients are the same up to summation order (tests compare them with JAX
autodiff to 1e-10 in float64). Shapes: xs (T, ..., I), carry leaves (..., H), ys (T, ..., H_y).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Carry = Any
Pointwise = Callable[[jax.Array, jax.Array, Carry], tuple[Carry, jax.Array]]


class Kernels(NamedTuple):
    """Parameters of the affine part: W (I, G), b (G,), U (H, G), b_h (G,) or None (no recurrent bias)."""

    W: jax.Array
    b: jax.Array
    U: jax.Array
    b_h: jax.Array | None = None


def _add(tree: Carry, eps: Carry | None) -> Carry:
    return tree if eps is None else jax.tree.map(jnp.add, tree, eps)


def _rows(a: jax.Array) -> jax.Array:
    """(T, ..., n) -> (T * ..., n): every time step and batch row as one GEMM operand."""
    return a.reshape(-1, a.shape[-1])


def affine_recurrence(
    pointwise: Pointwise,
    read_h: Callable[[Carry], jax.Array],
    kernels: Kernels,
    carry: Carry,
    xs: jax.Array,
    perturbations: Carry | None = None,
    unroll: int = 1,
    additive: bool = False,
) -> tuple[Carry, jax.Array]:
    """Unroll `pointwise(x W + b, read_h(c) U + b_h, c)` over the leading (time) axis of `xs`.

    Returns (final carry, ys (T, ..., H_y)). `perturbations` is a carry pytree with a leading
    time axis, added to the carry entering each step (see `experiments.diagnostics`); its
    gradient is dL/dc_{t-1}. `unroll` is passed to both scans. `additive=True` declares that
    `pointwise` reads a_x + a_h only (rnn, lstm), so da_x = da_h and one (T, ..., G) stack serves
    both weight gradients.
    """

    treedef = []  # the structure of pointwise's vjp, recorded while the forward scan traces

    def forward(kernels: Kernels, carry: Carry, xs: jax.Array, eps: Carry | None):
        W, b, U, b_h = kernels
        a_x = xs @ W + b  # all T steps in one GEMM

        def step(c: Carry, inp: tuple[jax.Array, Carry | None]):
            a_x_t, eps_t = inp
            c_in = _add(c, eps_t)
            h_in = read_h(c_in)
            a_h = h_in @ U if b_h is None else h_in @ U + b_h
            (c_out, y), pointwise_vjp = jax.vjp(pointwise, a_x_t, a_h, c_in)
            leaves, tree = jax.tree.flatten(pointwise_vjp)  # what autodiff keeps: gate activations
            treedef[:] = [tree]
            return c_out, (y, h_in, leaves)

        carry, (ys, h_in, saved) = jax.lax.scan(step, carry, (a_x, eps), unroll=unroll)
        return (carry, ys), (kernels, xs, h_in, saved)

    def backward(residuals: tuple, cotangents: tuple[Carry, jax.Array]):
        kernels, xs, h_in, saved = residuals
        W, _, U, _ = kernels
        g_carry, g_ys = cotangents
        _, read_h_vjp = jax.vjp(read_h, g_carry)  # read_h is linear: its vjp needs no primal

        def step(g_c: Carry, inp: tuple):
            leaves, g_y = inp
            pointwise_vjp = jax.tree.unflatten(treedef[0], leaves)
            da_x, da_h, g_c_in = pointwise_vjp((g_c, g_y))
            (g_h,) = read_h_vjp(da_h @ U.T)  # the per-step recurrent GEMM, transposed
            g_c_in = jax.tree.map(jnp.add, g_c_in, g_h)
            return g_c_in, (None if additive else da_x, da_h, g_c_in if perturbations is not None else None)

        g_carry0, (da_x, da_h, g_eps) = jax.lax.scan(step, g_carry, (saved, g_ys), reverse=True, unroll=unroll)
        da_x = da_h if additive else da_x
        g_kernels = Kernels(
            W=_rows(xs).T @ _rows(da_x),
            b=_rows(da_x).sum(0),
            U=_rows(h_in).T @ _rows(da_h),
            b_h=None if kernels.b_h is None else _rows(da_h).sum(0),
        )
        return g_kernels, g_carry0, da_x @ W.T, g_eps

    @jax.custom_vjp
    def run(kernels: Kernels, carry: Carry, xs: jax.Array, eps: Carry | None):
        return forward(kernels, carry, xs, eps)[0]

    run.defvjp(forward, backward)
    return run(kernels, carry, xs, perturbations)

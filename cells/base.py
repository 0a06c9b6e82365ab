"""The part of the flax cell contract the built-in cells share, and their whole-sequence method."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.fused import Kernels, affine_recurrence


class Cell(nn.RNNCellBase):
    """A `flax.linen.RNNCellBase` of width `hidden_size` whose carry starts at zeros (..., hidden_size).

    Subclasses implement `__call__(carry, x) -> (carry, y)`; a cell with a tuple carry overrides
    `initialize_carry` (see `LSTMCell`).
    """

    hidden_size: int
    # True when the whole-sequence method computes the same thing run over consecutive chunks of time
    # (the carry passed from one to the next) at no extra cost: the linear-recurrence cells (lru,
    # mingru, minlstm), whose per-step work is elementwise. One of the optional attributes of
    # `cells.contract`, read there (`time_chunkable`) for `experiments.policy.time_chunk`.
    time_chunkable = False

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        del rng  # deterministic: zeros
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

    @property
    def num_feature_axes(self) -> int:
        return 1


class AffineCell(Cell):
    r"""A cell whose step is ``c_t, y_t = pointwise(x_t W + b, read_h(c_{t-1}) U + b_h, c_{t-1})``.

    Subclasses create the parameters ``input_kernel`` W, ``bias`` b and ``recurrent_kernel`` U in
    their compact ``__call__`` (the step) and define ``pointwise`` (the gate equations, shared by
    the step and the sequence) and, if their carry is not h alone, ``read_h``. They get
    ``sequence``, the optional whole-sequence method of the cell contract
    (`cells.contract.SequenceCell`), for free: the fused kernel of `cells.fused.affine_recurrence`
    (input GEMM hoisted, hand-written backward pass).
    """

    additive_gates = False  # True when pointwise reads a_x + a_h only (see cells.fused)

    @nn.nowrap
    def pointwise(self, a_x: jax.Array, a_h: jax.Array, carry: Any) -> tuple[Any, jax.Array]:
        raise NotImplementedError

    @staticmethod
    def read_h(carry: Any) -> jax.Array:
        """The part of the carry that multiplies U (the whole carry unless overridden)."""
        return carry

    def recurrent_bias(self) -> jax.Array | None:
        """b_h (G,) added to h U, or None; read from the bound parameters."""
        return None

    def sequence(self, carry: Any, xs: jax.Array, perturbations: Any = None, unroll: int = 1) -> tuple[Any, jax.Array]:
        """All T steps at once: xs (T, ..., I) -> (final carry, ys (T, ..., H)).

        Needs bound parameters (created by the step at init). `perturbations`, a carry pytree
        (T, ...), is added to the carry entering each step, as in `experiments.model`.
        """
        p = self.variables["params"]
        kernels = Kernels(p["input_kernel"], p["bias"], p["recurrent_kernel"], self.recurrent_bias())
        return affine_recurrence(
            self.pointwise, self.read_h, kernels, carry, xs, perturbations, unroll, self.additive_gates
        )

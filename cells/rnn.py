"""Vanilla (Elman) recurrent cell; with relu and identity init it is the IRNN."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import AffineCell
from cells.initializers import RECURRENT_INITS, check_choice, recurrent_init

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class RNNCell(AffineCell):
    r"""Elman cell.

    Equations, for input x (..., I) and carry h (..., H)::

        h' = act((x W + b) + h U)      y = h'

    Parameters: ``input_kernel`` W (I, H), lecun-normal; ``recurrent_kernel`` U (H, H),
    orthogonal by default; ``bias`` b (H,), zeros. Carry: h, zeros at initialisation.

    ``activation`` is ``tanh`` (default) or ``relu``; ``activation=relu`` with
    ``recurrent_init=identity`` is the IRNN of Le, Jaitly and Hinton (2015). The step and the
    fused whole-sequence method (``sequence``) share ``pointwise``.
    """

    activation: str = "tanh"
    recurrent_init: str = "orthogonal"

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        W = self.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        U = self.param("recurrent_kernel", recurrent_init(self.recurrent_init), (self.hidden_size, self.hidden_size))
        b = self.param("bias", nn.initializers.zeros_init(), (self.hidden_size,))
        return self.pointwise(x @ W + b, carry @ U, carry)

    additive_gates = True  # pointwise reads a_x + a_h only

    @nn.nowrap
    def pointwise(self, a_x: jax.Array, a_h: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = ACTIVATIONS[self.activation](a_x + a_h)
        return h, h

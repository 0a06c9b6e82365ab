"""Vanilla (Elman) recurrent cell; with relu and identity init it is the IRNN."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.initializers import RECURRENT_INITS, check_choice, recurrent_init

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class RNNCell(Cell):
    r"""Elman cell.

    Equations, for input x (..., I) and carry h (..., H)::

        h' = act(x W + h U + b)        y = h'

    Parameters: ``input_kernel`` W (I, H), lecun-normal; ``recurrent_kernel`` U (H, H),
    orthogonal by default; ``bias`` b (H,), zeros. Carry: h, zeros at initialisation.

    ``activation`` is ``tanh`` (default) or ``relu``; ``activation=relu`` with
    ``recurrent_init=identity`` is the IRNN of Le, Jaitly and Hinton (2015).
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
        h = ACTIVATIONS[self.activation](x @ W + carry @ U + b)
        return h, h

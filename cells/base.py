"""The part of the flax cell contract the built-in cells share."""

import jax
import jax.numpy as jnp
from flax import linen as nn


class Cell(nn.RNNCellBase):
    """A `flax.linen.RNNCellBase` of width `hidden_size` whose carry starts at zeros (..., hidden_size).

    Subclasses implement `__call__(carry, x) -> (carry, y)`; a cell with a tuple carry overrides
    `initialize_carry` (see `LSTMCell`).
    """

    hidden_size: int

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        del rng  # deterministic: zeros
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

    @property
    def num_feature_axes(self) -> int:
        return 1

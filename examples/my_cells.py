"""A user's own cell, kept outside the repo's cells/: minGRU (Feng et al. 2024).

z = sigmoid(x W_z + b_z)      h~ = x W_h + b_h      h' = (1 - z) * h + z * h~
"""

import jax
import jax.numpy as jnp
from flax import linen as nn


class MinGRUCell(nn.RNNCellBase):
    hidden_size: int

    @nn.compact
    def __call__(self, carry, x):
        z, h_tilde = jnp.split(nn.Dense(2 * self.hidden_size)(x), 2, axis=-1)
        z = jax.nn.sigmoid(z)
        h = (1 - z) * carry + z * h_tilde
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

    @property
    def num_feature_axes(self) -> int:
        return 1

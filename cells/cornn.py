"""Coupled oscillatory RNN (coRNN): a network of damped, driven nonlinear oscillators."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.initializers import symmetric_uniform


class CoRNNCell(Cell):
    r"""coRNN (Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural Network", ICLR).

    The ODE y'' = tanh(W y + W_z y' + V x + b) - gamma y - epsilon y', discretised with step dt
    (the paper's eq. 3 with the damping term explicit, as its official adding code runs it). For
    input x (..., I) and carry (y, z) (z = y', both (..., H))::

        z' = z + dt * (tanh(x V + [y, z] W + b) - gamma * y - epsilon * z)
        y' = y + dt * z'                                               output y'

    Parameters: ``input_kernel`` V (I, H); ``recurrent_kernel`` W (2H, H), rows for y then z;
    ``bias`` b (H,); all U(+-1/sqrt(I + 2H)), the init of the reference code's one linear layer
    over [x, z, y]. Carry: (y, z), zeros at initialisation.

    Defaults are the paper's adding-problem settings: dt 0.06, gamma 66, epsilon 15 (with hidden
    128, Adam lr 0.02, batch 50). The paper's implicit-damping variant (epsilon z' instead of
    epsilon z) is not implemented.
    """

    dt: float = 0.06
    gamma: float = 66.0
    epsilon: float = 15.0

    carry_names = ("y", "z")  # the carry's leaves, as the gradient diagnostics report them

    def __post_init__(self) -> None:
        if not (self.dt > 0 and self.gamma >= 0 and self.epsilon >= 0):
            raise ValueError(
                f"need dt > 0, gamma >= 0, epsilon >= 0; got {self.dt!r}, {self.gamma!r}, {self.epsilon!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
        H, (y, z) = self.hidden_size, carry
        init = symmetric_uniform(1.0 / (x.shape[-1] + 2 * H) ** 0.5)
        V = self.param("input_kernel", init, (x.shape[-1], H))
        W = self.param("recurrent_kernel", init, (2 * H, H))
        b = self.param("bias", init, (H,))
        drive = jnp.tanh(x @ V + jnp.concatenate([y, z], axis=-1) @ W + b)
        z = z + self.dt * (drive - self.gamma * y - self.epsilon * z)
        y = y + self.dt * z
        return (y, z), y

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        zeros = super().initialize_carry(rng, input_shape)
        return zeros, zeros

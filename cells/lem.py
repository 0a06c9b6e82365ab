"""Long Expressive Memory (LEM): two coupled states with learned multiscale time steps."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.initializers import symmetric_uniform


class LEMCell(Cell):
    r"""LEM (Rusch, Mishra, Erichson & Mahoney 2022, "Long Expressive Memory for Sequence Modeling", ICLR).

    The paper's eq. 3, for input x (..., I) and carry (y, z), each (..., H)::

        [a_1, a_2, a_z, a_y] = x V + b                     (input block order dt_bar, dt, z, y)
        [u_1, u_2, u_z] = y W                             (from the previous y)
        dt_bar = dt * sigmoid(a_1 + u_1)    dt_n = dt * sigmoid(a_2 + u_2)
        z' = (1 - dt_n) * z + dt_n * tanh(a_z + u_z)
        y' = (1 - dt_bar) * y + dt_bar * tanh(a_y + z' W_y)      output y'

    Parameters: ``input_kernel`` V (I, 4H); ``recurrent_kernel`` W (H, 3H); ``transition_kernel``
    W_y (H, H); ``bias`` b (4H,). All U(+-1/sqrt(H)), the paper's init (its code draws every weight
    and bias so). One bias per pre-activation: the reference code's input and hidden layers each
    carry one, whose sum is a single bias here. Carry: (y, z), zeros at initialisation.

    ``dt`` defaults to 0.0242, the official adding-problem script's value (hidden 128, Adam
    lr 2.6e-3, batch 50); the reference module's own default is 1.
    """

    dt: float = 0.0242

    carry_names = ("y", "z")  # the carry's leaves, as the gradient diagnostics report them

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0; got {self.dt!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
        H, (y, z) = self.hidden_size, carry
        init = symmetric_uniform(1.0 / H**0.5)
        V = self.param("input_kernel", init, (x.shape[-1], 4 * H))
        W = self.param("recurrent_kernel", init, (H, 3 * H))
        W_y = self.param("transition_kernel", init, (H, H))
        b = self.param("bias", init, (4 * H,))
        a_1, a_2, a_z, a_y = jnp.split(x @ V + b, 4, axis=-1)
        u_1, u_2, u_z = jnp.split(y @ W, 3, axis=-1)
        dt_bar, dt_n = self.dt * jax.nn.sigmoid(a_1 + u_1), self.dt * jax.nn.sigmoid(a_2 + u_2)
        z = (1.0 - dt_n) * z + dt_n * jnp.tanh(a_z + u_z)
        y = (1.0 - dt_bar) * y + dt_bar * jnp.tanh(a_y + z @ W_y)
        return (y, z), y

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        zeros = super().initialize_carry(rng, input_shape)
        return zeros, zeros

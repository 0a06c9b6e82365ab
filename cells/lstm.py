"""Long short-term memory cell with fused gate matmuls."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import AffineCell
from cells.initializers import RECURRENT_INITS, check_choice, check_chrono, chrono_bias, recurrent_init


class LSTMCell(AffineCell):
    r"""LSTM (Hochreiter & Schmidhuber 1997, with forget gate of Gers et al. 2000).

    Equations, for input x (..., I) and carry (c, h), each (..., H)::

        [i, f, g, o] = (x W + b) + h U                (gate order i, f, g, o, as PyTorch)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')                    y = h'

    Parameters: ``input_kernel`` W (I, 4H), lecun-normal; ``recurrent_kernel`` U (H, 4H),
    one orthogonal H x H block per gate; ``bias`` b (4H,), zeros except the forget block,
    which starts at ``forget_bias``.

    Carry layout: ``(c, h)``, as flax (PyTorch and Equinox use (h, c)); zeros at init.

    ``forget_bias`` defaults to 1.0 (Gers et al. 2000; Jozefowicz et al. 2015; Haiku and TF
    do the same): sigmoid(1) = 0.73 keeps the cell state, and with it the gradient, alive
    over more steps at initialisation. PyTorch and flax's LSTMCell start at 0; pass
    ``forget_bias=0`` to match them. Tables report the value used.

    ``chrono_tmax=T_max`` (> 0; default 0 = off) is the chrono initialisation (Tallec & Ollivier
    2018), which replaces ``forget_bias``: forget block log(u), input block -log(u), u ~ U[1,
    T_max - 1] per unit, so sigmoid(f) = 1 - 1/(1 + u) gives forgetting times over [2, T_max].
    Only the one bias b is written (the reference code writes both of PyTorch's b_ih and b_hh,
    doubling the effective bias).

    The step and the whole-sequence method (``sequence``, the fused kernel of `cells.fused`)
    share ``pointwise``, the gate equations after the two matmuls.
    """

    forget_bias: float = 1.0
    recurrent_init: str = "orthogonal"
    chrono_tmax: float = 0.0

    def __post_init__(self) -> None:
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        check_chrono(self.chrono_tmax)
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array):
        H = self.hidden_size
        h = carry[1]
        W = self.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 4 * H))
        U = self.param("recurrent_kernel", recurrent_init(self.recurrent_init, 4), (H, 4 * H))

        def bias_init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
            del key  # deterministic: zeros, the forget block at forget_bias
            return jnp.zeros(shape).at[H : 2 * H].set(self.forget_bias)

        if self.chrono_tmax:
            bias_init = chrono_bias(self.chrono_tmax, 4, keep_block=1, write_block=0)  # f: log u, i: -log u
        b = self.param("bias", bias_init, (4 * H,))
        return self.pointwise(x @ W + b, h @ U, carry)

    additive_gates = True  # pointwise reads a_x + a_h only
    carry_names = ("c", "h")  # the carry's leaves, as the gradient diagnostics report them

    @nn.nowrap
    def pointwise(self, a_x: jax.Array, a_h: jax.Array, carry: tuple[jax.Array, jax.Array]):
        i, f, g, o = jnp.split(a_x + a_h, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    @staticmethod
    def read_h(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
        return carry[1]

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        zeros = super().initialize_carry(rng, input_shape)
        return zeros, zeros

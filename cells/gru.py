"""Gated recurrent unit, PyTorch/cuDNN convention, with fused gate matmuls."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import AffineCell
from cells.initializers import RECURRENT_INITS, check_choice, check_chrono, chrono_bias, recurrent_init


class GRUCell(AffineCell):
    r"""GRU (Cho et al. 2014) in the PyTorch/cuDNN/flax convention.

    Equations, for input x (..., I) and carry h (..., H)::

        [a_r, a_z, a_n] = x W + b                     (gate order r, z, n, as PyTorch)
        [u_r, u_z, u_n] = h U
        r = sigmoid(a_r + u_r)      z = sigmoid(a_z + u_z)
        n = tanh(a_n + r * (u_n + b_hn))              (reset applied after the matmul)
        h' = (1 - z) * n + z * h                      y = h'

    Parameters: ``input_kernel`` W (I, 3H), lecun-normal; ``recurrent_kernel`` U (H, 3H),
    one orthogonal H x H block per gate; ``bias`` b (3H,) and ``recurrent_bias`` b_hn (H,),
    zeros. Carry: h, zeros at initialisation. Cho et al. and Haiku apply the reset gate
    before the matmul, tanh(a_n + (r * h) U_n); this cell does not.

    ``chrono_tmax=T_max`` (> 0; default 0 = off) is the chrono initialisation (Tallec & Ollivier
    2018) mapped to this convention: z gates the old state here, as the LSTM's forget gate does,
    so the z block of b starts at +log(u), u ~ U[1, T_max - 1] (1 - z = 1/(1 + u), forgetting
    times over [2, T_max]); written with z gating the candidate, as Chung et al. 2014 do, the
    same init is -log(u). r, n and b_hn stay zero; one bias only (b; b_hn feeds n).

    The step and the fused whole-sequence method (``sequence``) share ``pointwise``; there the
    recurrent projection is h U + [0, 0, b_hn].
    """

    recurrent_init: str = "orthogonal"
    chrono_tmax: float = 0.0

    def __post_init__(self) -> None:
        check_choice("recurrent_init", self.recurrent_init, RECURRENT_INITS)
        check_chrono(self.chrono_tmax)
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        H = self.hidden_size
        W = self.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], 3 * H))
        U = self.param("recurrent_kernel", recurrent_init(self.recurrent_init, 3), (H, 3 * H))
        bias_init = chrono_bias(self.chrono_tmax, 3, keep_block=1) if self.chrono_tmax else nn.initializers.zeros_init()
        b = self.param("bias", bias_init, (3 * H,))
        b_hn = self.param("recurrent_bias", nn.initializers.zeros_init(), (H,))
        return self.pointwise(x @ W + b, carry @ U + _pad(b_hn), carry)

    @nn.nowrap
    def pointwise(self, a_x: jax.Array, a_h: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
        a_r, a_z, a_n = jnp.split(a_x, 3, axis=-1)
        u_r, u_z, u_n = jnp.split(a_h, 3, axis=-1)  # u_n includes b_hn
        r = jax.nn.sigmoid(a_r + u_r)
        z = jax.nn.sigmoid(a_z + u_z)
        n = jnp.tanh(a_n + r * u_n)
        h = (1.0 - z) * n + z * carry
        return h, h

    def recurrent_bias(self) -> jax.Array:
        return _pad(self.variables["params"]["recurrent_bias"])


def _pad(b_hn: jax.Array) -> jax.Array:
    """b_h = [0, 0, b_hn] (3H,): the recurrent bias reaches the n gate only (adding 0 is exact)."""
    return jnp.concatenate([jnp.zeros((2 * b_hn.shape[-1],), b_hn.dtype), b_hn])

"""Independently recurrent neural network (IndRNN): a diagonal recurrent weight per unit."""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell


class IndRNNCell(Cell):
    r"""IndRNN (Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network").

    Equations, for input x (..., I) and carry h (..., H)::

        h' = relu(x W + b + u * h)      y = h'          (u * h elementwise: each unit sees only itself)

    Parameters: ``input_kernel`` W (I, H), lecun-normal; ``recurrent_weight`` u (H,),
    U[0, 1] (the paper's reference code); ``bias`` b (H,), zeros. Carry: h, zeros at init.

    ``max_recurrent`` (default 0 = off) bounds the recurrence as the paper does, |u| <= max_recurrent;
    the paper's adding setting is 2**(1/T) (a gradient through T steps grows at most 2x). Here the
    bound is applied in the step, u' = clip(u, -max, max) (the reference code clips the weights after
    each optimiser step instead: the same function, but a weight past the bound here gets zero
    gradient until the optimiser moves it back, which nothing does; use a bound that the U[0, 1]
    init already satisfies, and u starts at U[0, max_recurrent] when max_recurrent < 1).

    ``input_std`` > 0 draws W from N(0, input_std^2) instead: the reference adding script
    (Sunnydreamrain/IndRNN_Theano_Lasagne, adding/adding.py) uses 0.001, so that a unit summing
    T positive inputs through u ~ 1 starts near zero rather than at O(T).
    """

    max_recurrent: float = 0.0
    input_std: float = 0.0

    def __post_init__(self) -> None:
        if not self.max_recurrent >= 0:
            raise ValueError(f"max_recurrent must be >= 0 (0 = no bound); got {self.max_recurrent!r}")
        if not self.input_std >= 0:
            raise ValueError(f"input_std must be >= 0 (0 = lecun-normal); got {self.input_std!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        H, bound = self.hidden_size, self.max_recurrent
        high = min(1.0, bound) if bound else 1.0
        W_init = nn.initializers.normal(self.input_std) if self.input_std else nn.initializers.lecun_normal()
        W = self.param("input_kernel", W_init, (x.shape[-1], H))
        u = self.param("recurrent_weight", lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, 0.0, high), (H,))
        b = self.param("bias", nn.initializers.zeros_init(), (H,))
        if bound:
            u = jnp.clip(u, -bound, bound)
        h = jax.nn.relu(x @ W + b + u * carry)
        return h, h

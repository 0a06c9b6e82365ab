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

    ``max_recurrent`` b (default 0 = off) bounds the recurrence as the paper does, |u| <= b; the
    paper's adding setting is b = 2**(1/T) (a gradient through T steps grows at most 2x), which
    ``bound_steps=T`` sets. The bound holds twice: u is clipped in the step, and the cell declares
    it in ``param_bounds``, so the optimiser (`experiments.build.project`) clips the weight after
    each update as the reference code does (a weight pushed past the bound stays trainable).

    ``recurrent_init``: ``uniform`` (default) draws u ~ U[0, min(1, b)] (U[0, 1] without a bound;
    the reference draws U(0, 2^(1/T)), an upper end 0.07% higher at T = 1000); ``near_one`` draws
    u ~ U[1/b, b] (needs a bound), the reference adding script's init of the last layer, so that
    the top layer starts carrying its input across all T steps. Stacked, a per-layer value
    (``--cell_options=recurrent_init=uniform|near_one``, `cells.make_cell`) gives each layer its own.

    ``input_std`` > 0 draws W from N(0, input_std^2) instead: the reference adding script
    (Sunnydreamrain/IndRNN_Theano_Lasagne, adding/adding.py) uses 0.001, so that a unit summing
    T positive inputs through u ~ 1 starts near zero rather than at O(T).
    """

    max_recurrent: float = 0.0
    input_std: float = 0.0
    bound_steps: int = 0
    recurrent_init: str = "uniform"

    def __post_init__(self) -> None:
        if not self.max_recurrent >= 0:
            raise ValueError(f"max_recurrent must be >= 0 (0 = no bound); got {self.max_recurrent!r}")
        if isinstance(self.bound_steps, bool) or not isinstance(self.bound_steps, int) or self.bound_steps < 0:
            raise ValueError(f"bound_steps must be an integer >= 0 (0 = off); got {self.bound_steps!r}")
        if self.bound_steps and self.max_recurrent:
            raise ValueError("give max_recurrent or bound_steps, not both")
        if self.recurrent_init not in ("uniform", "near_one"):
            raise ValueError(f"recurrent_init must be one of uniform, near_one; got {self.recurrent_init!r}")
        if self.recurrent_init == "near_one" and not self.bound:
            raise ValueError("recurrent_init=near_one draws U[1/b, b]: it needs max_recurrent or bound_steps")
        if not self.input_std >= 0:
            raise ValueError(f"input_std must be >= 0 (0 = lecun-normal); got {self.input_std!r}")
        super().__post_init__()

    @property
    def bound(self) -> float:
        """b: |u| <= b (0 = unbounded); 2^(1/bound_steps) when bound_steps is set."""
        return 2.0 ** (1.0 / self.bound_steps) if self.bound_steps else float(self.max_recurrent)

    @property
    def param_bounds(self) -> dict[str, float]:
        return {"recurrent_weight": self.bound} if self.bound else {}

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        H, bound = self.hidden_size, self.bound
        low, high = (1.0 / bound, bound) if self.recurrent_init == "near_one" else (0.0, min(1.0, bound or 1.0))
        W_init = nn.initializers.normal(self.input_std) if self.input_std else nn.initializers.lecun_normal()
        W = self.param("input_kernel", W_init, (x.shape[-1], H))
        u = self.param("recurrent_weight", lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, low, high), (H,))
        b = self.param("bias", nn.initializers.zeros_init(), (H,))
        if bound:
            u = jnp.clip(u, -bound, bound)
        h = jax.nn.relu(x @ W + b + u * carry)
        return h, h

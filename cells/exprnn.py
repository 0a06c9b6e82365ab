"""expRNN: an orthogonal recurrent matrix exp(A), A skew-symmetric, with the modReLU nonlinearity."""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.initializers import check_choice

SKEW_INITS = ("henaff", "cayley")


def skew_block_init(name: str):
    """Initialiser of an (H, H) skew-symmetric A with 2 x 2 blocks [[0, s], [-s, 0]] on the diagonal.

    ``henaff``: s ~ U[-pi, pi] (Henaff, Szlam & LeCun 2016), so exp(A) rotates each pair of units by s.
    ``cayley``: s = -sqrt((1 - cos t) / (1 + cos t)) = -tan(t / 2), t ~ U[0, pi/2] (Helfrich, Willmott &
    Ye 2018). Both as expRNN's paper defines them (Lezcano-Casado & Martinez-Rubio 2019). An
    odd H leaves the last unit's row and column zero (exp(A) = 1 there).
    """
    check_choice("recurrent_init", name, SKEW_INITS)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        n = shape[0] // 2
        if name == "henaff":
            s = jax.random.uniform(key, (n,), dtype, -math.pi, math.pi)
        else:
            t = jax.random.uniform(key, (n,), dtype, 0.0, math.pi / 2)
            s = -jnp.sqrt((1.0 - jnp.cos(t)) / (1.0 + jnp.cos(t)))
        rows = 2 * jnp.arange(n)
        A = jnp.zeros(shape, dtype).at[rows, rows + 1].set(s)
        return A - A.T

    return init


def orthogonal(skew_parameter: jax.Array) -> jax.Array:
    """exp(A) with A = triu(P, 1) - triu(P, 1)^T: orthogonal (det 1) for any square P."""
    upper = jnp.triu(skew_parameter, k=1)
    return jax.scipy.linalg.expm(upper - upper.T)


def modrelu(a: jax.Array, b: jax.Array) -> jax.Array:
    """modReLU (Arjovsky et al. 2016) for real a: sign(a) * relu(|a| + b)."""
    return jnp.sign(a) * jax.nn.relu(jnp.abs(a) + b)


class ExpRNNCell(Cell):
    r"""expRNN (Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal Constraints in Neural Networks", ICML).

    Equations, for input x (..., I) and carry h (..., H)::

        B = exp(A),  A = triu(P, 1) - triu(P, 1)^T          (orthogonal: B^T B = I)
        h' = modReLU(x W + h B, b) = sign(a) * relu(|a| + b),  a = x W + h B      y = h'

    Parameters: ``input_kernel`` W (I, H), He normal (variance 2/I, the reference code's kaiming
    init); ``recurrent_skew`` P (H, H), stored as the skew-symmetric A it starts at (only its strict
    upper triangle is used, so the lower one has zero gradient); ``bias`` b (H,), the modReLU
    bias, U[-0.01, 0.01]. Carry: h, zeros at initialisation. No bias inside modReLU's argument.

    ``recurrent_init``: ``henaff`` (default) or ``cayley`` (see `skew_block_init`). The paper trains
    P with its own learning rate (lr/10 in its copy experiments): it is a separate parameter,
    ``recurrent_skew``, so an optimiser can address it.

    ``sequence``, the whole-sequence method, computes exp(A) once for all T steps (the step computes
    it at every call); the recurrence itself is a sequential scan, as in the step.
    """

    # Its whole-sequence method computes exp(A) once, the step at every step: 8x as fast on CPU.
    sequence_backends = ("cpu", "gpu", "cuda", "rocm", "tpu")

    recurrent_init: str = "henaff"

    def __post_init__(self) -> None:
        check_choice("recurrent_init", self.recurrent_init, SKEW_INITS)
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        H = self.hidden_size
        W = self.param("input_kernel", nn.initializers.variance_scaling(2.0, "fan_in", "normal"), (x.shape[-1], H))
        P = self.param("recurrent_skew", skew_block_init(self.recurrent_init), (H, H))
        b = self.param("bias", lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, -0.01, 0.01), (H,))
        h = modrelu(x @ W + carry @ orthogonal(P), b)
        return h, h

    def sequence(self, carry: jax.Array, xs: jax.Array, perturbations: jax.Array | None = None, unroll: int = 1):
        """All T steps: xs (T, ..., I) -> (final h, ys (T, ..., H)); exp(A) computed once.

        Needs bound parameters (created by the step at init). `perturbations` (T, ..., H) is added
        to the carry entering each step, as in `experiments.model`.
        """
        p = self.variables["params"]
        W, B, b = p["input_kernel"], orthogonal(p["recurrent_skew"]), p["bias"]

        def step(h: jax.Array, inp: tuple[jax.Array, jax.Array | None]) -> tuple[jax.Array, jax.Array]:
            x, eps = inp
            h = modrelu(x @ W + (h if eps is None else h + eps) @ B, b)
            return h, h

        return jax.lax.scan(step, carry, (xs, perturbations), unroll=unroll)

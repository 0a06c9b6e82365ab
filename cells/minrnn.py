r"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

Gates that read only the input make the recurrence linear in h, h' = a(x) * h + b(x), so a
whole sequence is one parallel scan. These are the paper's log-space variants: the candidate
goes through g, a positive map (g(v) = v + 1/2 for v >= 0, sigmoid(v) below; continuous at 0),
and the gate coefficients are the paper's exponentials of log-space quantities,
1 - sigmoid(k) = exp(-softplus(k)), sigmoid(k) = exp(-softplus(-k)), which stay accurate where a
gate saturates (1 - sigmoid(k) would cancel). `gate_pair` computes both from one exp(-|k|), with
the same accuracy (each is 1 / (1 + e) or e / (1 + e), never 1 minus the other) and derivative.

The whole-sequence method scans the pairs (a_t, b_t) with `jax.lax.associative_scan` (`cells.scan`),
not the paper's log-space scan (cumulative sum of log a plus a logcumsumexp): the pair scan never
divides by a cumulative product, so it needs no log space to stay finite, and it also takes a zero
or signed carry (the initial zeros, the diagnostics' perturbations), which log h cannot. The two
compute the same recurrence; tests check the scan against the step in float64 to 1e-10.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.initializers import check_chrono, chrono_bias
from cells.scan import linear_recurrence


@jax.custom_jvp
def gate_pair(k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sigmoid(-k), sigmoid(k)) = (exp(-softplus(k)), exp(-softplus(-k))) from one exp(-|k|).

    Both are exact to rounding at any k (neither is 1 minus the other, which would cancel where a
    gate saturates), and so is the derivative d sigmoid(k)/dk = sigmoid(k) sigmoid(-k): the
    accuracy of the log-space form at a third of its elementwise work.
    """
    e = jnp.exp(-jnp.abs(k))
    big, small = 1 / (1 + e), e / (1 + e)  # sigmoid(|k|), sigmoid(-|k|)
    positive = k >= 0
    return jnp.where(positive, small, big), jnp.where(positive, big, small)


@gate_pair.defjvp
def _gate_pair_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[tuple, tuple]:
    (k,), (dk,) = primals, tangents
    lo, hi = gate_pair(k)
    slope = lo * hi * dk
    return (lo, hi), (-slope, slope)


@jax.custom_jvp
def softplus(x: jax.Array) -> jax.Array:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), finite for finite x; derivative sigmoid(x)."""
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (x,), (dx,) = primals, tangents
    return softplus(x), gate_pair(x)[1] * dx


def g(v: jax.Array) -> jax.Array:
    """The paper's positive map: v + 1/2 for v >= 0, sigmoid(v) for v < 0."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


class _MinRNN(Cell):
    """Shared body: an input projection into `num_blocks` blocks, coefficients, a linear recurrence."""

    num_blocks = 2
    time_chunkable = True
    chrono_blocks = (None, 0)  # the (keep, write) gate blocks of chrono_bias

    chrono_tmax: float = 0.0

    def __post_init__(self) -> None:
        check_chrono(self.chrono_tmax)
        super().__post_init__()

    @nn.nowrap
    def coefficients(self, a_x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, b) of h' = a * h + b from the input projection x W + b."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        G = self.num_blocks * self.hidden_size
        W = self.param("input_kernel", nn.initializers.lecun_normal(), (x.shape[-1], G))
        bias_init = nn.initializers.zeros_init()
        if self.chrono_tmax:
            bias_init = chrono_bias(self.chrono_tmax, self.num_blocks, *self.chrono_blocks)
        bias = self.param("bias", bias_init, (G,))
        a, b = self.coefficients(x @ W + bias)
        h = a * carry + b
        return h, h

    def sequence(
        self,
        carry: jax.Array,
        xs: jax.Array,
        perturbations: jax.Array | None = None,
        unroll: int = 1,
        last_only: bool = False,
        scan: str = "associative",
    ) -> tuple[jax.Array, jax.Array]:
        """All T steps by one linear-recurrence scan: xs (T, ..., I) -> (final h, ys (T, ..., H)).

        Needs bound parameters (created by the step at init). `perturbations` (T, ..., H) is added
        to the carry entering each step, as in `experiments.model`; `unroll` is unused (no loop).
        `last_only`: ys is the last output (..., H) alone. `scan`: `cells.scan.linear_recurrence`'s
        method.
        """
        del unroll
        p = self.variables["params"]
        a, b = self.coefficients(xs @ p["input_kernel"] + p["bias"])
        hs = linear_recurrence(a, b, carry, perturbations, scan)
        return hs[-1], (hs[-1] if last_only else hs)


class MinGRUCell(_MinRNN):
    r"""minGRU, log-space variant (Feng et al. 2024).

    Equations, for input x (..., I) and carry h (..., H)::

        [k, v] = x W + b                    (block order z, h~)
        z = sigmoid(k)      h~ = g(v)       (g: positive map, v + 1/2 for v >= 0, else sigmoid(v))
        h' = (1 - z) * h + z * h~           y = h'

    computed as a = exp(-softplus(k)) = 1 - z and b = exp(-softplus(-k)) * g(v) = z * h~ (both
    exponentials by `gate_pair`).

    Parameters: ``input_kernel`` W (I, 2H), lecun-normal; ``bias`` b (2H,), zeros (the paper's code
    uses PyTorch's default linear init; the paper states none). Carry: h, zeros at init. No
    output projection (the paper's models add one around the cell). ``sequence``: one associative
    scan over time (see the module docstring).

    ``chrono_tmax=T_max`` (default 0 = off) applies the chrono initialisation (Tallec & Ollivier
    2018) to the update gate, an option of this lab (not of the paper): the z block of b starts at
    -log(u), u ~ U[1, T_max - 1], so 1 - z = u / (1 + u) keeps h over about 1 + u steps. At the
    zero bias z = 1/2 and h forgets in about two steps, so a gradient from T steps away starts at
    2^-T.
    """

    num_blocks = 2

    @nn.nowrap
    def coefficients(self, a_x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k, v = jnp.split(a_x, 2, axis=-1)
        keep, write = gate_pair(k)  # exp(-softplus(k)), exp(-softplus(-k))
        return keep, write * g(v)


class MinLSTMCell(_MinRNN):
    r"""minLSTM, log-space variant with normalised gates (Feng et al. 2024).

    Equations, for input x (..., I) and carry h (..., H)::

        [k_f, k_i, v] = x W + b             (block order f, i, h~)
        f = sigmoid(k_f)    i = sigmoid(k_i)    h~ = g(v)
        f' = f / (f + i)    i' = i / (f + i)                (time-independent scale of h)
        h' = f' * h + i' * h~               y = h'

    computed in log space: d = softplus(-k_f) - softplus(-k_i) (= log i - log f), so
    f' = exp(-softplus(d)) and i' = exp(-softplus(-d)) (by `gate_pair`).

    Parameters: ``input_kernel`` W (I, 3H), lecun-normal; ``bias`` b (3H,), zeros (the paper's
    ``forget_bias_init_scale`` option is not provided). Carry: h, zeros at init. ``sequence``: one
    associative scan over time (see the module docstring).

    ``chrono_tmax=T_max`` (default 0 = off): chrono initialisation (Tallec & Ollivier 2018), an
    option of this lab: the f block of b starts at log(u) and the i block at -log(u),
    u ~ U[1, T_max - 1], so f' = u / (1 + u) keeps h over about 1 + u steps.
    """

    num_blocks = 3
    chrono_blocks = (0, 1)

    @nn.nowrap
    def coefficients(self, a_x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_f, k_i, v = jnp.split(a_x, 3, axis=-1)
        d = softplus(-k_f) - softplus(-k_i)
        keep, write = gate_pair(d)  # exp(-softplus(d)), exp(-softplus(-d))
        return keep, write * g(v)

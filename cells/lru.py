"""Linear Recurrent Unit (LRU): a complex diagonal linear recurrence, exponentially parametrised."""

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cells.base import Cell
from cells.scan import linear_recurrence

Params = dict[str, Any]


def _uniform(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    # U(0, 1) kept off 0, whose log would be -inf (a lambda of exactly 0 or a phase of exactly 0)
    return jnp.maximum(jax.random.uniform(key, shape, dtype), jnp.finfo(dtype).tiny)


def _lambda(p: Params) -> jax.Array:
    """lambda = exp(-exp(nu_log) + i exp(theta_log)) (N,): modulus exp(-exp(nu_log)) < 1, phase exp(theta_log)."""
    return jnp.exp(jax.lax.complex(-jnp.exp(p["nu_log"]), jnp.exp(p["theta_log"])))


def _drive(p: Params, x: jax.Array) -> jax.Array:
    """gamma * (x B) (..., N), complex; x is real, so the product is two real matmuls."""
    gamma = jnp.exp(p["gamma_log"])
    return gamma * jax.lax.complex(x @ p["B_re"], x @ p["B_im"])


def _readout(p: Params, h: jax.Array, x: jax.Array) -> jax.Array:
    """y = Re(h C) + x D (..., H), real."""
    return h.real @ p["C_re"] - h.imag @ p["C_im"] + x @ p["D"]


BLOCKS = ("none", "glu")


def _block_in(p: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(u, z): u = x E (or x), z = LayerNorm(u) (..., H), eps 1e-5 as flax's LayerNorm."""
    u = x @ p["encoder"] if "encoder" in p else x
    mean = u.mean(-1, keepdims=True)
    var = jnp.square(u - mean).mean(-1, keepdims=True)
    return u, (u - mean) * jax.lax.rsqrt(var + 1e-5) * p["norm_scale"] + p["norm_bias"]


def _block_out(p: Params, u: jax.Array, y: jax.Array) -> jax.Array:
    """u + GLU(gelu(y)) (..., H)."""
    a, b = jnp.split(jax.nn.gelu(y) @ p["glu_kernel"] + p["glu_bias"], 2, axis=-1)
    return u + a * jax.nn.sigmoid(b)


def _complex(carry: jax.Array) -> jax.Array:
    """The real carry [Re h, Im h] (..., 2N) as the complex state h (..., N)."""
    n = carry.shape[-1] // 2
    return jax.lax.complex(carry[..., :n], carry[..., n:])


def _real(h: jax.Array) -> jax.Array:
    return jnp.concatenate([h.real, h.imag], axis=-1)


class LRUCell(Cell):
    r"""LRU (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, "Resurrecting Recurrent Neural
    Networks for Long Sequences", ICML).

    Equations, for input x (..., I), complex state h (..., N), output y (..., H)::

        lambda = exp(-exp(nu_log) + i exp(theta_log))                 (N,), |lambda| < 1
        h' = lambda * h + exp(gamma_log) * (x (B_re + i B_im))        elementwise in N
        y = Re(h' (C_re + i C_im)) + x D                               real, (..., H)

    The output is the paper's linear readout, with no nonlinearity: one LRU is a linear
    time-invariant filter of its inputs (the paper puts an MLP/GLU between stacked LRUs).

    Carry: the complex state stored as one real array (..., 2N) = [Re h, Im h], zeros at init (a
    real carry keeps every consumer of carries, the gradient diagnostics' perturbations included,
    on real arrays; ||dL/dcarry|| is the norm of the complex gradient).

    Parameters and the paper's init: ``nu_log``, ``theta_log`` (N,) from u1, u2 ~ U[0, 1]:
    |lambda|^2 ~ U[r_min^2, r_max^2] (uniform on the ring), phase = max_phase * u2;
    ``gamma_log`` (N,) = log sqrt(1 - |lambda|^2) (the normalisation, trained as in the paper);
    ``B_re``, ``B_im`` (I, N) ~ N(0, 1/(2I)); ``C_re``, ``C_im`` (N, H) ~ N(0, 1/N); ``D`` (I, H)
    ~ N(0, 1/I). The paper's D is diagonal (H,) ~ N(0, 1), its layers mapping H to H; here the
    input width I need not equal H, so D is a dense skip connection with the same output scale.

    Options: ``state_size`` N (0 = ``hidden_size``), ``r_min`` 0, ``r_max`` 1, ``max_phase`` 2 pi
    (the paper's defaults; it uses r_min 0.9, r_max 0.999 and a smaller max_phase on its long-range
    tasks).

    ``block=glu`` wraps the LRU in the paper's layer (its Sec. 3 / App. D architecture, as in the
    JAX reference NicolasZucchet/minimal-LRU, lru/model.py): pre-norm, GELU, a gated linear unit
    and a residual connection, all pointwise in time::

        u = x E  (E (I, H), only when I != H: the encoder)      else u = x
        z = LayerNorm(u)                                        (scale, bias (H,))
        v = gelu(LRU(z))                                        the recurrence above, input z
        y = u + (v K_a + k_a) * sigmoid(v K_b + k_b)            (K (H, 2H), k (2H,))

    Stacked (``--num_layers``), this is the paper's deep LRU: without it a stack of LRUs is linear
    in its inputs (and a linear predictor's MSE on the adding task is at least 1/6 - 1/(3T)).
    Extra parameters: ``encoder`` (lecun-normal), ``norm_scale`` (ones), ``norm_bias`` (zeros),
    ``glu_kernel`` (lecun-normal), ``glu_bias`` (zeros). The readout's D then maps z (H) to H.

    ``sequence`` runs all T steps as one `jax.lax.associative_scan` (`cells.scan`): the recurrence
    is linear, so a carry perturbation eps_t enters as lambda * eps_t added to the drive.
    """

    time_chunkable = True
    # the whole-sequence method in chunks of time beat the step scan on a CPU too (experiments.policy)
    sequence_backends = ("cpu", "gpu", "cuda", "rocm", "tpu")

    state_size: int = 0
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    block: str = "none"

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}; got {self.block!r}")
        if not 0.0 <= self.r_min <= self.r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min <= r_max <= 1; got r_min={self.r_min!r}, r_max={self.r_max!r}")
        if not self.max_phase > 0:
            raise ValueError(f"max_phase must be > 0; got {self.max_phase!r}")
        if not (isinstance(self.state_size, int) and self.state_size >= 0):
            raise ValueError(f"state_size must be an integer >= 0 (0 = hidden_size); got {self.state_size!r}")
        super().__post_init__()

    @property
    def num_states(self) -> int:
        return self.state_size or self.hidden_size

    @nn.nowrap
    def _params(self, input_size: int) -> Params:
        N, H, I = self.num_states, self.hidden_size, input_size
        r_min, r_max = self.r_min, self.r_max

        def nu_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
            modulus_squared = _uniform(key, shape, dtype) * (r_max**2 - r_min**2) + r_min**2
            return jnp.log(-0.5 * jnp.log(modulus_squared))

        def theta_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
            return jnp.log(self.max_phase * _uniform(key, shape, dtype))

        def gamma_init(key: jax.Array, nu_log: jax.Array) -> jax.Array:
            del key  # 1 - |lambda|^2 = 1 - exp(-2 exp(nu_log)), computed without cancellation
            return 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))

        def normal(scale: float) -> nn.initializers.Initializer:
            return nn.initializers.variance_scaling(scale, "fan_in", "normal")

        p = {"nu_log": self.param("nu_log", nu_init, (N,)), "theta_log": self.param("theta_log", theta_init, (N,))}
        p["gamma_log"] = self.param("gamma_log", gamma_init, p["nu_log"])
        for name in ("B_re", "B_im"):
            p[name] = self.param(name, normal(0.5), (I, N))  # variance 1/(2I)
        for name in ("C_re", "C_im"):
            p[name] = self.param(name, normal(1.0), (N, H))  # variance 1/N
        p["D"] = self.param("D", normal(1.0), (I, H))  # variance 1/I
        return p

    @nn.nowrap
    def _block_params(self, input_size: int) -> Params:
        H = self.hidden_size
        p = {}
        if input_size != H:
            p["encoder"] = self.param("encoder", nn.initializers.lecun_normal(), (input_size, H))
        p["norm_scale"] = self.param("norm_scale", nn.initializers.ones_init(), (H,))
        p["norm_bias"] = self.param("norm_bias", nn.initializers.zeros_init(), (H,))
        p["glu_kernel"] = self.param("glu_kernel", nn.initializers.lecun_normal(), (H, 2 * H))
        p["glu_bias"] = self.param("glu_bias", nn.initializers.zeros_init(), (2 * H,))
        return p

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.block == "none":
            p = self._params(x.shape[-1])
            h = _lambda(p) * _complex(carry) + _drive(p, x)
            return _real(h), _readout(p, h, x)
        q = self._block_params(x.shape[-1])
        u, z = _block_in(q, x)
        p = self._params(z.shape[-1])
        h = _lambda(p) * _complex(carry) + _drive(p, z)
        return _real(h), _block_out(q, u, _readout(p, h, z))

    def sequence(
        self,
        carry: jax.Array,
        xs: jax.Array,
        perturbations: jax.Array | None = None,
        unroll: int = 1,
        last_only: bool = False,
        scan: str = "associative",
    ) -> tuple[jax.Array, jax.Array]:
        """All T steps by one linear-recurrence scan: xs (T, ..., I) -> (final carry, ys (T, ..., H)).

        Needs bound parameters (created by the step at init). `perturbations` (T, ..., 2N) is added
        to the carry entering each step, as in `experiments.model`; `unroll` is unused (no loop).
        `last_only`: ys is the last output (..., H) alone (the readout is not applied at the other
        steps). `scan`: `cells.scan.linear_recurrence`'s method.
        """
        del unroll
        p = self.variables["params"]
        u, xs = (xs, xs) if self.block == "none" else _block_in(p, xs)
        eps = None if perturbations is None else _complex(perturbations)
        hs = linear_recurrence(_lambda(p), _drive(p, xs), _complex(carry), eps, scan)
        h_last = hs[-1]
        if last_only:  # the readout (and block) at the last step alone
            hs, xs, u = hs[-1], xs[-1], u[-1]
        ys = _readout(p, hs, xs)
        return _real(h_last), ys if self.block == "none" else _block_out(p, u, ys)

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        del rng  # deterministic: zeros
        return jnp.zeros(input_shape[:-1] + (2 * self.num_states,))

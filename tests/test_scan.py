"""The linear-recurrence scan (custom_vjp, reverse scan as its backward pass) against autodiff of a step
scan at long T; the gate pairs of minGRU/minLSTM; time chunks; last-only outputs; the precision policy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cells import make_cell
from cells.minrnn import gate_pair, softplus
from cells.scan import METHODS, linear_recurrence
from experiments import policy
from experiments.config import Config, ConfigError
from experiments.model import SequenceModel
from experiments.validation import validate

LONG = 4096


def step_scan(a: jax.Array, b: jax.Array, h0: jax.Array, eps: jax.Array) -> jax.Array:
    """The reference: h_t = a_t (h_{t-1} + eps_t) + b_t by `lax.scan` of one step, differentiated by autodiff."""
    a = jnp.broadcast_to(a, b.shape)

    def step(h: jax.Array, x: tuple) -> tuple[jax.Array, jax.Array]:
        a_t, b_t, e_t = x
        h = a_t * (h + e_t) + b_t
        return h, h

    return jax.lax.scan(step, h0, (a, b, eps))[1]


def _inputs(dtype: type, complex_: bool, time_invariant: bool, length: int = LONG, batch: int = 2, n: int = 3):
    """NumPy arrays of `dtype` (complex: its complex type): a, b, h0, eps and the loss weights w."""
    rng = np.random.default_rng(0)
    # |a| in [0.99, 0.9999]: contributions from thousands of steps back still count
    a = rng.uniform(0.99, 0.9999, (n,) if time_invariant else (length, batch, n))
    b, eps, w = (
        rng.normal(size=(length, batch, n)),
        0.1 * rng.normal(size=(length, batch, n)),
        rng.normal(size=(length, batch, n)),
    )
    h0 = rng.normal(size=(batch, n))
    out_type = dtype
    if complex_:
        a = a * np.exp(1j * rng.uniform(0, 0.3, a.shape))
        b, h0, eps = (x + 1j * rng.normal(size=x.shape) for x in (b, h0, eps))
        out_type = np.complex128 if dtype == np.float64 else np.complex64
    return (*(x.astype(out_type) for x in (a, b, h0, eps)), w.astype(dtype))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "dtype,complex_,time_invariant",
    [(np.float64, False, False), (np.float32, False, False), (np.float64, True, True), (np.float32, True, True)],
)
def test_values_and_gradients_equal_autodiff_of_the_step_scan_at_long_t(method, dtype, complex_, time_invariant):
    """T = 4096: every h_t and the gradients w.r.t. a (time-varying, or lru's time-invariant complex
    lambda), b, h_0 and eps equal autodiff through a scan of the step: 1e-10 in float64, 2e-4 in float32."""
    a, b, h0, eps, w = _inputs(dtype, complex_, time_invariant)

    def loss(fn):
        def f(a, b, h0, eps):
            h = fn(a, b, h0, eps)
            return jnp.sum(jnp.real(h * jnp.conj(h)) * w) if complex_ else jnp.sum(h * w)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))

    with jax.enable_x64(dtype == np.float64):
        a, b, h0, eps, w = (jnp.asarray(x) for x in (a, b, h0, eps, w))

        def ours(*x):
            return linear_recurrence(*x, method=method)

        h_ours, h_ref = jax.jit(ours)(a, b, h0, eps), jax.jit(step_scan)(a, b, h0, eps)
        (v_ours, g_ours), (v_ref, g_ref) = loss(ours)(a, b, h0, eps), loss(step_scan)(a, b, h0, eps)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    scale = float(jnp.max(jnp.abs(h_ref)))
    assert float(jnp.max(jnp.abs(h_ours - h_ref))) <= tol * scale
    assert abs(float(v_ours - v_ref)) <= tol * abs(float(v_ref))
    for name, got, want in zip(("a", "b", "h0", "eps"), g_ours, g_ref, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        err = float(jnp.max(jnp.abs(got - want))) / float(jnp.max(jnp.abs(want)))
        assert err <= tol, (name, err)


def test_backward_pass_keeps_only_a_and_h():
    """The custom_vjp keeps a and h (2 arrays of T x B x N) for the backward pass; autodiff through
    `associative_scan` keeps every level of its tree (several times more)."""
    a, b, h0, _, _ = _inputs(np.float32, False, False, length=1024)
    for method in METHODS:
        residuals = jax.eval_shape(
            lambda a, b, m=method: jax.vjp(lambda a, b: linear_recurrence(a, b, h0, method=m), a, b)[1], a, b
        )
        kept = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(residuals))
        assert kept <= 2.1 * b.size * b.dtype.itemsize, (method, kept / (b.size * b.dtype.itemsize))


@pytest.mark.parametrize("cell", ["lru", "mingru", "minlstm"])
@pytest.mark.parametrize("remat", [0, 300])
def test_model_sequence_path_equals_step_scan_at_long_t(cell, remat):
    """The model on its whole-sequence path (time chunks of 16, a ragged tail: T = 1000) equals the step
    scan's outputs and parameter gradients in float64, with and without --remat (chunks of 300)."""
    length, width = 1000, 3
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(1), (2, length, 2), jnp.float64)
        step = SequenceModel(make_cell(cell, width), num_outputs=1, readout="last", remat=remat, path="step")
        params = jax.tree.map(lambda p: p.astype(jnp.float64), step.init(jax.random.PRNGKey(0), x))

        def loss(m):
            return jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(m.apply(p, x)))))

        want = loss(step)(params)
        for chunk in (0, 16):
            seq = dataclasses.replace(step, path="sequence", time_chunk=chunk)
            got = loss(seq)(params)
            assert abs(float(got[0] - want[0])) <= 1e-10 * abs(float(want[0]))
            for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_all_outputs_under_time_chunks_equal_the_whole_sequence():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(1), (2, 37, 2), jnp.float64)
        whole = SequenceModel(make_cell("lru", 3), num_outputs=2, readout="all", path="sequence")
        params = jax.tree.map(lambda p: p.astype(jnp.float64), whole.init(jax.random.PRNGKey(0), x))
        chunked = dataclasses.replace(whole, time_chunk=8)
        np.testing.assert_allclose(chunked.apply(params, x), whole.apply(params, x), rtol=1e-12, atol=1e-12)


def test_lru_last_only_reads_out_the_last_step_alone():
    """last_only: the readout runs at the last step only, with the value of the full readout's last step."""
    cell = make_cell("lru", 3, "state_size=5")  # states (50, 2, 5), outputs (50, 2, 3)
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 2, 2))
    carry = cell.initialize_carry(jax.random.PRNGKey(0), x[0].shape)
    params = cell.init(jax.random.PRNGKey(0), carry, x[0])
    full = cell.apply(params, carry, x, method="sequence")[1]
    last = cell.apply(params, carry, x, method="sequence", last_only=True)[1]
    assert last.shape == full.shape[1:]
    np.testing.assert_allclose(last, full[-1], rtol=1e-6)
    jaxpr = str(jax.make_jaxpr(lambda p: cell.apply(p, carry, x, method="sequence", last_only=True))(params))
    assert "f32[50,2,5]" in jaxpr and "f32[50,2,3]" not in jaxpr  # no (T, B, H) output was computed


def test_gate_pair_and_softplus_are_as_accurate_as_the_log_space_form():
    """(sigmoid(-k), sigmoid(k)) and softplus, and their derivatives, equal float64 exp(-softplus(+-k)) to a few
    ulps in float32 at every k, saturated gates included (where 1 - sigmoid would cancel)."""
    k64 = np.concatenate([np.linspace(-80, 80, 4001), [-1e-8, 0.0, 1e-8]])
    k = jnp.asarray(k64, jnp.float32)
    k_exact = np.asarray(k, np.float64)  # the float32 inputs, exactly
    lo_ref, hi_ref = 1 / (1 + np.exp(k_exact)), 1 / (1 + np.exp(-k_exact))
    lo, hi = gate_pair(k)
    d_lo = jax.vmap(jax.grad(lambda k: gate_pair(k)[0]))(k)
    d_sp = jax.vmap(jax.grad(softplus))(k)
    tiny = np.finfo(np.float32).tiny
    for got, want in ((lo, lo_ref), (hi, hi_ref), (-d_lo, lo_ref * hi_ref), (d_sp, hi_ref)):
        ok = want > 1e3 * tiny
        np.testing.assert_allclose(np.asarray(got, np.float64)[ok], want[ok], rtol=3e-7 * 4)
    np.testing.assert_allclose(softplus(k), np.logaddexp(k_exact, 0), rtol=1e-6)
    assert float(lo[4000]) == pytest.approx(np.exp(-80.0), rel=1e-5)  # k = 80: no cancellation where saturated


def test_time_chunk_policy_and_cell_declarations():
    assert policy.time_chunk("cpu", True) == policy.CPU_TIME_CHUNK and policy.time_chunk("cpu", False) == 0
    assert policy.time_chunk("gpu", True) == 0
    assert make_cell("mingru", 4).time_chunkable and make_cell("lru", 4, num_layers=2).time_chunkable
    assert not make_cell("exprnn", 4).time_chunkable and not make_cell("lstm", 4).time_chunkable


def test_matmul_precision_policy_maps_tf32x3_on_gpu_and_refuses_it_elsewhere():
    assert policy.matmul_precision("gpu", "tf32x3") == "TF32_TF32_F32_X3"
    assert policy.matmul_precision("cpu", "highest") == "highest"
    with pytest.raises(ValueError, match=r"^--matmul_precision=tf32x3: .*needs a GPU; on cpu use one of highest"):
        policy.matmul_precision("cpu", "tf32x3")
    if jax.default_backend() == "cpu":
        with pytest.raises(ConfigError, match=r"^--matmul_precision=tf32x3: "):
            validate(Config(matmul_precision="tf32x3", seq_len=10, hidden_size=4))

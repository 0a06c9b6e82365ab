"""indrnn, cornn, lem, exprnn, lru, mingru, minlstm and chrono init: float64 NumPy references written
from the papers' equations, the whole-sequence method against the step scan, initial distributions."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import linen as nn

from cells import make_cell
from cells.base import Cell
from cells.scan import linear_recurrence
from experiments.cell_checks import CheckError, _Harness, check_sequence
from experiments.model import SequenceModel

T, B, I, H = 6, 2, 3, 4
RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(B, T, I))


# ----------------------------------------------------------------------------- NumPy references (float64)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def np_indrnn(p: dict, xs: np.ndarray, h: np.ndarray, bound: float = 0.0) -> tuple:
    """Li et al. 2018: h' = relu(W x + u * h + b), |u| <= bound when bound > 0."""
    u = np.clip(p["recurrent_weight"], -bound, bound) if bound else p["recurrent_weight"]
    ys = []
    for t in range(xs.shape[1]):
        h = np.maximum(xs[:, t] @ p["input_kernel"] + u * h + p["bias"], 0.0)
        ys.append(h)
    return h, np.stack(ys, 1)


def np_cornn(p: dict, xs: np.ndarray, carry: tuple, dt: float = 0.06, gamma: float = 66.0, eps: float = 15.0):
    """Rusch & Mishra 2021, eq. 3 with explicit damping: z_n = z + dt (tanh(W y + Wz z + V u + b) - gamma y - eps z);
    y_n = y + dt z_n. recurrent_kernel rows: the H rows of W (for y), then the H rows of Wz (for z)."""
    y, z = carry
    n = y.shape[-1]
    W, Wz = p["recurrent_kernel"][:n], p["recurrent_kernel"][n:]
    ys = []
    for t in range(xs.shape[1]):
        drive = np.tanh(y @ W + z @ Wz + xs[:, t] @ p["input_kernel"] + p["bias"])
        z = z + dt * (drive - gamma * y - eps * z)
        y = y + dt * z
        ys.append(y)
    return (y, z), np.stack(ys, 1)


def np_lem(p: dict, xs: np.ndarray, carry: tuple, dt: float = 0.0242) -> tuple:
    """Rusch et al. 2022, eq. 3: dt_n = dt s(W1 y + V1 u + b1), dt_bar = dt s(W2 y + V2 u + b2),
    z_n = (1 - dt_n) z + dt_n tanh(Wz y + Vz u + bz), y_n = (1 - dt_bar) y + dt_bar tanh(Wy z_n + Vy u + by).
    Blocks: input [dt_bar, dt, z, y]; recurrent [dt_bar, dt, z]."""
    y, z = carry
    n = y.shape[-1]
    V = [p["input_kernel"][:, k * n : (k + 1) * n] for k in range(4)]
    b = [p["bias"][k * n : (k + 1) * n] for k in range(4)]
    W = [p["recurrent_kernel"][:, k * n : (k + 1) * n] for k in range(3)]
    ys = []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        dt_bar = dt * _sigmoid(y @ W[0] + x @ V[0] + b[0])
        dt_n = dt * _sigmoid(y @ W[1] + x @ V[1] + b[1])
        z = (1 - dt_n) * z + dt_n * np.tanh(y @ W[2] + x @ V[2] + b[2])
        y = (1 - dt_bar) * y + dt_bar * np.tanh(z @ p["transition_kernel"] + x @ V[3] + b[3])
        ys.append(y)
    return (y, z), np.stack(ys, 1)


def np_exprnn(p: dict, xs: np.ndarray, h: np.ndarray) -> tuple:
    """Lezcano-Casado & Martinez-Rubio 2019: h' = modReLU(W x + exp(A) h), A = triu(P, 1) - triu(P, 1)^T;
    modReLU(a) = sign(a) relu(|a| + b). Row-vector convention: h exp(A)."""
    upper = np.triu(p["recurrent_skew"], 1)
    Bm = scipy.linalg.expm(upper - upper.T)
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ p["input_kernel"] + h @ Bm
        h = np.sign(a) * np.maximum(np.abs(a) + p["bias"], 0.0)
        ys.append(h)
    return h, np.stack(ys, 1)


def np_lru(p: dict, xs: np.ndarray, carry: np.ndarray) -> tuple:
    """Orvieto et al. 2023: lambda = exp(-exp(nu) + i exp(theta)), h' = lambda h + gamma (B x), y = Re(C h') + D x,
    with gamma = exp(gamma_log). The carry stores [Re h, Im h]."""
    n = carry.shape[-1] // 2
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    Bc, Cc = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    h = carry[:, :n] + 1j * carry[:, n:]
    ys = []
    for t in range(xs.shape[1]):
        h = lam * h + np.exp(p["gamma_log"]) * (xs[:, t] @ Bc)
        ys.append((h @ Cc).real + xs[:, t] @ p["D"])
    return np.concatenate([h.real, h.imag], -1), np.stack(ys, 1)


def np_lru_glu(p: dict, xs: np.ndarray, carry: np.ndarray) -> tuple:
    """The LRU inside the paper's layer (minimal-LRU): u = x E, z = LayerNorm(u), v = gelu(LRU(z)) (tanh form),
    y = u + (v K_a + k_a) * sigmoid(v K_b + k_b)."""
    u = xs @ p["encoder"] if "encoder" in p else xs
    z = (u - u.mean(-1, keepdims=True)) / np.sqrt(u.var(-1, keepdims=True) + 1e-5) * p["norm_scale"] + p["norm_bias"]
    h, y = np_lru(p, z, carry)
    v = 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))
    a, b = np.split(v @ p["glu_kernel"] + p["glu_bias"], 2, axis=-1)
    return h, u + a * _sigmoid(b)


def _g(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, v + 0.5, _sigmoid(v))


def np_mingru(p: dict, xs: np.ndarray, h: np.ndarray) -> tuple:
    """Feng et al. 2024: z = s(Linear_z x), h~ = g(Linear_h x), h' = (1 - z) h + z h~. Blocks [z, h~]."""
    n = h.shape[-1]
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ p["input_kernel"] + p["bias"]
        z, h_tilde = _sigmoid(a[:, :n]), _g(a[:, n:])
        h = (1 - z) * h + z * h_tilde
        ys.append(h)
    return h, np.stack(ys, 1)


def np_minlstm(p: dict, xs: np.ndarray, h: np.ndarray) -> tuple:
    """Feng et al. 2024: f, i = s(.), h~ = g(.), f' = f / (f + i), i' = i / (f + i), h' = f' h + i' h~.

    Blocks [f, i, h~]."""
    n = h.shape[-1]
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ p["input_kernel"] + p["bias"]
        f, i, h_tilde = _sigmoid(a[:, :n]), _sigmoid(a[:, n : 2 * n]), _g(a[:, 2 * n :])
        h = f / (f + i) * h + i / (f + i) * h_tilde
        ys.append(h)
    return h, np.stack(ys, 1)


# ----------------------------------------------------------------------------- float64 runs of both paths


def _float64_params(spec: str, options: str, seed: int) -> dict:
    """Cell parameters in float64, biases (and IndRNN's u) moved off their init so every term counts."""
    model = SequenceModel(make_cell(spec, H, options), num_outputs=2)
    params = model.init(jax.random.PRNGKey(seed), jnp.asarray(INPUTS, jnp.float32))["cell"]
    rng = np.random.default_rng(seed)
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for name in ("bias", "recurrent_weight"):
        if name in params:
            params[name] = params[name] + 0.5 * rng.normal(size=params[name].shape)
    return params


def _relative(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _assert_trees_close(got, want, tol: float, what: str) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        assert np.shape(a) == np.shape(b), f"{what}{jax.tree_util.keystr(path)}"
        assert _relative(a, b) < tol, f"{what}{jax.tree_util.keystr(path)}: relative error {_relative(a, b):.3g}"


def _runner(model: SequenceModel, cot):
    """Jitted (params, inputs, carry, eps) -> ((final carry, ys (B, T, H)), d<cot, outputs>/d(all four))."""

    def loss(params, inputs, carry, eps):
        out = model.unroll({"cell": params}, inputs, eps, carry)
        return sum(jnp.sum(o * w) for o, w in zip(jax.tree.leaves(out), jax.tree.leaves(cot), strict=True)), out

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))
    return lambda *args: (lambda value_out, grads: (value_out[1], grads))(*run(*args))


REFERENCES = {
    "indrnn": ("indrnn", "", np_indrnn),
    "indrnn_bounded": ("indrnn", "max_recurrent=1.1", functools.partial(np_indrnn, bound=1.1)),
    "cornn": ("cornn", "", np_cornn),
    "cornn_options": ("cornn", "dt=0.3,gamma=2.0,epsilon=0.5", functools.partial(np_cornn, dt=0.3, gamma=2.0, eps=0.5)),
    "lem": ("lem", "", np_lem),
    "lem_dt1": ("lem", "dt=1.0", functools.partial(np_lem, dt=1.0)),
    "exprnn_henaff": ("exprnn", "", np_exprnn),
    "lru": ("lru", "", np_lru),
    "lru_ring": ("lru", "state_size=3,r_min=0.5,r_max=0.99,max_phase=0.3", np_lru),
    "lru_glu": ("lru", "block=glu,r_min=0.9,r_max=0.999", np_lru_glu),
    "mingru": ("mingru", "", np_mingru),
    "minlstm": ("minlstm", "", np_minlstm),
}


@pytest.mark.parametrize("case", list(REFERENCES))
def test_matches_numpy_reference_float64_on_both_paths(case: str) -> None:
    """Every path the cell has (step scan; whole-sequence method) equals the NumPy reference to 1e-10,
    from a random initial carry; where the cell has a whole-sequence method, the two paths' gradients
    w.r.t. parameters, inputs, initial carry and carry perturbations agree to 1e-10 too."""
    spec, options, reference = REFERENCES[case]
    params = _float64_params(spec, options, seed=1)
    with jax.enable_x64(True):
        step = SequenceModel(make_cell(spec, H, options), num_outputs=2, path="step")
        seq = dataclasses.replace(step, path="sequence")
        rng = np.random.default_rng(2)
        template = step.initial_carry(jnp.asarray(INPUTS))
        carry = jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape)), template)
        want_carry, want_ys = reference(params, INPUTS, jax.tree.map(np.asarray, carry))
        if not seq.uses_sequence:
            got_carry, got_ys = jax.jit(lambda p, x, c: step.unroll({"cell": p}, x, carry=c))(params, INPUTS, carry)
            assert got_ys.dtype == jnp.float64
            _assert_trees_close((got_carry, got_ys), (want_carry, want_ys), 1e-10, f"{case} step vs numpy")
            return
        eps = jax.tree.map(lambda a: jnp.asarray(0.1 * rng.normal(size=(T,) + a.shape)), template)
        cot = (jax.tree.map(lambda a: rng.normal(size=a.shape), carry), rng.normal(size=want_ys.shape))
        run_step, run_seq = _runner(step, cot), _runner(seq, cot)
        for perturbations in (jax.tree.map(jnp.zeros_like, eps), eps):
            (step_out, step_grads), (seq_out, seq_grads) = (
                r(params, INPUTS, carry, perturbations) for r in (run_step, run_seq)
            )
            if perturbations is not eps:  # the references have no perturbations
                _assert_trees_close(step_out, (want_carry, want_ys), 1e-10, f"{case} step vs numpy")
                _assert_trees_close(seq_out, (want_carry, want_ys), 1e-10, f"{case} sequence vs numpy")
            _assert_trees_close(seq_out, step_out, 1e-10, f"{case} sequence vs step outputs")
            _assert_trees_close(seq_grads, step_grads, 1e-10, f"{case} sequence vs step gradients")
            assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(seq_grads))
            assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(seq_grads[3]))  # dL/d eps_t


@pytest.mark.parametrize("spec", ["mingru"])
def test_sequence_path_under_remat_and_last_readout(spec: str) -> None:
    """The whole-sequence method runs chunk by chunk under --remat (T=6 in chunks of 4: a ragged tail)."""
    params = _float64_params(spec, "", seed=3)
    with jax.enable_x64(True):
        step = SequenceModel(make_cell(spec, H), num_outputs=2, readout="last", remat=4, path="step")
        seq = dataclasses.replace(step, path="sequence")
        full = {
            "cell": params,
            "readout": jax.tree.map(
                lambda a: jnp.asarray(a, jnp.float64), step.init(jax.random.PRNGKey(0), jnp.asarray(INPUTS))["readout"]
            ),
        }
        grads = [
            jax.jit(jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, jnp.asarray(INPUTS))))))(full)
            for m in (step, seq)
        ]
        _assert_trees_close(grads[1], grads[0], 1e-10, f"{spec} remat gradients")


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("length", [1, 5])
def test_linear_recurrence_matches_a_loop(dtype, length: int) -> None:
    rng = np.random.default_rng(4)

    def draw(*shape: int) -> np.ndarray:
        imaginary = 1j * rng.normal(size=shape) if dtype == np.complex128 else 0
        return (rng.normal(size=shape) + imaginary).astype(dtype)

    a, b, eps, h = 0.9 * draw(length, 2, 3), draw(length, 2, 3), draw(length, 2, 3), draw(2, 3)
    with jax.enable_x64(True):
        got = np.asarray(linear_recurrence(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h), jnp.asarray(eps)))
        time_invariant = np.asarray(linear_recurrence(jnp.asarray(a[0, 0]), jnp.asarray(b), jnp.asarray(h)))
    want, want_ti, h_ti = [], [], h
    for t in range(length):
        h = a[t] * (h + eps[t]) + b[t]
        h_ti = a[0, 0] * h_ti + b[t]
        want.append(h)
        want_ti.append(h_ti)
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(time_invariant, np.stack(want_ti), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- initial distributions


def _params(spec: str, options: str = "", width: int = H, seed: int = 0, input_size: int = I) -> dict:
    cell = make_cell(spec, width, options)
    x = jnp.ones((1, input_size))
    carry = cell.initialize_carry(jax.random.PRNGKey(0), x.shape)
    return jax.tree.map(np.asarray, jax.jit(cell.init)(jax.random.PRNGKey(seed), carry, x)["params"])


def test_indrnn_init() -> None:
    p = _params("indrnn", width=500)
    u = p["recurrent_weight"]
    assert u.shape == (500,) and u.min() >= 0 and u.max() <= 1 and 0.4 < u.mean() < 0.6
    np.testing.assert_array_equal(p["bias"], 0)
    bounded = _params("indrnn", "max_recurrent=0.5", width=500)["recurrent_weight"]
    assert bounded.min() >= 0 and bounded.max() <= 0.5 and bounded.max() > 0.45
    with pytest.raises(ValueError, match="max_recurrent must be >= 0"):
        make_cell("indrnn", H, "max_recurrent=-1")


def test_indrnn_bound_clips_in_the_step() -> None:
    cell = make_cell("indrnn", 3, "max_recurrent=1.5")
    p = {"input_kernel": jnp.zeros((1, 3)), "recurrent_weight": jnp.array([3.0, -3.0, 0.5]), "bias": jnp.zeros(3)}
    h, _ = cell.apply({"params": p}, jnp.ones((1, 3)), jnp.zeros((1, 1)))
    np.testing.assert_allclose(h, [[1.5, 0.0, 0.5]])  # relu(clip(u) * 1)


def test_cornn_and_lem_init_bounds() -> None:
    cornn = _params("cornn", width=16)
    assert cornn["recurrent_kernel"].shape == (32, 16)
    for leaf in cornn.values():
        assert np.abs(leaf).max() <= 1 / math.sqrt(I + 32) and np.abs(leaf).max() > 0.8 / math.sqrt(I + 32)
    lem = _params("lem", width=16)
    shapes = {k: v.shape for k, v in lem.items()}
    assert shapes == {
        "input_kernel": (I, 64),
        "recurrent_kernel": (16, 48),
        "transition_kernel": (16, 16),
        "bias": (64,),
    }
    for leaf in lem.values():
        assert np.abs(leaf).max() <= 1 / 4 and np.abs(leaf).max() > 0.2


@pytest.mark.parametrize(
    "spec, options, match",
    [("cornn", "dt=0", "dt > 0"), ("cornn", "gamma=-1", "gamma >= 0"), ("lem", "dt=-0.1", "dt must be > 0")],
)
def test_oscillator_cells_reject_bad_options(spec: str, options: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_cell(spec, H, options)


@pytest.mark.parametrize("init, width", [("henaff", 6), ("cayley", 7)])
def test_exprnn_init_is_block_skew_and_orthogonal(init: str, width: int) -> None:
    p = _params("exprnn", f"recurrent_init={init}", width=width)
    A = p["recurrent_skew"]
    np.testing.assert_array_equal(A, -A.T)
    s = A[np.arange(0, width - 1, 2), np.arange(1, width, 2)]  # the 2x2 blocks' off-diagonal entries
    blocks = np.zeros_like(A)
    blocks[np.arange(0, width - 1, 2), np.arange(1, width, 2)] = s
    np.testing.assert_array_equal(A, blocks - blocks.T)  # nothing outside the blocks
    wide = _params("exprnn", f"recurrent_init={init}", width=100)["recurrent_skew"]
    s = wide[np.arange(0, 99, 2), np.arange(1, 100, 2)]
    if init == "henaff":  # U[-pi, pi]
        assert np.all(np.abs(s) <= math.pi) and s.min() < -2 and s.max() > 2
    else:  # -tan(t/2), t ~ U[0, pi/2]
        assert np.all((s >= -1) & (s <= 0)) and s.min() < -0.8 and s.max() > -0.2
    Bm = np.asarray(jax.scipy.linalg.expm(jnp.asarray(np.triu(A, 1) - np.triu(A, 1).T)))
    np.testing.assert_allclose(Bm.T @ Bm, np.eye(width), atol=1e-5)
    np.testing.assert_allclose(Bm @ Bm.T, np.eye(width), atol=1e-5)
    assert np.all(np.abs(p["bias"]) <= 0.01)
    assert p["input_kernel"].shape == (I, width)


def test_exprnn_rejects_unknown_init() -> None:
    with pytest.raises(ValueError, match="henaff, cayley"):
        make_cell("exprnn", H, "recurrent_init=orthogonal")


def test_lru_init() -> None:
    N = 2000
    p = _params("lru", f"state_size={N},r_min=0.4,r_max=0.9,max_phase=1.5", width=8, input_size=50)
    modulus, phase = np.exp(-np.exp(p["nu_log"])), np.exp(p["theta_log"])
    assert modulus.min() >= 0.4 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= 1.5 + 1e-6
    # |lambda|^2 uniform on [r_min^2, r_max^2]: mean (0.16 + 0.81) / 2, phase mean 0.75
    assert abs(np.mean(modulus**2) - 0.485) < 0.02 and abs(np.mean(phase) - 0.75) < 0.05
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-5)
    assert p["B_re"].shape == p["B_im"].shape == (50, N) and p["C_re"].shape == (N, 8) and p["D"].shape == (50, 8)
    np.testing.assert_allclose(np.var(p["B_re"]), 1 / 100, rtol=0.05)
    np.testing.assert_allclose(np.var(p["C_im"]), 1 / N, rtol=0.1)
    cell = make_cell("lru", 8, f"state_size={N}")
    assert cell.initialize_carry(jax.random.PRNGKey(0), (3, 50)).shape == (3, 2 * N)
    default = _params("lru", width=500)
    modulus = np.exp(-np.exp(default["nu_log"]))
    assert modulus.max() <= 1 and np.all(np.isfinite(default["gamma_log"]))
    assert np.exp(default["theta_log"]).max() <= 2 * math.pi


@pytest.mark.parametrize(
    "options, match",
    [("r_min=0.9,r_max=0.5", "r_min <= r_max"), ("r_max=1.5", "r_max <= 1"), ("max_phase=0", "max_phase")],
)
def test_lru_rejects_bad_options(options: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_cell("lru", H, options)


def test_chrono_init_lstm_and_gru() -> None:
    t_max, n = 100, 64
    lstm = _params("lstm", f"chrono_tmax={t_max}", width=n)["bias"]
    f = lstm[n : 2 * n]
    assert f.min() >= 0 and f.max() <= math.log(t_max - 1) + 1e-6 and f.max() > math.log(t_max - 1) - 0.3
    np.testing.assert_array_equal(lstm[:n], -f)  # input gate
    np.testing.assert_array_equal(lstm[2 * n :], 0)  # g, o
    gru = _params("gru", f"chrono_tmax={t_max}", width=n)
    z = gru["bias"][n : 2 * n]
    assert z.min() >= 0 and z.max() <= math.log(t_max - 1) + 1e-6
    np.testing.assert_array_equal(gru["bias"][:n], 0)  # r
    np.testing.assert_array_equal(gru["bias"][2 * n :], 0)  # n
    np.testing.assert_array_equal(gru["recurrent_bias"], 0)  # one bias: b_hn does not carry a second copy
    with pytest.raises(ValueError, match="chrono_tmax must be 0"):
        make_cell("lstm", H, "chrono_tmax=1.5")


def test_chrono_init_mingru_and_minlstm() -> None:
    """The gate that keeps h starts at u / (1 + u), u ~ U[1, T_max - 1]: forgetting times up to T_max."""
    t_max, n = 1000, 64
    mingru = _params("mingru", f"chrono_tmax={t_max}", width=n)["bias"]
    keep = jax.nn.sigmoid(-mingru[:n])  # 1 - z
    u = keep / (1 - keep)
    assert u.min() >= 1 - 1e-4 and u.max() <= t_max - 1 + 1e-2 and u.max() > (t_max - 1) * 0.8
    np.testing.assert_array_equal(mingru[n:], 0)  # the candidate block
    minlstm = _params("minlstm", f"chrono_tmax={t_max}", width=n)["bias"]
    f, i = jax.nn.sigmoid(minlstm[:n]), jax.nn.sigmoid(minlstm[n : 2 * n])
    np.testing.assert_allclose(f / (f + i), np.exp(minlstm[:n]) / (1 + np.exp(minlstm[:n])), rtol=1e-5)  # u/(1+u)
    np.testing.assert_array_equal(minlstm[2 * n :], 0)
    with pytest.raises(ValueError, match="chrono_tmax must be 0"):
        make_cell("mingru", H, "chrono_tmax=1.5")


@pytest.mark.parametrize("spec", ["lstm", "gru", "mingru", "minlstm"])
def test_chrono_off_is_the_default_init(spec: str) -> None:
    default, off = _params(spec, seed=5), _params(spec, "chrono_tmax=0", seed=5)
    jax.tree.map(np.testing.assert_array_equal, default, off)


# ----------------------------------------------------------------------------- the conformance check


class _SkippingSequenceCell(Cell):
    """A diagonal linear cell whose whole-sequence method forgets the carry perturbations."""

    hidden_size: int = 4

    @nn.compact
    def __call__(self, carry, x):
        a = self.param("a", nn.initializers.uniform(1.0), (self.hidden_size,))
        W = self.param("W", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        h = a * carry + x @ W
        return h, h

    def sequence(self, carry, xs, perturbations=None, unroll=1):
        p = self.variables["params"]
        hs = linear_recurrence(p["a"], xs @ p["W"], carry)  # perturbations dropped: the bug
        return hs[-1], hs


def test_conformance_sequence_check_catches_a_wrong_whole_sequence_method() -> None:
    with pytest.raises(CheckError, match="sequence outputs"):
        check_sequence(_Harness(_SkippingSequenceCell(), input_size=3, batch=2, seq_len=3))

"""Numerical tests of the cells: float64 NumPy references, flax built-ins, initialisers, make_cell errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cells import CELLS, GRUCell, LSTMCell, RNNCell, make_cell
from cells.initializers import recurrent_init
from experiments.model import SequenceModel

T, B, I, H = 7, 3, 4, 5
RTOL, ATOL = 1e-5, 1e-6
RNG = np.random.default_rng(0)
INPUTS = RNG.normal(size=(B, T, I)).astype(np.float32)


# ----------------------------------------------------------------------------- NumPy references (float64)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def np_rnn(p: dict, xs: np.ndarray, h: np.ndarray, activation: str) -> tuple:
    """h' = act(x W + h U + b)."""
    act = np.tanh if activation == "tanh" else (lambda a: np.maximum(a, 0.0))
    W, U, b = (np.float64(p[k]) for k in ("input_kernel", "recurrent_kernel", "bias"))
    ys = []
    for t in range(xs.shape[1]):
        h = act(xs[:, t] @ W + h @ U + b)
        ys.append(h)
    return h, np.stack(ys, axis=1)


def np_lstm(p: dict, xs: np.ndarray, carry: tuple) -> tuple:
    """[i, f, g, o] = x W + h U + b; c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c'); carry (c, h)."""
    W, U, b = (np.float64(p[k]) for k in ("input_kernel", "recurrent_kernel", "bias"))
    c, h = carry
    n = h.shape[-1]
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ W + h @ U + b
        i, f, g, o = a[:, :n], a[:, n : 2 * n], a[:, 2 * n : 3 * n], a[:, 3 * n :]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        ys.append(h)
    return (c, h), np.stack(ys, axis=1)


def np_gru(p: dict, xs: np.ndarray, h: np.ndarray) -> tuple:
    """r, z = s(x W + b + h U); n = tanh(a_n + r * (u_n + b_hn)); h' = (1 - z) n + z h."""
    W, U, b, b_hn = (np.float64(p[k]) for k in ("input_kernel", "recurrent_kernel", "bias", "recurrent_bias"))
    n_ = h.shape[-1]
    ys = []
    for t in range(xs.shape[1]):
        a = xs[:, t] @ W + b
        u = h @ U
        r = _sigmoid(a[:, :n_] + u[:, :n_])
        z = _sigmoid(a[:, n_ : 2 * n_] + u[:, n_ : 2 * n_])
        n = np.tanh(a[:, 2 * n_ :] + r * (u[:, 2 * n_ :] + b_hn))
        h = (1.0 - z) * n + z * h
        ys.append(h)
    return h, np.stack(ys, axis=1)


# ----------------------------------------------------------------------------- shared, compiled once per cell


@functools.cache
def _unroll(spec: str, options: str = ""):
    """(model, jitted unroll(params, inputs, carry)) for a cell; cached so each compiles once."""
    model = SequenceModel(make_cell(spec, H, options), num_outputs=2)
    return model, jax.jit(lambda params, inputs, carry: model.unroll(params, inputs, carry=carry))


def _noisy_biases(params: dict, seed: int) -> dict:
    """Add N(0, 0.5^2) noise to every bias leaf, so bias handling is exercised."""
    rng = np.random.default_rng(seed)

    def perturb(path, leaf):
        if "bias" in jax.tree_util.keystr(path):
            return leaf + jnp.asarray(0.5 * rng.normal(size=leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(perturb, params)


def _random_carry(template, seed: int):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), template)


def _assert_close(got, want, rtol: float = RTOL, atol: float = ATOL) -> None:
    jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol), got, want)


REFERENCES = {
    "rnn_tanh": ("rnn", "", lambda p, x, c: np_rnn(p, x, c, "tanh")),
    "rnn_relu": ("rnn", "activation=relu", lambda p, x, c: np_rnn(p, x, c, "relu")),
    "lstm": ("lstm", "", np_lstm),
    "lstm_forget_bias_0": ("lstm", "forget_bias=0", np_lstm),
    "gru": ("gru", "", np_gru),
}


@pytest.mark.parametrize("initial", ["zeros", "random"])
@pytest.mark.parametrize("case", list(REFERENCES))
def test_matches_numpy_reference(case: str, initial: str) -> None:
    spec, options, reference = REFERENCES[case]
    model, unroll = _unroll(spec, options)
    params = model.init(jax.random.PRNGKey(1), INPUTS)
    params = {**params, "cell": _noisy_biases(params["cell"], seed=2)}
    carry = model.initial_carry(INPUTS)
    if initial == "random":
        carry = _random_carry(carry, seed=3)
    carry_T, ys = unroll(params, INPUTS, carry)
    cell_params = jax.tree.map(np.asarray, params["cell"])
    want_carry, want_ys = reference(cell_params, np.float64(INPUTS), jax.tree.map(np.float64, carry))
    assert ys.shape == (B, T, H)
    _assert_close(ys, want_ys)
    _assert_close(carry_T, want_carry)


def test_lstm_bias_in_reference_case_includes_forget_bias() -> None:
    """Guard for the reference test above: the default LSTM starts with bias 1 on the f block."""
    model, _ = _unroll("lstm")
    bias = np.asarray(model.init(jax.random.PRNGKey(1), INPUTS)["cell"]["bias"])
    np.testing.assert_array_equal(bias[H : 2 * H], 1.0)


# ----------------------------------------------------------------------------- flax built-ins, mapped parameters


def _cat(p: dict, names: list[str], leaf: str) -> jax.Array:
    return jnp.concatenate([p[n][leaf] for n in names], axis=-1)


def _from_simple(p: dict) -> dict:
    return {"input_kernel": p["i"]["kernel"], "recurrent_kernel": p["h"]["kernel"], "bias": p["i"]["bias"]}


def _from_lstm(p: dict) -> dict:
    gates = ["i", "f", "g", "o"]
    return {
        "input_kernel": _cat(p, [f"i{g}" for g in gates], "kernel"),
        "recurrent_kernel": _cat(p, [f"h{g}" for g in gates], "kernel"),
        "bias": _cat(p, [f"h{g}" for g in gates], "bias"),
    }


def _from_gru(p: dict) -> dict:
    gates = ["r", "z", "n"]
    return {
        "input_kernel": _cat(p, [f"i{g}" for g in gates], "kernel"),
        "recurrent_kernel": _cat(p, [f"h{g}" for g in gates], "kernel"),
        "bias": _cat(p, [f"i{g}" for g in gates], "bias"),
        "recurrent_bias": p["hn"]["bias"],
    }


FLAX_CASES = {
    "SimpleCell": (nn.SimpleCell, "rnn", "", _from_simple),
    "LSTMCell": (nn.LSTMCell, "lstm", "forget_bias=0", _from_lstm),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, "lstm", "forget_bias=0", _from_lstm),
    "GRUCell": (nn.GRUCell, "gru", "", _from_gru),
}


@pytest.mark.parametrize("case", list(FLAX_CASES))
def test_matches_flax_builtin(case: str) -> None:
    flax_cls, spec, options, mapping = FLAX_CASES[case]
    flax_rnn = nn.RNN(flax_cls(features=H), return_carry=True)
    flax_params = flax_rnn.init(jax.random.PRNGKey(4), INPUTS)["params"]
    flax_params = _noisy_biases(flax_params, seed=5)  # flax initialises biases to zero
    model, unroll = _unroll(spec, options)
    ours = model.init(jax.random.PRNGKey(0), INPUTS)
    mapped = mapping(flax_params["cell"])
    assert jax.tree.map(jnp.shape, mapped) == jax.tree.map(jnp.shape, ours["cell"])
    carry = _random_carry(model.initial_carry(INPUTS), seed=6)  # both use carry layout (c, h)
    want_carry, want_ys = flax_rnn.apply({"params": flax_params}, INPUTS, initial_carry=carry)
    carry_T, ys = unroll({**ours, "cell": mapped}, INPUTS, carry)
    _assert_close(ys, want_ys)
    _assert_close(carry_T, want_carry)


def test_lstm_forget_bias_0_initialises_like_flax() -> None:
    flax_cell = nn.OptimizedLSTMCell(features=H)
    carry = flax_cell.initialize_carry(jax.random.PRNGKey(0), (B, I))
    flax_bias = _from_lstm(flax_cell.init(jax.random.PRNGKey(0), carry, INPUTS[:, 0])["params"])["bias"]
    np.testing.assert_array_equal(_cell_params("lstm", "forget_bias=0")["bias"], flax_bias)


# ----------------------------------------------------------------------------- initialisers


def _cell_params(spec: str, options: str = "", seed: int = 0) -> dict:
    cell = make_cell(spec, H, options)
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (B, I))
    return jax.tree.map(np.asarray, cell.init(jax.random.PRNGKey(seed), carry, INPUTS[:, 0])["params"])


def _blocks(U: np.ndarray) -> list[np.ndarray]:
    n = U.shape[0]
    assert U.shape[1] % n == 0
    return [U[:, k * n : (k + 1) * n] for k in range(U.shape[1] // n)]


NUM_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


@pytest.mark.parametrize("spec", list(NUM_BLOCKS))
def test_recurrent_kernel_blocks_are_orthogonal_by_default(spec: str) -> None:
    p = _cell_params(spec)
    U = p["recurrent_kernel"]
    assert U.shape == (H, NUM_BLOCKS[spec] * H)
    assert p["input_kernel"].shape == (I, NUM_BLOCKS[spec] * H)
    blocks = _blocks(U)
    for block in blocks:
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
    for k in range(1, len(blocks)):  # each gate gets its own matrix
        assert not np.allclose(blocks[0], blocks[k])


@pytest.mark.parametrize("spec", list(NUM_BLOCKS))
def test_identity_recurrent_init(spec: str) -> None:
    U = _cell_params(spec, "recurrent_init=identity")["recurrent_kernel"]
    for block in _blocks(U):
        np.testing.assert_array_equal(block, np.eye(H))


@pytest.mark.parametrize("spec", list(NUM_BLOCKS))
def test_lecun_normal_recurrent_init(spec: str) -> None:
    U = _cell_params(spec, "recurrent_init=lecun_normal")["recurrent_kernel"]
    assert U.shape == (H, NUM_BLOCKS[spec] * H) and np.all(np.isfinite(U))
    assert not np.allclose(U[:, :H].T @ U[:, :H], np.eye(H), atol=1e-2)


@pytest.mark.parametrize("forget_bias", [None, 0.0, 2.5])
def test_lstm_bias_init(forget_bias: float | None) -> None:
    options = "" if forget_bias is None else f"forget_bias={forget_bias}"
    bias = _cell_params("lstm", options)["bias"]
    want = np.zeros(4 * H)
    want[H : 2 * H] = 1.0 if forget_bias is None else forget_bias
    np.testing.assert_array_equal(bias, want)


def test_other_biases_start_at_zero() -> None:
    np.testing.assert_array_equal(_cell_params("rnn")["bias"], np.zeros(H))
    gru = _cell_params("gru")
    np.testing.assert_array_equal(gru["bias"], np.zeros(3 * H))
    np.testing.assert_array_equal(gru["recurrent_bias"], np.zeros(H))


def test_irnn_is_relu_with_identity_init() -> None:
    cell = make_cell("irnn", H)
    assert isinstance(cell, RNNCell)
    assert (cell.activation, cell.recurrent_init, cell.hidden_size) == ("relu", "identity", H)
    np.testing.assert_array_equal(_cell_params("irnn")["recurrent_kernel"], np.eye(H))
    assert make_cell("irnn", H, "recurrent_init=orthogonal").recurrent_init == "orthogonal"


def test_recurrent_init_errors() -> None:
    with pytest.raises(ValueError, match="orthogonal, identity, lecun_normal"):
        recurrent_init("eye")
    with pytest.raises(ValueError, match=r"expected an \(5, 15\) kernel"):
        recurrent_init("orthogonal", 3)(jax.random.PRNGKey(0), (5, 10))


# ----------------------------------------------------------------------------- make_cell


def test_make_cell_registered_names() -> None:
    assert isinstance(make_cell("rnn", H), RNNCell)
    assert isinstance(make_cell("lstm", H), LSTMCell)
    assert isinstance(make_cell("gru", H), GRUCell)
    assert make_cell("lstm", H, {"forget_bias": 0.0}).forget_bias == 0.0
    assert make_cell("cells.gru:GRUCell", H).hidden_size == H


def test_make_cell_unknown_name_lists_registered() -> None:
    with pytest.raises(ValueError) as info:
        make_cell("lstmm", H)
    message = str(info.value)
    assert "lstmm" in message and "\n" not in message
    for name in CELLS.names():
        assert name in message


def test_make_cell_unknown_option_lists_options() -> None:
    with pytest.raises(ValueError) as info:
        make_cell("lstm", H, "forget_bais=0")
    message = str(info.value)
    assert "forget_bais" in message and "forget_bias" in message and "recurrent_init" in message


def test_make_cell_bad_option_value() -> None:
    with pytest.raises(ValueError, match="activation must be one of tanh, relu"):
        make_cell("rnn", H, "activation=sigmoid")
    with pytest.raises(ValueError, match="malformed option"):
        make_cell("rnn", H, "activation")


@pytest.mark.parametrize(
    "spec, match",
    [
        ("foo:", "malformed import path 'foo:'"),
        (":GRUCell", "malformed import path"),
        ("a.b", "package.module:ClassName"),
        ("no_such_module_xyz:Cell", "cannot import 'no_such_module_xyz'"),
        ("cells.gru:NoSuchCell", "has no attribute 'NoSuchCell'"),
        ("plugins:Registry", "is not a flax.linen cell"),
        ("flax.linen:Dense", "is not a flax.linen cell"),
    ],
)
def test_make_cell_bad_import_paths(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_cell(spec, H)


def test_make_cell_flax_cell_with_features() -> None:
    cell = make_cell("flax.linen:GRUCell", H)
    assert isinstance(cell, nn.GRUCell) and cell.features == H
    carry = cell.initialize_carry(jax.random.PRNGKey(0), (B, I))
    new_carry, y = cell.apply(cell.init(jax.random.PRNGKey(1), carry, INPUTS[:, 0]), carry, INPUTS[:, 0])
    assert new_carry.shape == y.shape == (B, H)
    with pytest.raises(ValueError, match="no option hidden"):
        make_cell("flax.linen:OptimizedLSTMCell", H, "hidden=3")

"""The options that let each cell run at its paper's settings: per-layer options, IndRNN's init and bound kept
after each update, elementwise clipping, rmsprop's decay; and the long presets hold what their sources say."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.presets import PRESETS
from cells import make_cell
from experiments.build import make_optimizer, param_bounds
from experiments.config import Config
from experiments.grid import PointKey


def test_per_layer_options_give_each_layer_its_value():
    cell = make_cell("indrnn", 8, "bound_steps=100,recurrent_init=uniform|near_one,input_std=0.01", num_layers=2)
    assert [layer.recurrent_init for layer in cell.layers] == ["uniform", "near_one"]
    assert all(layer.input_std == 0.01 and layer.bound == 2 ** (1 / 100) for layer in cell.layers)
    same = make_cell("lru", 8, {"r_min": (0.5, 0.9)}, num_layers=2)
    assert [layer.r_min for layer in same.layers] == [0.5, 0.9]
    with pytest.raises(ValueError, match=r"gives 2 per-layer values for 3 layer"):
        make_cell("indrnn", 8, "recurrent_init=uniform|uniform", num_layers=3)


def test_indrnn_initial_recurrent_weights_and_declared_bound():
    T = 1000
    cell = make_cell("indrnn", 4096, f"bound_steps={T},recurrent_init=uniform|near_one", num_layers=2)
    x = jnp.zeros((1, 3))
    params = cell.init(jax.random.PRNGKey(0), cell.initialize_carry(jax.random.PRNGKey(1), x.shape), x)["params"]
    first, last = (np.asarray(params[f"layers_{i}"]["recurrent_weight"]) for i in range(2))
    b = 2 ** (1 / T)
    assert first.min() >= 0 and first.max() <= 1 and abs(first.mean() - 0.5) < 0.02  # U[0, 1]
    assert 1 / b <= last.min() and last.max() <= b and abs(last.mean() - 1) < 1e-4  # U[1/b, b]
    assert param_bounds(cell) == {"recurrent_weight": b}
    assert param_bounds(make_cell("indrnn", 8)) == {}
    with pytest.raises(ValueError, match="needs max_recurrent or bound_steps"):
        make_cell("indrnn", 8, "recurrent_init=near_one")


def _params(u: np.ndarray) -> dict:
    return {"cell": {"recurrent_weight": jnp.asarray(u), "bias": jnp.zeros(3)}, "readout": {"w": jnp.ones(2)}}


def test_bounded_parameter_is_projected_after_the_update():
    """sgd at rate 1 moves p to p - g; the projection puts u back into [-b, b] and leaves the rest alone."""
    config = Config(
        cell="indrnn", cell_options="max_recurrent=1.5", optimizer="sgd", momentum=0.0, learning_rate=1.0, clip_norm=0.0
    )
    opt = make_optimizer(config)
    params = _params(np.array([1.4, -1.0, 0.2]))
    grads = jax.tree.map(jnp.ones_like, params)
    grads["cell"]["recurrent_weight"] = jnp.asarray([-1.0, 1.0, 0.1])  # pushes u[0] to 2.4, u[1] to -2.0
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["cell"]["recurrent_weight"], [1.5, -1.5, 0.1], rtol=1e-6)
    np.testing.assert_allclose(new["cell"]["bias"], -np.ones(3))
    np.testing.assert_allclose(new["readout"]["w"], np.zeros(2))


def test_elementwise_clip_before_global_norm_and_rmsprop_decay():
    params = {"cell": {"w": jnp.zeros(3)}}
    grads = {"cell": {"w": jnp.asarray([30.0, -0.5, 4.0])}}
    sgd = make_optimizer(
        Config(cell="rnn", optimizer="sgd", momentum=0.0, learning_rate=1.0, clip_norm=0.0, clip_value=10.0)
    )
    updates, _ = sgd.update(grads, sgd.init(params), params)
    np.testing.assert_allclose(updates["cell"]["w"], [-10.0, 0.5, -4.0])
    rms = make_optimizer(Config(cell="rnn", optimizer="rmsprop", rmsprop_decay=0.99, learning_rate=0.1, clip_norm=0.0))
    want, _ = optax.rmsprop(0.1, decay=0.99, eps=1e-8).update(grads, optax.rmsprop(0.1, decay=0.99).init(params))
    got, _ = rms.update(grads, rms.init(params), params)
    np.testing.assert_allclose(got["cell"]["w"], want["cell"]["w"], rtol=1e-6)


def _point(table: str, cell: str, T: int) -> Config:
    return PRESETS["long"][table].points()[PointKey(cell, T)]


def test_long_presets_hold_the_sources_settings():
    # IndRNN_Theano_Lasagne adding/adding.py
    indrnn = _point("adding", "indrnn", 1000)
    assert (indrnn.num_layers, indrnn.learning_rate, indrnn.clip_norm, indrnn.clip_value) == (2, 2e-4, 0.0, 10.0)
    cell = make_cell(indrnn.cell, indrnn.hidden_size, indrnn.cell_options, indrnn.num_layers)
    assert [(la.recurrent_init, la.input_std) for la in cell.layers] == [("uniform", 1e-3), ("near_one", 1e-3)]
    assert math.isclose(cell.layers[0].bound, 2 ** (1 / 1000))
    assert make_cell("indrnn", 8, _point("adding", "indrnn", 5000).cell_options, 2).layers[1].bound == 2 ** (1 / 5000)
    # tk-rusch/LEM and tk-rusch/coRNN adding: Adam, no clipping; batch 50, hidden 128
    lem, cornn = _point("adding", "lem", 2000), _point("adding", "cornn", 2000)
    assert (lem.optimizer, lem.learning_rate, lem.clip_norm, lem.batch_size, lem.hidden_size) == (
        "adam",
        2.6e-3,
        0.0,
        50,
        128,
    )
    assert (cornn.learning_rate, cornn.clip_norm) == (2e-2, 0.0)
    cornn_cell = make_cell("cornn", 8, cornn.cell_options)
    assert (cornn_cell.dt, cornn_cell.gamma, cornn_cell.epsilon) == (0.06, 66.0, 15.0)
    # lezcano/expRNN 1_copying.py
    exprnn = _point("copy", "exprnn", 1000)
    assert (exprnn.hidden_size, exprnn.batch_size, exprnn.steps, exprnn.optimizer, exprnn.learning_rate) == (
        190,
        128,
        4000,
        "rmsprop",
        2e-4,
    )
    assert (exprnn.rmsprop_decay, exprnn.lr_multipliers, exprnn.clip_norm) == (0.99, "recurrent_skew=0.1", 0.0)
    # minimal-LRU: the block between layers, moduli in [0.9, 0.999]
    lru = _point("adding", "lru", 1000)
    layers = make_cell("lru", 8, lru.cell_options, lru.num_layers).layers
    assert [(la.block, la.r_min, la.r_max) for la in layers] == [("glu", 0.9, 0.999)] * 2
    # cells without a paper setting for the task: a learning-rate sweep in one program
    assert isinstance(_point("copy", "lem", 500).learning_rate, tuple)
    # every one of the eleven cells is in both long tables
    for table in ("adding", "copy"):
        assert {k.row for k in PRESETS["long"][table].points()} == {
            "rnn",
            "irnn",
            "lstm",
            "gru",
            "indrnn",
            "cornn",
            "lem",
            "exprnn",
            "lru",
            "mingru",
            "minlstm",
        }

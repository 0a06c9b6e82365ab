"""Gradient diagnostics: per-step norms against independent references, the analytic linear RNN,
power iteration against dense SVD, a user cell with a tuple carry, the training hook and the CLI."""

import collections
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.flatten_util import ravel_pytree

from cells import LSTMCell, make_cell
from cells.base import Cell
from experiments import diagnostics as diag
from experiments.config import Config
from experiments.model import SequenceModel
from tasks import Adding, CopyMemory
from tests.helpers import ROOT as REPO


class PairCell(nn.RNNCellBase):
    """A user cell with a tuple carry (fast, slow): fast' = tanh(x W + fast U + slow), slow' = 0.9 slow + 0.1 fast'."""

    hidden_size: int
    carry_names = ("fast", "slow")

    @nn.compact
    def __call__(self, carry, x):
        fast, slow = carry
        W = self.param("W", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        U = self.param("U", nn.initializers.orthogonal(), (self.hidden_size, self.hidden_size))
        fast = jnp.tanh(x @ W + fast @ U + slow)
        slow = 0.9 * slow + 0.1 * fast
        return (fast, slow), fast

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        zeros = jnp.zeros(input_shape[:-1] + (self.hidden_size,))
        return zeros, zeros

    @property
    def num_feature_axes(self) -> int:
        return 1


class LinearCell(Cell):
    """h' = W h + V x (column convention: carry @ W.T), so dL/dh_t = (W^T)^(T-t) dL/dh_T."""

    @nn.compact
    def __call__(self, carry, x):
        W = self.param("W", nn.initializers.orthogonal(), (self.hidden_size, self.hidden_size))
        V = self.param("V", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        h = carry @ W.T + x @ V
        return h, h


def _setup(cell, task, batch=2, seed=0):
    model = SequenceModel(cell, task.num_outputs, task.readout)
    inputs, targets = task.sample(jax.random.PRNGKey(seed + 1), batch)
    return model, model.init(jax.random.PRNGKey(seed), inputs), inputs, targets


def _row_norms(tree):
    return [np.sqrt(np.sum(np.square(np.asarray(a)).reshape(a.shape[0], -1), axis=1)) for a in jax.tree.leaves(tree)]


def _tail_grad_norms(model, task, params, inputs, targets, i):
    """||d loss_b / dh_i|| per leaf, by rerunning steps i+1..T from h_i under jax.grad (no perturbations)."""
    h_i = model.initial_carry(inputs) if i == 0 else model.unroll(params, inputs[:, :i])[0]
    _, ys = model.unroll(params, inputs)

    def loss(h):
        _, tail = model.unroll(params, inputs[:, i:], carry=h)
        y = jnp.concatenate([ys[:, :i], tail], axis=1)
        y = y[:, -1] if model.readout == "last" else y
        outputs = nn.Dense(model.num_outputs).apply({"params": params["readout"]}, y)
        return task.per_example_loss(outputs, targets).sum()

    return _row_norms(jax.jit(jax.grad(loss))(h_i))


@pytest.mark.parametrize(
    "cell, task, positions",
    [
        (LSTMCell(3), CopyMemory(2), [0, 12, 21]),  # readout at every step, carry (c, h), length 22
        (PairCell(3), Adding(6), range(6)),  # a user cell with a tuple carry, readout at the last step
    ],
    ids=["lstm-copy", "user_tuple_cell-adding"],
)
def test_carry_grads_match_rerun_of_the_tail(cell, task, positions):
    model, params, inputs, targets = _setup(cell, task)
    m = jax.device_get(jax.jit(lambda p, x, y: diag.measure(model, task, p, x, y))(params, inputs, targets))
    names = list(m["leaves"])
    assert names == (["c", "h"] if isinstance(cell, LSTMCell) else ["fast", "slow"])
    assert m["carry"].shape == (2, task.length) and m["input"].shape == (2, task.length)
    for i in positions:
        ref = _tail_grad_norms(model, task, params, inputs, targets, i)
        for name, r in zip(names, ref, strict=True):
            np.testing.assert_allclose(m["leaves"][name][:, i], r, rtol=2e-4, atol=1e-7, err_msg=f"{name} i={i}")
        np.testing.assert_allclose(m["carry"][:, i], np.sqrt(sum(r**2 for r in ref)), rtol=2e-4, atol=1e-7)
    # input sensitivity: ||d loss_b / dx_t|| straight from jax.grad w.r.t. the inputs
    g_x = jax.grad(lambda x: task.per_example_loss(model.apply(params, x), targets).sum())(inputs)
    np.testing.assert_allclose(m["input"], np.linalg.norm(np.asarray(g_x), axis=-1), rtol=2e-4, atol=1e-7)


def test_linear_rnn_matches_analytic_powers():
    T, H = 8, 4
    task = Adding(T)
    model, params, inputs, targets = _setup(LinearCell(H), task, batch=3)
    W = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (H, H))) * 0.5  # non-normal
    W[0, 1] += 1.0
    params["cell"]["W"] = jnp.asarray(W, jnp.float32)
    m = jax.device_get(diag.measure(model, task, params, inputs, targets))
    h_T, _ = model.unroll(params, inputs)
    kernel, bias = (np.asarray(params["readout"][k], np.float64) for k in ("kernel", "bias"))
    residual = np.asarray(h_T, np.float64) @ kernel[:, 0] + bias[0] - np.asarray(targets)
    g = 2 * residual[:, None] * kernel[:, 0][None, :]  # dL_b/dh_T, (B, H)
    W64 = W.astype(np.float64)
    expected = np.stack(
        [np.linalg.norm(g @ np.linalg.matrix_power(W64, T - i), axis=1) for i in range(T)], axis=1
    )  # row form of (W^T)^(T-i) g
    np.testing.assert_allclose(m["carry"], expected, rtol=1e-4)
    # the dynamics alone: sigma_max(dh_T/dh_t) = ||W^(T-t)||_2
    ts = jnp.arange(T)
    sig = np.asarray(diag.jacobian_sigmas(model, params, inputs[:1], ts, num_iters=200))
    exact = [np.linalg.norm(np.linalg.matrix_power(W64, T - t), 2) for t in range(T)]
    np.testing.assert_allclose(sig[0], exact, rtol=1e-3)


@pytest.mark.parametrize("cell", [LSTMCell(3), PairCell(2)], ids=["lstm", "user_tuple_cell"])
def test_jacobian_sigmas_match_dense_svd(cell):
    T = 6
    task = Adding(T)
    model, params, inputs, _ = _setup(cell, task)
    ts = jnp.asarray([0, 2, 4, 5])
    sig = np.asarray(jax.jit(lambda p, x, t: diag.jacobian_sigmas(model, p, x, t, num_iters=300))(params, inputs, ts))
    for k, t in enumerate(np.asarray(ts)):
        h_t = model.initial_carry(inputs) if t == 0 else model.unroll(params, inputs[:, :t])[0]

        _, unravel = ravel_pytree(jax.tree.map(lambda a: a[0], h_t))

        def final_carry(h, x, t=t, unravel=unravel):  # one example: flat h_t -> flat h_T, for jax.jacobian
            carry = jax.tree.map(lambda a: a[None], unravel(h))
            final, _ = model.unroll(params, x[None, t:], carry=carry)
            return ravel_pytree(jax.tree.map(lambda a: a[0], final))[0]

        flat = jax.vmap(lambda h: ravel_pytree(h)[0])(h_t)
        dense = np.asarray(jax.jit(jax.vmap(jax.jacobian(final_carry)))(flat, inputs))  # (B, n, n)
        np.testing.assert_allclose(sig[:, k], np.linalg.svd(dense, compute_uv=False)[:, 0], rtol=1e-3)


def test_leaf_names_of_carry_pytrees():
    z = jnp.zeros((1, 2))
    pair = collections.namedtuple("Pair", "a b")
    assert diag.carry_leaf_names(make_cell("rnn", 2), z) == ["h"]
    assert diag.carry_leaf_names(make_cell("lstm", 2), (z, z)) == ["c", "h"]
    assert diag.carry_leaf_names(make_cell("flax_lstm", 2), (z, z)) == ["c", "h"]
    assert diag.carry_leaf_names(make_cell("gru", 2), (z, z)) == ["0", "1"]
    assert diag.carry_leaf_names(make_cell("gru", 2), {"x": z, "y": (z, z)}) == ["x", "y.0", "y.1"]
    assert diag.carry_leaf_names(make_cell("gru", 2), pair(z, z)) == ["a", "b"]


def test_summaries():
    norms = 10.0 ** (-0.5 * (9 - np.arange(10)))  # 0.5 decades lost per step back
    s = diag.summarize(norms, horizon_fraction=0.01)
    assert s["decay_rate"] == pytest.approx(0.5)
    assert s["ratio_first_last"] == pytest.approx(10.0**-4.5)
    assert s["horizon"] == 5  # i = 9..5 are >= 1e-2 x max; i = 4 is 10^-2.5
    assert diag.summarize(np.ones(7))["horizon"] == 7
    assert list(diag.jacobian_points(200, 16)[[0, -1]]) == [0, 199]
    assert len(diag.jacobian_points(5, 16)) == 5
    tiny = jnp.full((3, 128), 1e-25, jnp.float32)  # a plain sqrt(sum x^2) underflows to 0 here
    np.testing.assert_allclose(diag.safe_norm(tiny, 1), np.full(3, 1e-25 * np.sqrt(128)), rtol=1e-5)


def test_jitted_diagnostic_compiles_once():
    traces = []

    class CountingTask:  # counts traces of the loss: a retrace would call it again
        def __init__(self, task):
            self.task = task

        def per_example_loss(self, outputs, targets):
            traces.append(1)
            return self.task.per_example_loss(outputs, targets)

    task = Adding(5)
    model, params, inputs, targets = _setup(make_cell("gru", 3), task, batch=3)
    fn = diag.make_diagnose_fn(model, CountingTask(task), jacobian_examples=2, power_iters=3)
    out = fn(params, inputs, targets, jnp.asarray([0, 2, 4]))
    params2 = jax.tree.map(lambda a: a * 1.1, params)
    inputs2, targets2 = task.sample(jax.random.PRNGKey(9), 3)
    out2 = fn(params2, inputs2, targets2, jnp.asarray([1, 3, 4]))  # other values, other t's: same program
    assert fn._cache_size() == 1 and len(traces) == 1
    assert out["carry_grad_mean"].shape == (5,) and out["jacobian_sigma"].shape == (3,)
    assert not np.allclose(out["carry_grad_mean"], out2["carry_grad_mean"])


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    from experiments.trainer import train_and_evaluate

    workdir = tmp_path_factory.mktemp("trained")
    config = Config(
        cell="gru",
        task="adding",
        seq_len=10,
        hidden_size=8,
        batch_size=4,
        steps=4,
        eval_every=2,
        eval_size=8,
        diag_every=2,
        num_seeds=2,
        checkpoint_every=0,
    )
    train_and_evaluate(config, workdir)
    return workdir


def test_recorder_writes_history_during_training(trained_workdir):
    with np.load(trained_workdir / "diagnostics.npz") as z:
        data = {k: z[k] for k in z.files}
    assert list(data["steps"]) == [0, 2, 4] and list(data["seeds"]) == [0, 1]
    assert list(data["t"]) == list(range(1, 11))
    assert data["carry_grad_mean"].shape == (3, 2, 10) and data["carry_grad_mean:h"].shape == (3, 2, 10)
    assert data["input_grad_mean"].shape == (3, 2, 10)
    assert data["jacobian_sigma"].shape == (3, 2, len(data["jacobian_t"]))
    assert np.all(np.isfinite(data["carry_grad_mean"])) and np.all(data["carry_grad_mean"] > 0)
    records = [json.loads(line) for line in (trained_workdir / "diagnostics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["seed"]) for r in records] == [(0, 0), (0, 1), (2, 0), (2, 1), (4, 0), (4, 1)]
    assert records[0]["carry"]["horizon_fraction"] == diag.HORIZON_FRACTION and "h" in records[0]["leaves"]


@pytest.mark.slow
def test_cli_end_to_end(trained_workdir, tmp_path):
    out = tmp_path / "grads"
    cmd = [
        sys.executable,
        "-m",
        "experiments.gradients",
        "--cells=tests.test_diagnostics:PairCell",
        f"--from_workdirs={trained_workdir}",
        "--task=adding",
        "--seq_len=10",
        "--hidden_size=8",
        "--batch=4",
        "--jacobian_points=4",
        "--power_iters=5",
        f"--workdir={out}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| PairCell |" in proc.stdout and "| gru s0 @4 |" in proc.stdout and "| fast |" in proc.stdout
    for name in ("grad_norms", "input_sensitivity", "jacobian_sigma", "heatmap_gru", "train_grad_norm"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    summary = json.loads((out / "gradients.json").read_text())
    assert [r["label"] for r in summary["runs"]] == ["PairCell", "gru s0 @4", "gru s1 @4"]
    assert summary["runs"][0]["carry"]["horizon"] <= 10 and summary["runs"][1]["training"]["clipped_fraction_mean"] >= 0
    with np.load(out / "gradients.npz") as z:
        assert z["carry_grad_mean"].shape == (3, 10) and "run0/carry_grad_mean:slow" in z.files

    bad = subprocess.run(
        [sys.executable, "-m", "experiments.gradients", "--horizon_fraction=0", f"--workdir={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --horizon_fraction=0.0: must be a number in (0, 1)"
    ]

"""train_and_evaluate end to end: outputs, determinism, seeds under vmap, resume, divergence."""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cells import make_cell
from experiments import io
from experiments.config import Config, ConfigError
from experiments.experiment import Experiment, vmap_in_chunks
from experiments.model import SequenceModel
from experiments.trainer import train_and_evaluate
from experiments.validation import validate
from tests.helpers import eval_records as evals
from tests.helpers import final_params

TINY = Config(
    cell="gru",
    task="adding",
    seq_len=8,
    hidden_size=8,
    batch_size=8,
    steps=20,
    eval_every=10,
    eval_size=16,
    checkpoint_every=0,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, train_and_evaluate(TINY, workdir)


def test_writes_config_metrics_results(reference):
    workdir, results = reference
    assert Config.from_dict(io.read_json(workdir / "config.json")) == TINY
    records = io.read_jsonl(workdir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 10, 20]
    for key in ("train_loss", "eval_loss", "eval_ratio", "grad_norm", "clipped_fraction", "steps_per_s"):
        assert key in records[-1] and np.isfinite(records[-1][key])
    assert records[-1]["eval_ratio"] == pytest.approx(records[-1]["eval_loss"] * 6)
    assert io.read_json(workdir / "results.json") == results
    assert results["baseline"] == pytest.approx(1 / 6) and results["steps_done"] == 20
    assert results["seeds"][0]["final"]["loss"] == records[-1]["eval_loss"]
    assert results["seeds"][0]["diverged_at_step"] is None and results["wall_time_s"] > 0


def test_same_flags_same_numbers(reference, tmp_path):
    workdir, results = reference
    again = train_and_evaluate(TINY, tmp_path)
    assert again["seeds"] == results["seeds"]
    assert evals(tmp_path) == evals(workdir)


def test_resume_is_bit_identical(reference, tmp_path):
    workdir, results = reference
    train_and_evaluate(TINY.replace(steps=10), tmp_path)  # "interrupted" at step 10
    resumed = train_and_evaluate(TINY, tmp_path)
    assert resumed["seeds"] == results["seeds"]
    assert evals(tmp_path) == evals(workdir)
    same = jax.tree.map(np.array_equal, final_params(tmp_path, TINY), final_params(workdir, TINY))
    assert all(jax.tree.leaves(same))


def test_resume_refuses_other_settings(reference):
    workdir, _ = reference
    with pytest.raises(ConfigError, match=r"--hidden_size \(saved 8, now 16\)"):
        train_and_evaluate(TINY.replace(hidden_size=16), workdir)


def test_seeds_trained_together_equal_single_runs(tmp_path):
    together = train_and_evaluate(TINY.replace(num_seeds=2, steps=10), tmp_path / "both")
    alone = train_and_evaluate(TINY.replace(seed=1, steps=10), tmp_path / "one")
    assert [s["seed"] for s in together["seeds"]] == [0, 1]
    for key, value in alone["seeds"][0]["final"].items():
        assert together["seeds"][1]["final"][key] == pytest.approx(value, rel=1e-6, abs=1e-7)
    p_both = final_params(tmp_path / "both", TINY.replace(num_seeds=2))
    p_one = final_params(tmp_path / "one", TINY.replace(seed=1))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=1e-5, atol=1e-6), p_both, p_one)


def test_divergence_is_caught_and_recorded(tmp_path):
    config = TINY.replace(optimizer="sgd", learning_rate=1e6, clip_norm=0.0, steps=200, eval_every=5)
    results = train_and_evaluate(config, tmp_path)
    at = results["seeds"][0]["diverged_at_step"]
    assert at is not None and at < 200 and results["steps_done"] < 200
    assert io.read_jsonl(tmp_path / "metrics.jsonl")[-1]["diverged"]


def test_learns_the_adding_problem(tmp_path):
    config = TINY.replace(
        cell="lstm", seq_len=10, hidden_size=16, batch_size=32, steps=400, eval_every=200, eval_size=200
    )
    results = train_and_evaluate(config, tmp_path)
    assert results["seeds"][0]["final"]["ratio"] < 0.2


def test_train_step_is_traced_once(tmp_path, monkeypatch):
    calls = []
    original = Experiment.train_step
    monkeypatch.setattr(Experiment, "train_step", lambda self, s: calls.append(1) or original(self, s))
    train_and_evaluate(TINY.replace(steps=30), tmp_path)
    assert len(calls) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unroll_compiles_to_the_same_program_for_any_length(cell):
    model = SequenceModel(make_cell(cell, 4), 1, "last")
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 3, 2)))
    sizes = {len(jax.make_jaxpr(model.apply)(params, jnp.zeros((2, T, 2))).eqns) for T in (5, 50, 500)}
    assert len(sizes) == 1


def test_remat_gives_the_same_outputs_and_gradients():
    cell = make_cell("lstm", 6)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 2))
    plain, remat = SequenceModel(cell, 2, "all"), SequenceModel(cell, 2, "all", remat=4)
    params = plain.init(jax.random.PRNGKey(1), x)

    def loss(m):
        return lambda p: jnp.sum(m.apply(p, x) ** 2)

    np.testing.assert_allclose(remat.apply(params, x), plain.apply(params, x), rtol=1e-6, atol=1e-6)
    g_plain, g_remat = jax.grad(loss(plain))(params), jax.grad(loss(remat))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_remat, g_plain)


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"seq_len": 0}, "--seq_len"),
        ({"hidden_size": -3}, "--hidden_size"),
        ({"learning_rate": float("nan")}, "--learning_rate"),
        ({"learning_rate": -1.0}, "--learning_rate"),
        ({"optimizer": "adagrad"}, "--optimizer=.*adam, rmsprop, sgd"),
        ({"cell": "lstn"}, "--cell.*registered: rnn, irnn, lstm"),
        ({"task": "coppy"}, "--task.*copy, adding"),
        ({"cell": "no_such_module:Cell"}, "--cell.*cannot import"),
        ({"cell": "cells:"}, "--cell.*malformed"),
        ({"cell_options": "forget_bias"}, "--cell_options.*malformed"),
        ({"cell_options": "depth=2"}, "--cell_options.*forget_bias"),
        ({"clip_norm": -1.0}, "--clip_norm"),
        ({"momentum": 1.0}, "--momentum"),
        ({"num_seeds": 0}, "--num_seeds"),
    ],
)
def test_bad_config_names_the_flag(change, flag):
    with pytest.raises(ConfigError, match=flag):
        validate(TINY.replace(**{"cell": "lstm", **change}))


def test_cli_bad_flag_is_one_line_without_traceback(tmp_path):
    for args, flag in (
        (["--seq_len=0"], "--seq_len"),
        (["--optimizer=adamw"], "--optimizer"),
        (["--steps=x"], "--steps"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.train", *args, f"--workdir={tmp_path}"], capture_output=True, text=True
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and flag in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a CPU property: GPU programs may differ in rounding")
def test_vmap_in_chunks_is_bit_identical_to_vmap():
    exp = Experiment(TINY.replace(num_seeds=8))
    state = exp.compiled_init()(jnp.arange(8))
    plain = jax.jit(jax.vmap(exp.train_step))(state)
    chunked = jax.jit(vmap_in_chunks(exp.train_step, 3))(state)  # 2 chunks of 3, then 2 left over
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, plain, chunked)))
    assert exp.seed_chunk() >= 1
    # chunks of one seed run unbatched (plain GEMMs, not size-1 batched dots): equal to float32 rounding
    single = jax.jit(vmap_in_chunks(exp.train_step, 1))(state)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), plain, single)
    jaxpr = str(jax.make_jaxpr(vmap_in_chunks(exp.train_step, 1))(jax.tree.map(lambda a: a[:1], state)))
    batch_dims = re.findall(r"dimension_numbers=\(\(\[[\d, ]*\], \[[\d, ]*\]\), \((\[[\d, ]*\]),", jaxpr)
    assert batch_dims and set(batch_dims) == {"[]"}  # every dot a plain GEMM

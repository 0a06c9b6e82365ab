"""--num_layers: stacked cells against layer-by-layer unrolls, both paths, and per-layer diagnostics."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cells import StackedCell, make_cell
from experiments.config import Config
from experiments.diagnostics import carry_leaf_names
from experiments.model import SequenceModel

B, T, I, H = 3, 7, 4, 5


@pytest.mark.parametrize("spec", ["lstm", "gru", "flax_gru", "examples.my_cells:MinGRUCell"])
def test_stack_equals_layers_unrolled_one_after_another(spec):
    """Reference: each layer's own SequenceModel.unroll over the previous layer's output sequence."""
    with jax.enable_x64(True):
        stacked = make_cell(spec, H, num_layers=3)
        assert isinstance(stacked, StackedCell) and len(stacked.layers) == 3
        x = jax.random.normal(jax.random.PRNGKey(1), (B, T, I), jnp.float64)
        model = SequenceModel(stacked, 2, path="step")
        params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(0), x))
        carry0 = jax.tree.map(lambda a: a.astype(jnp.float64), model.initial_carry(x))
        final, ys = model.unroll(params, x, carry=carry0)
        inputs = x
        for i, layer in enumerate(stacked.layers):
            single = SequenceModel(layer.clone(parent=None), 2, path="step")
            layer_params = {"cell": params["cell"][f"layers_{i}"]}
            c, inputs = single.unroll(layer_params, inputs, carry=carry0[i])
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), final[i], c)
        np.testing.assert_allclose(ys, inputs, rtol=1e-12)


@pytest.mark.parametrize("spec", ["rnn", "lstm", "gru", "examples.my_cells:MinGRUCell"])
def test_stack_sequence_path_equals_step_path_with_perturbations(spec):
    with jax.enable_x64(True):
        fused = SequenceModel(make_cell(spec, H, num_layers=2), 2, "last", remat=3, path="sequence")
        plain = dataclasses.replace(fused, path="step")
        assert fused.uses_sequence
        x = jax.random.normal(jax.random.PRNGKey(1), (B, T, I), jnp.float64)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), fused.init(jax.random.PRNGKey(0), x))
        carry0 = jax.tree.map(lambda a: a.astype(jnp.float64), fused.initial_carry(x))
        eps = jax.tree.map(lambda c: 0.1 * jax.random.normal(jax.random.PRNGKey(2), (T,) + c.shape, c.dtype), carry0)

        def grads(model):
            def loss(p, e):
                return jnp.sum(jnp.sin(model.unroll(p, x, e, carry=carry0, all_outputs=False)[1]))

            return jax.grad(loss, argnums=(0, 1))(params, eps)

        errors = jax.tree.map(
            lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), grads(fused), grads(plain)
        )
        assert max(jax.tree.leaves(errors)) < 1e-10


def test_carry_leaves_are_named_per_layer():
    for spec, names in [("lstm", ["0.c", "0.h", "1.c", "1.h"]), ("gru", ["0.h", "1.h"])]:
        cell = make_cell(spec, H, num_layers=2)
        carry = cell.initialize_carry(jax.random.PRNGKey(0), (B, I))
        assert carry_leaf_names(cell, carry) == names


@pytest.mark.slow
def test_two_layers_train_and_diagnostics_report_each_layer(tmp_path):
    from experiments.trainer import train_and_evaluate

    config = Config(
        cell="lstm",
        num_layers=2,
        seq_len=10,
        hidden_size=8,
        batch_size=8,
        steps=20,
        eval_every=10,
        eval_size=16,
        diag_every=20,
        checkpoint_every=0,
    )
    results = train_and_evaluate(config, tmp_path)
    assert results["steps_done"] == 20 and np.isfinite(results["mean"]["loss"])
    records = [json.loads(line) for line in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert records and all(set(r["leaves"]) == {"0.c", "0.h", "1.c", "1.h"} for r in records)
    assert all(np.isfinite(r["leaves"][leaf]["last"]) for r in records for leaf in r["leaves"])

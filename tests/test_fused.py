"""The fused whole-sequence kernel (cells.fused) against JAX autodiff of the plain step scan.

Same parameters, inputs and carry perturbations through both paths of `SequenceModel`; the loss
is a nonlinear function of every output, so every cotangent is non-trivial. float64: 1e-10
relative; float32: 1e-5 relative (max abs difference / max abs value, per parameter).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cells import make_cell
from experiments.model import SequenceModel

CASES = [
    ("rnn", ""),
    ("rnn", "activation=relu,recurrent_init=identity"),
    ("lstm", ""),
    ("lstm", "forget_bias=0,recurrent_init=lecun_normal"),
    ("gru", ""),
    ("gru", "recurrent_init=identity"),
]
B, T, I, H, O = 3, 11, 4, 6, 2


def _grads(model: SequenceModel, params, inputs, eps):
    def loss(params, inputs, eps):
        return jnp.sum(jnp.sin(model.apply(params, inputs, eps)) ** 2)

    return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, inputs, eps)


def _relative(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))


def _compare(name, options, dtype, remat, readout, perturbed):
    cell = make_cell(name, H, options)
    fused = SequenceModel(cell, O, readout, remat, path="sequence")
    plain = dataclasses.replace(fused, path="step")
    assert fused.uses_sequence and not plain.uses_sequence
    inputs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I), dtype)
    params = jax.tree.map(lambda a: a.astype(dtype), fused.init(jax.random.PRNGKey(0), inputs))
    if name != "lstm":  # give the biases non-zero values so their gradients are tested in general position
        params["cell"]["bias"] = 0.1 * jax.random.normal(jax.random.PRNGKey(3), params["cell"]["bias"].shape, dtype)
    eps = None
    if perturbed:
        carry = fused.initial_carry(inputs)
        eps = jax.tree.map(lambda c: 0.1 * jax.random.normal(jax.random.PRNGKey(2), (T,) + c.shape, dtype), carry)
    (loss_f, grads_f), (loss_p, grads_p) = _grads(fused, params, inputs, eps), _grads(plain, params, inputs, eps)
    errors = jax.tree.map(_relative, grads_f, grads_p)
    return abs(float(loss_f - loss_p)) / abs(float(loss_p)), max(jax.tree.leaves(errors)), grads_f


@pytest.mark.parametrize("name,options", CASES)
@pytest.mark.parametrize("remat,readout,perturbed", [(0, "all", True), (4, "last", True), (4, "all", False)])
def test_fused_gradients_equal_autodiff_float64(name, options, remat, readout, perturbed):
    with jax.enable_x64(True):
        loss_error, grad_error, grads = _compare(name, options, jnp.float64, remat, readout, perturbed)
        assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(grads))
        if perturbed:  # the diagnostics read dL/dh_t from these: they must be there and non-zero
            assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads[2]))
    assert loss_error < 1e-12
    assert grad_error < 1e-10


@pytest.mark.parametrize("name,options", CASES[::2])
def test_fused_gradients_equal_autodiff_float32(name, options):
    loss_error, grad_error, _ = _compare(name, options, jnp.float32, 0, "all", True)
    assert loss_error < 1e-5
    assert grad_error < 1e-5


def test_fused_kernel_under_vmap_and_unroll():
    """Vmapped over seeds (as training runs it) and with scan unroll 3 (T=11 is not a multiple)."""
    cell = make_cell("lstm", H)
    fused = SequenceModel(cell, O, "last", path="sequence", scan_unroll=3)
    plain = dataclasses.replace(fused, path="step", scan_unroll=1)
    inputs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    params = jax.lax.map(lambda k: fused.init(k, inputs), jax.random.split(jax.random.PRNGKey(0), 2))  # no batched QR

    def grad(m):
        return jax.vmap(jax.grad(lambda p: jnp.sum(m.apply(p, inputs) ** 2)))(params)

    errors = jax.tree.map(_relative, grad(fused), grad(plain))
    assert max(jax.tree.leaves(errors)) < 1e-5


def test_cells_without_a_sequence_method_keep_the_step_scan():
    assert not SequenceModel(make_cell("flax_lstm", H), O, path="sequence").uses_sequence
    assert not SequenceModel(make_cell("examples.my_cells:MinGRUCell", H), O, path="sequence").uses_sequence


def test_activation_bytes_ignore_weights_when_batch_equals_width():
    """Weights whose first axis happens to equal B are not per-step activations."""
    for name in ("rnn", "lstm"):
        model = SequenceModel(make_cell(name, 16), 1, "last")
        a, b = model.activation_bytes(16, 100, 2), model.activation_bytes(17, 100, 2)
        assert 0 < a < b < a * 17 / 16 * 1.01
        assert model.activation_bytes(16, 200, 2) == 2 * a
    lstm = SequenceModel(make_cell("lstm", 8), 1, "last")
    fused, plain = dataclasses.replace(lstm, path="sequence"), dataclasses.replace(lstm, path="step")
    per_step = fused.activation_bytes(4, 1, 2)  # kept per step: h_in, gate activations, c, tanh(c), ...
    assert per_step > 0 and plain.activation_bytes(4, 1, 2) > 0
    assert np.isclose(np.log(fused.activation_bytes(4, 64, 2) / plain.activation_bytes(4, 64, 2)), 0, atol=1.0)


@pytest.mark.parametrize("readout", ["all", "last"])
def test_remat_estimate_covers_what_the_chunks_keep(readout):
    """With remat the estimate is at least the residuals kept across chunks (inputs, carries, outputs)."""
    model = SequenceModel(make_cell("rnn", 8), 3, readout, remat=100)
    x = jax.ShapeDtypeStruct((50, 2000, 10), jnp.float32)

    def residuals(inputs):
        params = model.init(jax.random.PRNGKey(0), inputs)
        return jax.vjp(lambda p: model.apply(p, inputs), params)[1]

    kept = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(jax.eval_shape(residuals, x)))
    estimate = model.activation_bytes(50, 2000, 10)
    assert kept <= estimate <= 1.5 * kept
    assert estimate < dataclasses.replace(model, remat=0).activation_bytes(50, 2000, 10)

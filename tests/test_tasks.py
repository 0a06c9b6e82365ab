"""Task data layouts against their definitions, and baselines against Monte Carlo estimates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasks import TASKS, Adding, CopyMemory, Task, make_task


def test_copy_layout_matches_definition():
    T, B = 13, 64
    task = CopyMemory(T)
    inputs, targets = task.sample(jax.random.PRNGKey(0), B)
    assert inputs.shape == (B, T + 20, 10) and targets.shape == (B, T + 20)
    assert np.all(np.asarray(inputs).sum(-1) == 1)  # one-hot
    tokens = np.asarray(inputs).argmax(-1)
    symbols = tokens[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert np.all(tokens[:, 10 : 10 + T - 1] == 0)  # T-1 blanks
    assert np.all(tokens[:, T + 9] == 9)  # the delimiter
    assert np.all(tokens[:, T + 10 :] == 0)  # 10 blanks while recalling
    targets = np.asarray(targets)
    assert np.all(targets[:, : T + 10] == 0) and np.array_equal(targets[:, T + 10 :], symbols)
    assert targets.max() < task.num_outputs


def test_copy_symbols_are_uniform():
    _, targets = CopyMemory(5).sample(jax.random.PRNGKey(1), 4000)
    counts = np.bincount(np.asarray(targets)[:, -10:].ravel(), minlength=9)[1:]
    np.testing.assert_allclose(counts / counts.sum(), 1 / 8, atol=0.01)


@pytest.mark.parametrize("T, published", [(100, 0.17329), (200, 0.09452), (500, 0.03999), (1000, 0.02039)])
def test_copy_baseline_matches_published_values(T, published):
    assert CopyMemory(T).baseline == pytest.approx(10 * math.log(8) / (T + 20))
    assert CopyMemory(T).baseline == pytest.approx(published, abs=1e-5)


def test_copy_baseline_is_the_best_memoryless_predictor():
    """Fit each position's target marginal on one sample; its CE on a fresh sample is the baseline."""
    task = CopyMemory(30)
    _, train_targets = task.sample(jax.random.PRNGKey(2), 5000)
    counts = np.stack([np.bincount(col, minlength=9) for col in np.asarray(train_targets).T]) + 1e-3
    log_marginal = np.log(counts / counts.sum(-1, keepdims=True))  # (T+20, 9)
    _, targets = task.sample(jax.random.PRNGKey(3), 5000)
    logits = jnp.broadcast_to(jnp.asarray(log_marginal), targets.shape + (9,))
    assert float(task.loss(logits, targets)) == pytest.approx(task.baseline, rel=0.01)


def test_copy_metrics_of_a_perfect_and_a_memoryless_predictor():
    task = CopyMemory(10)
    _, targets = task.sample(jax.random.PRNGKey(4), 32)
    perfect = 100.0 * jax.nn.one_hot(targets, 9)
    m = task.metrics(perfect, targets)
    assert float(m["loss"]) < 1e-6 and float(m["recall_accuracy"]) == 1.0 and task.solved(m)
    memoryless = jnp.log(
        jnp.concatenate([jnp.eye(9)[jnp.zeros(20, int)] + 1e-30, jnp.full((10, 9), 1 / 8).at[:, 0].set(1e-30)])
    )
    m = task.metrics(jnp.broadcast_to(memoryless, (32, 30, 9)), targets)
    assert float(m["ratio"]) == pytest.approx(1.0, rel=1e-4) and not task.solved(m)


@pytest.mark.parametrize("T", [10, 11])
def test_adding_layout_matches_definition(T):
    task = Adding(T)
    inputs, targets = (np.asarray(a) for a in task.sample(jax.random.PRNGKey(5), 2000))
    assert inputs.shape == (2000, T, 2) and targets.shape == (2000,)
    values, marks = inputs[..., 0], inputs[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert np.all(np.isin(marks, [0, 1])) and np.all(marks.sum(1) == 2)
    first, second = (np.nonzero(marks)[1].reshape(-1, 2)).T
    assert first.max() < T // 2 <= second.min() and second.max() == T - 1 and first.min() == 0
    assert len(np.unique(first)) == T // 2 and len(np.unique(second)) == T - T // 2  # every position used
    np.testing.assert_allclose(targets, (values * marks).sum(1), rtol=1e-6)


def test_adding_baseline_is_the_best_constant_predictor():
    task = Adding(20)
    _, targets = task.sample(jax.random.PRNGKey(6), 20000)
    ones = jnp.ones((20000, 1))
    assert float(task.loss(ones, targets)) == pytest.approx(1 / 6, rel=0.03)
    assert float(jnp.mean(targets)) == pytest.approx(1.0, abs=0.01)
    assert task.baseline == pytest.approx(1 / 6)
    m = task.metrics(targets[:, None], targets)
    assert float(m["loss"]) == 0.0 and task.solved(m)


def test_sampling_is_a_pure_function_of_the_key():
    for task in (CopyMemory(7), Adding(7)):
        a = task.sample(jax.random.PRNGKey(7), 4)
        b = task.sample(jax.random.PRNGKey(7), 4)
        c = task.sample(jax.random.PRNGKey(8), 4)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[1], c[1])


class Reverse(Task):
    """A user task defined outside tasks/: plugs in by import path."""

    input_size, num_outputs, readout, metric_name = 1, 1, "last", "MSE"
    solved_below = 0.01

    @property
    def baseline(self) -> float:
        return 1.0

    def sample(self, key, batch_size):
        x = jax.random.normal(key, (batch_size, self.seq_len, 1))
        return x, x[:, 0, 0]

    def per_example_loss(self, outputs, targets):
        return (outputs[:, 0] - targets) ** 2


def test_registry_lookup_and_errors():
    assert set(TASKS.names()) >= {"copy", "adding"}
    assert isinstance(make_task("copy", 5), CopyMemory)
    assert type(make_task("tests.test_tasks:Reverse", 5)).__name__ == "Reverse"
    with pytest.raises(ValueError, match="registered: copy, adding"):
        make_task("cpy", 5)
    with pytest.raises(ValueError, match="not a tasks.Task"):
        make_task("tests.test_tasks:test_registry_lookup_and_errors", 5)
    with pytest.raises(ValueError, match="seq_len"):
        make_task("adding", 1)

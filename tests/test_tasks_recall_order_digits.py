"""The tasks beyond copy and adding (selective_copy, associative_recall, temporal_order, digits, permuted_digits):
layouts against their sources, baselines against Monte Carlo estimates of the best memoryless predictor,
perfect predictors, option checks, and one tiny training run each."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.config import Config
from experiments.trainer import train_and_evaluate
from tasks import AssociativeRecall, Digits, PermutedDigits, SelectiveCopy, TemporalOrder, make_task
from tasks import digits as digits_data

IGNORE = -100
# One task and one batch size per source for the tests that sample it: one compilation each.
SC, SC_DRAW = SelectiveCopy(20, num_symbols=4), 8000
AR, AR_DRAW = AssociativeRecall(24, num_kv_pairs=4, vocab_size=20), 20000
DIGITS_DRAW = 100_000
KEY = jax.random.PRNGKey(0)


@functools.cache
def sampler(task, batch_size: int):
    """`task.sample` jitted once per (task, batch size): one compilation, instead of one per eager op."""
    return jax.jit(lambda key: task.sample(key, batch_size))


@functools.cache
def draw(task, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of `task` from PRNGKey(seed), as read-only numpy arrays (memoized: tests share draws)."""
    inputs, targets = (np.asarray(a) for a in sampler(task, batch_size)(jax.random.PRNGKey(seed)))
    inputs.flags.writeable = targets.flags.writeable = False
    return inputs, targets


def memoryless_ce(fit: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], classes: int):
    """Fit p(y | context) by counting on `fit` = (contexts, labels), score `test`: per-label CEs, excess bound.

    The context is all a memoryless predictor sees at a scored position (its input token and position);
    p is the counted frequency with add-1/2 smoothing. Its CE on fresh data exceeds the best memoryless
    loss by about (K-1)/(2n) nats for a context seen n times (the plug-in estimate's KL): the returned
    bound uses the rarest context's n.
    """
    contexts, labels = fit
    keys, inverse = np.unique(contexts, axis=0, return_inverse=True)
    counts = np.zeros((len(keys), classes))
    np.add.at(counts, (inverse.ravel(), labels), 1)
    p = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    lookup = {tuple(np.atleast_1d(k)): i for i, k in enumerate(keys)}
    rows = np.array([lookup[tuple(np.atleast_1d(c))] for c in test[0]])
    ce = -np.log(p[rows, test[1]])
    return ce, (classes - 1) / (2 * counts.sum(1).min())


def assert_matches_baseline(ce: np.ndarray, excess: float, baseline: float) -> None:
    """The estimate lies in [baseline - 4 se, baseline + 4 se + excess]: no memoryless predictor beats
    the baseline beyond sampling noise, and the fitted one comes within its estimation error of it."""
    se = ce.std() / math.sqrt(ce.size)
    assert baseline - 4 * se <= ce.mean() <= baseline + 4 * se + excess, (ce.mean(), baseline, se, excess)


def perfect_logits(targets: np.ndarray, classes: int) -> jax.Array:
    return 100.0 * jax.nn.one_hot(np.where(targets == IGNORE, 0, targets), classes)


# ---------------------------------------------------------------------------------------------- selective_copy


def test_selective_copy_layout_matches_the_source():
    T, k, B = 20, 4, SC_DRAW
    task = make_task("selective_copy", T, "num_symbols=4")
    assert task == SC and (task.length, task.input_size, task.num_outputs) == (T + k, 16, 16)
    inputs, targets = draw(task, 0, B)
    assert inputs.shape == (B, T + k, 16) and inputs.dtype == np.float32 and np.all(inputs.sum(-1) == 1)
    assert targets.shape == (B, T + k) and targets.dtype == np.int32
    tokens = inputs.argmax(-1)
    body = tokens[:, :T]
    data = body != 15  # noise 15 = V-1 everywhere else
    assert np.all(data.sum(1) == k)  # k symbols at k distinct positions
    assert np.all((body[data] >= 1) & (body[data] <= 14))
    assert np.all(tokens[:, T:] == 0)  # k markers
    assert np.all(targets[:, :T] == IGNORE)
    np.testing.assert_array_equal(targets[:, T:], body[data].reshape(B, k))  # the symbols, in order of position
    np.testing.assert_allclose(data.mean(0), k / T, atol=4 * math.sqrt(k / T / B))  # positions uniform
    freq = np.bincount(targets[:, T:].ravel(), minlength=15)[1:] / (B * k)
    np.testing.assert_allclose(freq, 1 / 14, atol=4 * math.sqrt(1 / 14 / (B * k)))


def test_selective_copy_baseline_is_the_best_memoryless_predictor():
    task, k = SC, SC.num_symbols
    assert task.baseline == pytest.approx(math.log(14))
    assert SelectiveCopy(9, num_symbols=3, vocab_size=8).baseline == pytest.approx(math.log(6))

    def scored(seed):  # what a memoryless predictor sees at each output position: the marker and the position
        x, y = draw(task, seed, SC_DRAW)
        where = np.broadcast_to(np.arange(task.length), y.shape)[:, -k:]
        return np.stack([x.argmax(-1)[:, -k:].ravel(), where.ravel()], 1), y[:, -k:].ravel()

    ce, excess = memoryless_ce(scored(0), scored(1), 16)
    assert_matches_baseline(ce, excess, task.baseline)


def test_selective_copy_metrics_of_a_perfect_and_a_memoryless_predictor():
    task = SC
    targets = draw(task, 0, SC_DRAW)[1][:16]
    m = task.metrics(perfect_logits(targets, 16), targets)
    assert float(m["loss"]) < 1e-6 and float(m["recall_accuracy"]) == 1.0 and task.solved(m)
    uniform_symbols = jnp.log(jnp.full(16, 1 / 14).at[jnp.array([0, 15])].set(1e-30))  # not the marker, nor noise
    m = task.metrics(jnp.broadcast_to(uniform_symbols, (16, task.length, 16)), targets)
    assert float(m["ratio"]) == pytest.approx(1.0, rel=1e-5) and not task.solved(m)


# ---------------------------------------------------------------------------------------------- associative_recall


def mqar_parts(task, inputs, targets):
    """(tokens, context keys (B, n), context values (B, n), query positions (B, q) sorted)."""
    n = task.num_kv_pairs
    tokens = inputs.argmax(-1)
    asked = np.sort(np.nonzero(targets != IGNORE)[1].reshape(len(targets), -1), axis=1)
    return tokens, tokens[:, 0 : 2 * n : 2], tokens[:, 1 : 2 * n : 2], asked


def test_associative_recall_layout_matches_the_source():
    T, n, V, B = 24, 4, 20, AR_DRAW
    task = make_task("associative_recall", T, {"num_kv_pairs": n, "vocab_size": V})
    assert task == AR and task.queries == n and (task.input_size, task.num_outputs, task.length) == (V, V, T)
    inputs, targets = draw(task, 0, B)
    assert inputs.shape == (B, T, V) and inputs.dtype == np.float32 and np.all(inputs.sum(-1) == 1)
    assert targets.shape == (B, T) and targets.dtype == np.int32
    tokens, keys, values, asked = mqar_parts(task, inputs, targets)
    assert np.all((keys >= 1) & (keys < V // 2)) and np.all((values >= V // 2) & (values < V))
    assert all(len(set(r)) == n for r in keys) and all(len(set(r)) == n for r in values)  # distinct
    assert asked.shape == (B, n) and np.all(asked >= 2 * n) and np.all((asked - 2 * n) % 2 == 0)
    queried = np.take_along_axis(tokens, asked, 1)
    assert np.all(np.sort(queried, 1) == np.sort(keys, 1))  # every key queried once
    for b in range(50):
        pairs = dict(zip(keys[b], values[b], strict=True))
        assert all(targets[b, p] == pairs[tokens[b, p]] for p in asked[b])
    # Pair i sits at the i-th gap drawn; the first draw's gap g has P(g) ~ (g+1)^(a-1), a = 0.01.
    first_gap = (np.argmax(targets == values[:, :1], axis=1) - 2 * n) // 2  # where pair 1's value is asked
    slots = (T - 2 * n) // 2
    p = np.arange(1, slots + 1) ** (0.01 - 1)
    p /= p.sum()
    np.testing.assert_allclose(np.bincount(first_gap, minlength=slots) / B, p, atol=4 * math.sqrt(0.25 / B))
    fill = np.ones_like(tokens, bool)
    fill[:, : 2 * n] = False
    np.put_along_axis(fill, asked, False, 1)
    np.testing.assert_allclose(np.bincount(tokens[fill], minlength=V) / fill.sum(), 1 / V, atol=0.01)  # uniform fill


def test_associative_recall_fewer_queries_and_zero_fill():
    T, n, q, V = 24, 4, 2, 20
    task = AssociativeRecall(T, num_kv_pairs=n, vocab_size=V, num_queries=q, random_non_queries=False)
    inputs, targets = draw(task, 1, 500)
    tokens, keys, values, asked = mqar_parts(task, inputs, targets)
    assert asked.shape == (500, q)
    queried = np.take_along_axis(tokens, asked, 1)
    assert all(set(qr) <= set(kr) for qr, kr in zip(queried, keys, strict=True))
    fill = np.ones_like(tokens, bool)
    fill[:, : 2 * n] = False
    np.put_along_axis(fill, asked, False, 1)
    assert np.all(tokens[fill] == 0) and set(np.unique(keys)) == set(range(1, V // 2))


def test_associative_recall_baseline_is_the_best_memoryless_predictor():
    """Even knowing the queried key and the position, the value stays uniform over the V - V//2 values."""
    task = AR
    assert task.baseline == pytest.approx(math.log(10))
    assert AssociativeRecall(64).baseline == pytest.approx(math.log(4096))

    def scored(seed):
        inputs, targets = draw(task, seed, AR_DRAW)
        b, t = np.nonzero(targets != IGNORE)
        return np.stack([inputs.argmax(-1)[b, t], t], 1), targets[b, t]

    ce, excess = memoryless_ce(scored(0), scored(1), 20)
    assert_matches_baseline(ce, excess, task.baseline)


def test_associative_recall_metrics_of_a_perfect_and_a_memoryless_predictor():
    task = AR
    targets = draw(task, 0, AR_DRAW)[1][:16]
    m = task.metrics(perfect_logits(targets, 20), targets)
    assert float(m["loss"]) < 1e-6 and float(m["recall_accuracy"]) == 1.0 and task.solved(m)
    uniform_values = jnp.log(jnp.zeros(20).at[10:].set(1 / 10) + 1e-30)
    m = task.metrics(jnp.broadcast_to(uniform_values, (16, 24, 20)), targets)
    assert float(m["ratio"]) == pytest.approx(1.0, rel=1e-5) and not task.solved(m)


# ---------------------------------------------------------------------------------------------- temporal_order


@pytest.mark.parametrize(
    "variant, T, ranges",
    [
        ("6a", 100, [(10, 20), (50, 60)]),
        ("6b", 100, [(10, 20), (33, 43), (66, 76)]),
        ("6a", 210, [(21, 42), (105, 126)]),
    ],
)
def test_temporal_order_layout_matches_the_paper(variant, T, ranges):
    task = TemporalOrder(T, variant=variant)
    assert task.ranges == tuple(ranges) and task.num_outputs == 2 ** len(ranges) and task.input_size == 8
    B = 4000
    inputs, labels = draw(task, 7, B)
    assert inputs.shape == (B, T, 8) and inputs.dtype == np.float32 and labels.shape == (B,)
    tokens = inputs.argmax(-1)
    symbols = np.array(list("abcdXYEB"))[tokens]
    assert np.all(symbols[:, 0] == "E") and np.all(symbols[:, -1] == "B")
    assert np.all(np.isin(symbols[:, 1:-1], list("abcdXY")))
    b, t = np.nonzero(np.isin(symbols, ["X", "Y"]))
    positions = (t + 1).reshape(B, len(ranges))  # 1-based, in order
    for i, (lo, hi) in enumerate(ranges):  # every position of the range used, none outside
        assert set(positions[:, i]) == set(range(lo, hi + 1))
    bits = (symbols[b, t] == "Y").reshape(B, -1)
    np.testing.assert_array_equal(labels, bits @ (2 ** np.arange(len(ranges))[::-1]))  # XX->Q=0, XY->R=1, ...
    np.testing.assert_allclose(np.bincount(labels) / B, 1 / task.num_outputs, atol=4 * math.sqrt(0.25 / B))


@pytest.mark.parametrize("variant", ["6a", "6b"])
def test_temporal_order_baseline_is_the_best_memoryless_predictor(variant):
    task = TemporalOrder(100, variant=variant)
    assert task.baseline == pytest.approx(math.log(4 if variant == "6a" else 8))

    def scored(seed):  # the final step: its input (always B) and its position
        inputs, labels = draw(task, seed, 4000)
        return inputs[:, -1].argmax(-1), labels

    ce, excess = memoryless_ce(scored(8), scored(9), task.num_outputs)
    assert_matches_baseline(ce, excess, task.baseline)


def test_temporal_order_solved_is_the_papers_absolute_error_criterion():
    task = TemporalOrder(20)
    labels = jnp.arange(8) % 4
    m = task.metrics(perfect_logits(np.asarray(labels), 4), labels)
    assert float(m["loss"]) < 1e-6 and float(m["strict_accuracy"]) == 1.0 and task.solved(m)
    # p_target = 0.6: argmax right, but |1 - 0.6| = 0.4 > 0.3, so the paper counts it wrong.
    p = jnp.full((8, 4), 0.4 / 3).at[jnp.arange(8), labels].set(0.6)
    m = task.metrics(jnp.log(p), labels)
    assert float(m["accuracy"]) == 1.0 and float(m["strict_accuracy"]) == 0.0 and not task.solved(m)
    p = jnp.full((8, 4), 0.2 / 3).at[jnp.arange(8), labels].set(0.8)  # every output within 0.3 of its target
    assert float(task.metrics(jnp.log(p), labels)["strict_accuracy"]) == 1.0


# ---------------------------------------------------------------------------------------------- digits


def test_digits_splits_are_fixed_disjoint_and_sized():
    split = digits_data.split_indices()
    assert {k: len(v) for k, v in split.items()} == {"test": 360, "valid": 180, "train": 1257}
    every = np.concatenate(list(split.values()))
    assert len(set(every)) == 1797 == len(every)  # disjoint, and together the whole data set
    np.testing.assert_array_equal(np.sort(every), np.arange(1797))
    np.testing.assert_array_equal(split["test"], np.random.default_rng(digits_data.SPLIT_SEED).permutation(1797)[:360])
    for n in (360, 180):  # the evaluation's chunk (largest divisor <= 250) is 180 for both
        assert max(d for d in range(1, 251) if n % d == 0) == 180


@pytest.mark.parametrize("cls", [Digits, PermutedDigits])
def test_digits_batches_and_held_out_sets(cls):
    task = cls(64)
    images, labels = digits_data.load()
    order = digits_data.pixel_permutation() if cls is PermutedDigits else np.arange(64)
    x, y = (a[:300] for a in draw(task, 11, DIGITS_DRAW))
    assert x.shape == (300, 64, 1) and x.dtype == np.float32 and y.shape == (300,) and y.dtype == np.int32
    train = {images[i][order].tobytes(): labels[i] for i in digits_data.split_indices()["train"]}
    assert all(train.get(xi[:, 0].tobytes()) == yi for xi, yi in zip(x, y, strict=True))  # training images only
    assert len({xi.tobytes() for xi in x}) > 200  # uniform with replacement from 1257: ~267 distinct
    for split, size, n in (("test", 1000, 360), ("test", 16, 16), ("valid", 1000, 180)):
        hx, hy = task.held_out(split, size)
        idx = digits_data.split_indices()[split][:n]
        assert hx.shape == (n, 64, 1) and hy.shape == (n,)
        np.testing.assert_array_equal(np.asarray(hx)[..., 0], images[idx][:, order])
        np.testing.assert_array_equal(np.asarray(hy), labels[idx])
    assert images.min() == 0.0 and images.max() == 1.0
    with pytest.raises(ValueError, match="split must be one of test, valid"):
        task.held_out("train", 10)


def test_permuted_digits_uses_one_fixed_true_permutation():
    perm = digits_data.pixel_permutation()
    np.testing.assert_array_equal(np.sort(perm), np.arange(64))
    assert not np.array_equal(perm, np.arange(64))
    np.testing.assert_array_equal(perm, np.random.default_rng(digits_data.PERMUTATION_SEED).permutation(64))
    sequential, _ = Digits(64).held_out("valid", 8)
    permuted, _ = PermutedDigits(64).held_out("valid", 8)
    np.testing.assert_array_equal(np.asarray(permuted), np.asarray(sequential)[:, perm])


def test_digits_baseline_is_the_class_prior_and_the_linear_reference_holds():
    from sklearn.linear_model import LogisticRegression

    task = Digits(64)
    _, labels = draw(task, 11, DIGITS_DRAW)  # the training distribution, by sampling
    prior = np.bincount(labels, minlength=10) / len(labels)
    _, test_labels = task.held_out("test", 1000)
    ce = -np.log(prior[np.asarray(test_labels)])
    # The CE of a prior counted from n draws of p, scored on test frequencies q, has (delta method) variance
    # (sum_c q_c^2 / p_c - 1) / n around the exact one, and a bias of about (K-1)/(2n).
    train = digits_data.load()[1][digits_data.split_indices()["train"]]
    p, q = np.bincount(train, minlength=10) / len(train), np.bincount(test_labels, minlength=10) / len(test_labels)
    sd = math.sqrt((np.sum(q**2 / p) - 1) / len(labels))
    assert abs(ce.mean() - task.baseline) <= 4 * sd + 9 / (2 * len(labels)), (ce.mean(), task.baseline, sd)
    assert task.baseline == pytest.approx(2.3072, abs=1e-4) and task.baseline == pytest.approx(math.log(10), abs=0.01)
    images, all_labels = digits_data.load()
    split = digits_data.split_indices()
    clf = LogisticRegression(max_iter=5000).fit(images[split["train"]], all_labels[split["train"]])
    assert round(clf.score(images[split["test"]], all_labels[split["test"]]) * 360) == 346  # 0.961, the docstring's
    x, y = task.held_out("test", 1000)
    m = task.metrics(perfect_logits(np.asarray(y), 10), y)
    assert float(m["loss"]) < 1e-6 and task.solved(m)
    m = task.metrics(jnp.broadcast_to(jnp.log(jnp.asarray(prior, jnp.float32)), (360, 10)), y)
    assert float(m["ratio"]) == pytest.approx(1.0, abs=1e-3) and not task.solved(m)


# ---------------------------------------------------------------------------------------------- all five


def test_sampling_is_a_pure_function_of_the_key():
    """Two traces give the same program, constants included (no state, no host randomness), and the
    compiled program gives the same batch for the same key."""
    tasks = {  # the tasks and batch sizes of the tests above: their samplers are compiled already
        SC: SC_DRAW,
        AR: AR_DRAW,
        TemporalOrder(100): 4000,
        PermutedDigits(64): DIGITS_DRAW,
    }
    for task, B in tasks.items():
        first, second = (jax.make_jaxpr(lambda key, task=task, B=B: task.sample(key, B))(KEY) for _ in range(2))
        assert str(first.jaxpr) == str(second.jaxpr) and len(first.consts) == len(second.consts)
        assert all(np.array_equal(u, v) for u, v in zip(first.consts, second.consts, strict=True))
        a, b, c = (sampler(task, B)(jax.random.PRNGKey(seed)) for seed in (12, 12, 13))
        assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])
        held_out = jax.eval_shape(functools.partial(task.held_out, "test", 4))
        assert [(h.shape, h.dtype) for h in held_out] == [((4, *u.shape[1:]), u.dtype) for u in a]


@pytest.mark.parametrize(
    "name, T, options, message",
    [
        ("selective_copy", 10, "num_symbols=11", "num_symbols must be an integer in \\[1, 10\\]"),
        ("selective_copy", 10, "vocab_size=3", "vocab_size must be an integer >= 4"),
        ("selective_copy", 10, "num_symbols=2.5", "num_symbols must be an integer"),
        ("associative_recall", 31, "", "needs an even seq_len"),
        ("associative_recall", 32, "num_kv_pairs=9", "num_kv_pairs must be an integer in \\[1, 8\\]"),
        ("associative_recall", 32, "num_kv_pairs=4,vocab_size=9", "vocab_size must be an integer >= 10"),
        ("associative_recall", 32, "num_kv_pairs=4,num_queries=5", "num_queries must be an integer in \\[1, 4\\]"),
        ("associative_recall", 32, "power_a=0", "power_a must be a number > 0"),
        ("associative_recall", 32, "random_non_queries=1", "random_non_queries must be one of True, False"),
        ("temporal_order", 100, "variant=6c", "variant must be one of 6a, 6b; got '6c'"),
        ("temporal_order", 19, "", "temporal_order needs seq_len >= 20"),
        ("digits", 100, "", "digits reads 64 pixels \\(8x8\\): seq_len must be 64; got 100"),
        ("permuted_digits", 63, "", "permuted_digits reads 64 pixels"),
        ("digits", 64, "permuted=True", "task 'digits' has no option permuted; its options: none"),
    ],
)
def test_bad_options_are_refused_in_one_line(name, T, options, message):
    with pytest.raises(ValueError, match=message) as e:
        make_task(name, T, options)
    assert "\n" not in str(e.value)


def test_options_by_name():
    assert make_task("selective_copy", 50, "num_symbols=4").num_symbols == 4
    task = make_task("associative_recall", 64, "num_kv_pairs=4,vocab_size=64,num_queries=2,power_a=1")
    assert (task.num_kv_pairs, task.vocab_size, task.queries, task.power_a) == (4, 64, 2, 1)
    assert make_task("temporal_order", 100, "variant=6b").num_outputs == 8
    assert SelectiveCopy.options() == ("num_symbols", "vocab_size") and TemporalOrder.options() == ("variant",)
    assert AssociativeRecall.options() == (
        "num_kv_pairs",
        "vocab_size",
        "num_queries",
        "power_a",
        "random_non_queries",
    )
    assert Digits.options() == PermutedDigits.options() == ()


@pytest.mark.parametrize(
    "task, seq_len, options",
    [
        ("selective_copy", 12, "num_symbols=2,vocab_size=6"),
        ("associative_recall", 8, "num_kv_pairs=2,vocab_size=8"),
        ("temporal_order", 20, ""),
        ("digits", 64, ""),
        ("permuted_digits", 64, ""),
    ],
)
def test_trains_end_to_end(tmp_path, task, seq_len, options):
    config = Config(
        cell="rnn",
        task=task,
        task_options=options,
        seq_len=seq_len,
        hidden_size=8,
        batch_size=8,
        steps=2,
        eval_every=2,
        eval_size=16,
        checkpoint_every=0,
        tensorboard=False,
        sequence_path="step",
        unroll=1,
    )
    results = train_and_evaluate(config, tmp_path)
    final = results["seeds"][0]["final"]
    assert results["steps_done"] == 2 and np.isfinite(final["loss"]) and results["baseline"] > 0
    task_obj = make_task(task, seq_len, options)
    assert set(task_obj.table_metrics) <= set(final) and task_obj.solved_metric in final

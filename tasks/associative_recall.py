"""Multi-query associative recall, MQAR (Arora, Eyuboglu et al. 2023, "Zoology: measuring and improving
recall in efficient language models"; generator HazyResearch/zoology zoology/data/multiquery_ar.py)."""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from tasks.base import Task
from tasks.common import OneHotTokens, check_choice, check_int, distinct_integers

IGNORE = -100  # target of a position without loss (the source's label for "ignored")


@dataclasses.dataclass(frozen=True)
class AssociativeRecall(OneHotTokens, Task):
    r"""Read n key-value pairs, then answer each key queried later with its value.

    Tokens (V = `vocab_size`, h = V // 2): keys 1..h-1, values h..V-1, filler 0. Length T = `seq_len`
    (the whole sequence; T even, T >= 4n), with n = `num_kv_pairs` and q = `num_queries`::

        positions 0..2n-1      k_1 v_1 k_2 v_2 ... k_n v_n     keys distinct, values distinct (each
                                                                drawn without replacement, independently)
        positions 2n..T-1      filler, except query i at 2n + 2 g_i: the key k_{j_i}
        target                 v_{j_i} at position 2n + 2 g_i (the step that reads the query), else ignored

    Query slots: the gaps g_1..g_q are drawn without replacement from {0..S-1}, S = (T - 2n) / 2, with
    P(g) proportional to (g+1)^(a-1), a = `power_a` (the source's power law: 0.01 puts the queries
    near the pairs; 1 is uniform), each new draw renormalised over what is left (numpy's
    `choice(replace=False, p=...)`; here Gumbel top-q, the same distribution). The source queries every
    key once, pair i at the i-th gap drawn: that is q = n (the default, `num_queries=None`); q < n queries a
    uniform q-subset of the pairs, kept in context order, j_1 < ... < j_q, at the gaps in draw order.
    `random_non_queries` (the source's default): every filler 0 becomes a uniform token of [0, V) (so
    noise may repeat keys and values; only the real queries carry a target). The source's
    `vocab_size > input_seq_len` assertion is not needed by the sampling and not required here.

    Inputs one-hot (B, T, V); outputs (B, T, V), the source's next-token head over the vocabulary;
    targets (B, T) int32, -100 where there is no loss. Loss: cross-entropy at the q query positions,
    averaged over them (the source's loss ignores the -100 labels). Metric `recall_accuracy`: argmax
    accuracy at the query positions (the source's accuracy; chance 1/(V-h)). Solved (our convention,
    the paper plots accuracy): recall_accuracy >= 0.99.

    Baseline: a memoryless predictor sees at a query position its key and its position. The value
    answering it is a uniform draw from the V - h values: values are drawn without replacement,
    independently of the keys and of where the queries sit, so the marginal of any one of them is
    uniform whatever the key and position. What a predictor could exploit, that the values of one
    sequence differ, needs the other values, i.e. memory. The best distribution is that uniform
    marginal; CE ln(V - h) at every query position, and so for their average: ln(V - V//2) (ln 4096 =
    8.318 at V = 8192). It does not depend on T: headline "loss".

    Options (defaults the source's, MQARConfig and `multiquery_ar`): `num_kv_pairs` 8, `vocab_size`
    8192 (its documented default: "large vocabulary sizes (>1k) can be important"), `num_queries` None
    (= n), `power_a` 0.01, `random_non_queries` True. Its figure-2 sweeps are T = 64..512, n = 4..64.
    One-hot inputs of 8192 make a large held-out set (B x T x 8192 floats: 2 GiB for 1000 sequences at
    T = 64); a smaller `vocab_size` is a smaller task in the same family.
    """

    num_kv_pairs: int = 8
    vocab_size: int = 8192
    num_queries: int | None = None
    power_a: float = 0.01
    random_non_queries: bool = True
    readout: ClassVar[str] = "all"
    metric_name: ClassVar[str] = "CE"
    solved_metric: ClassVar[str] = "recall_accuracy"
    solved_above: ClassVar[float] = 0.99
    headline: ClassVar[str] = "loss"
    table_metrics: ClassVar[tuple[str, ...]] = ("recall_accuracy",)
    baseline_formula: ClassVar[str] = "ln(vocab_size - vocab_size // 2)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len % 2:
            raise ValueError(f"associative_recall needs an even seq_len (query slots are pairs); got {self.seq_len}")
        n = self.num_kv_pairs
        check_int("num_kv_pairs", n, 1, self.seq_len // 4, why="2n pair tokens, then n query slots: 4n <= seq_len")
        check_int("vocab_size", self.vocab_size, 2 * n + 2, why="n distinct keys among 1..vocab_size//2-1")
        if self.num_queries is not None:
            check_int("num_queries", self.num_queries, 1, n, why="each queries a distinct pair")
        a = self.power_a
        if isinstance(a, bool) or not isinstance(a, int | float) or not (math.isfinite(a) and a > 0):
            raise ValueError(f"power_a must be a number > 0 (1 = uniform query gaps); got {a!r}")
        check_choice("random_non_queries", self.random_non_queries, (True, False))

    @property
    def queries(self) -> int:
        """q: the number of queries per sequence."""
        return self.num_kv_pairs if self.num_queries is None else self.num_queries

    @property
    def baseline(self) -> float:
        return math.log(self.vocab_size - self.vocab_size // 2)

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        T, n, V, q, B = self.seq_len, self.num_kv_pairs, self.vocab_size, self.queries, batch_size
        h, slots = V // 2, (T - 2 * n) // 2
        k_keys, k_values, k_gaps, k_pairs, k_fill = jax.random.split(key, 5)
        keys = 1 + distinct_integers(k_keys, B, h - 1, n)
        values = h + distinct_integers(k_values, B, V - h, n)
        # Gumbel top-q: q draws without replacement, in draw order, P(g) ~ (g+1)^(a-1)
        log_p = (self.power_a - 1.0) * jnp.log(jnp.arange(1, slots + 1, dtype=jnp.float32))
        gaps = jax.lax.top_k(log_p + jax.random.gumbel(k_gaps, (B, slots)), q)[1]
        if q == n:  # the source: pair i is asked at the i-th gap drawn
            pairs = jnp.broadcast_to(jnp.arange(n), (B, n))
        else:  # a uniform q-subset of the pairs, in context order
            pairs = jnp.sort(distinct_integers(k_pairs, B, n, q), axis=-1)
        rows, where = jnp.arange(B)[:, None], 2 * n + 2 * gaps
        context = jnp.stack([keys, values], axis=-1).reshape(B, 2 * n)
        tokens = jnp.concatenate([context, jnp.zeros((B, T - 2 * n), jnp.int32)], axis=1)
        tokens = tokens.at[rows, where].set(jnp.take_along_axis(keys, pairs, axis=1))
        targets = jnp.full((B, T), IGNORE, jnp.int32).at[rows, where].set(jnp.take_along_axis(values, pairs, axis=1))
        if self.random_non_queries:
            tokens = jnp.where(tokens == 0, jax.random.randint(k_fill, (B, T), 0, V), tokens)
        return jax.nn.one_hot(tokens, V), targets

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        asked = targets != IGNORE
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, jnp.where(asked, targets, 0))
        return jnp.sum(ce * asked, axis=-1) / self.queries

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        asked = targets != IGNORE
        right = (outputs.argmax(-1) == targets) & asked
        return {"recall_accuracy": jnp.sum(right) / jnp.sum(asked)}

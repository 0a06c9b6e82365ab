"""Selective copying (Gu & Dao 2023, "Mamba", section 3.1 and appendix E.1), in the minGRU paper's variant
(Feng et al. 2024, "Were RNNs all we needed?", reference code BorealisAI/minRNNs data/selective_copy.py)."""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from tasks.base import Task
from tasks.common import OneHotTokens, check_int, distinct_integers

PRED = 0  # the marker token that asks for the next symbol (the source's <PRED>)
IGNORE = -100  # target of a position without loss (PyTorch's ignore_index, as the sources write it)


@dataclasses.dataclass(frozen=True)
class SelectiveCopy(OneHotTokens, Task):
    r"""Find `num_symbols` symbols scattered among noise tokens, then output them in order.

    Tokens (V = `vocab_size`): the marker 0, data symbols 1..V-2, the noise token V-1. With
    k = `num_symbols`, a sequence is T + k long (T = `seq_len`, the part the symbols are scattered in)::

        input   T tokens: noise V-1, except s_1..s_k at k distinct uniform positions p_1 < ... < p_k;
                then k markers 0                                       one-hot over V
        target  (ignored) x T, then s_1..s_k                            V classes

    s_i uniform over the V-2 data symbols (with replacement), the positions a uniform k-subset of
    [0, T), the symbols in order of position. Outputs (B, T + k, V); targets (B, T + k) int32,
    -100 (no loss) at the T input positions.

    Variant: the minGRU paper's code, because it is the reference of the minGRU/minLSTM cells this
    project compares. Its defaults (V = 16, k = 16) are Mamba's setting (E.1: "sequences of length
    4096, with a vocab size of 16 possible tokens (including the white noise token) ... 16 data
    tokens"). The `copying` generator of state-spaces/s4 (the Mamba authors' repository) with
    `variable=True` is the same task up to labels: noise 0, marker A-1, and its L noise tokens make
    our T = L + k.

    Loss: as both sources, cross-entropy on the k output positions only, averaged over them (and the
    batch). Metric `recall_accuracy`: argmax accuracy per recalled symbol (minRNNs' `acc`; chance
    1/(V-2)). Solved (our convention; the sources report accuracy only): recall_accuracy >= 0.99.

    Baseline: at an output position a memoryless predictor sees the marker and its position, both
    independent of s_j, which is uniform over the V-2 data symbols; the best fixed distribution under
    cross-entropy is that marginal, with loss its entropy, per output position and so for the average:
    ln(V-2) (ln 14 = 2.639 at V = 16). It does not depend on T: headline "loss".

    Options: `num_symbols` (k, default 16), `vocab_size` (V, default 16).
    """

    num_symbols: int = 16
    vocab_size: int = 16
    readout: ClassVar[str] = "all"
    metric_name: ClassVar[str] = "CE"
    solved_metric: ClassVar[str] = "recall_accuracy"
    solved_above: ClassVar[float] = 0.99
    headline: ClassVar[str] = "loss"
    table_metrics: ClassVar[tuple[str, ...]] = ("recall_accuracy",)
    baseline_formula: ClassVar[str] = "ln(vocab_size - 2)"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("vocab_size", self.vocab_size, 4, why="a marker, a noise token and >= 2 data symbols")
        check_int("num_symbols", self.num_symbols, 1, self.seq_len, why="distinct positions among seq_len")

    @property
    def length(self) -> int:
        return self.seq_len + self.num_symbols

    @property
    def baseline(self) -> float:
        return math.log(self.vocab_size - 2)

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        T, k, V = self.seq_len, self.num_symbols, self.vocab_size
        k_symbols, k_positions = jax.random.split(key)
        symbols = jax.random.randint(k_symbols, (batch_size, k), 1, V - 1)
        positions = jnp.sort(distinct_integers(k_positions, batch_size, T, k), axis=-1)
        rows = jnp.arange(batch_size)[:, None]
        body = jnp.full((batch_size, T), V - 1, jnp.int32).at[rows, positions].set(symbols)
        tokens = jnp.concatenate([body, jnp.full((batch_size, k), PRED, jnp.int32)], axis=1)
        targets = jnp.concatenate([jnp.full((batch_size, T), IGNORE, jnp.int32), symbols], axis=1)
        return jax.nn.one_hot(tokens, V), targets

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        k = self.num_symbols
        return optax.softmax_cross_entropy_with_integer_labels(outputs[:, -k:], targets[:, -k:]).mean(axis=-1)

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        k = self.num_symbols
        return {"recall_accuracy": jnp.mean(outputs[:, -k:].argmax(-1) == targets[:, -k:])}

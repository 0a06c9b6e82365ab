"""Copy memory task (Arjovsky, Shah & Bengio 2016, section 4.1; after Hochreiter & Schmidhuber 1997)."""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from tasks.base import Task

BLANK, DELIMITER, NUM_SYMBOLS, NUM_RECALL = 0, 9, 8, 10


@dataclasses.dataclass(frozen=True)
class CopyMemory(Task):
    r"""Remember 10 symbols over a delay of T steps, then reproduce them.

    Categories: blank 0, data symbols 1..8 (uniform, with replacement), delimiter 9.
    Sequence length T + 20::

        input   s1..s10  0 x (T-1)  9  0 x 10        one-hot over 10 categories
        target  0 x (T+10)          s1..s10          9 classes (blank + 8 symbols)

    Loss: cross-entropy averaged over all T + 20 positions. Memoryless baseline (blank
    until the delimiter, then uniform over the 8 symbols): 10 ln 8 / (T + 20).
    Metrics: `recall_accuracy`, argmax accuracy on the 10 recalled symbols (chance 1/8).
    Solved (our convention): recall accuracy >= 0.99.
    """

    input_size: ClassVar[int] = 10
    num_outputs: ClassVar[int] = 9
    readout: ClassVar[str] = "all"
    metric_name: ClassVar[str] = "CE"
    solved_metric: ClassVar[str] = "recall_accuracy"
    solved_above: ClassVar[float] = 0.99
    headline: ClassVar[str] = "ratio"
    table_metrics: ClassVar[tuple[str, ...]] = ("recall_accuracy",)
    baseline_formula: ClassVar[str] = "10 ln 8 / (T + 20)"

    @property
    def length(self) -> int:
        return self.seq_len + 2 * NUM_RECALL

    @property
    def baseline(self) -> float:
        return NUM_RECALL * math.log(NUM_SYMBOLS) / self.length

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        T = self.seq_len
        symbols = jax.random.randint(key, (batch_size, NUM_RECALL), 1, NUM_SYMBOLS + 1)

        def blanks(n: int) -> jax.Array:
            return jnp.full((batch_size, n), BLANK, jnp.int32)

        delimiter = jnp.full((batch_size, 1), DELIMITER, jnp.int32)
        tokens = jnp.concatenate([symbols, blanks(T - 1), delimiter, blanks(NUM_RECALL)], axis=1)
        targets = jnp.concatenate([blanks(T + NUM_RECALL), symbols], axis=1)
        return jax.nn.one_hot(tokens, self.input_size), targets

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean(axis=-1)

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        recalled = outputs[:, -NUM_RECALL:].argmax(-1) == targets[:, -NUM_RECALL:]
        return {"recall_accuracy": recalled.mean()}

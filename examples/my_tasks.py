"""A user's own task, kept outside the repo's tasks/: recall the first symbol of a sequence.

    python -m experiments.train --task=examples.my_tasks:FirstSymbol --task_options=num_symbols=8
    python -m benchmarks.tables --task=examples.my_tasks:FirstSymbol --cells=lstm,gru --seq_lens=20,50

The latching problem of Bengio, Simard & Frasconi (1994), as classification: T symbols drawn
uniformly from K, one-hot; the target, read at the last step, is the first one. Only the first step
matters, so the task measures how long a cell holds one input. Memoryless baseline: the class prior,
uniform, so CE = ln K. Solved: accuracy >= 0.99.
"""

import dataclasses
import math
from typing import ClassVar

import jax
import optax

from tasks import Task


@dataclasses.dataclass(frozen=True)
class FirstSymbol(Task):
    num_symbols: int = 4  # K

    input_size: ClassVar[int] = 8  # one-hot width: room for K <= 8
    num_outputs: ClassVar[int] = 8
    readout: ClassVar[str] = "last"
    metric_name: ClassVar[str] = "CE"
    solved_metric: ClassVar[str] = "accuracy"
    solved_above: ClassVar[float] = 0.99
    table_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    baseline_formula: ClassVar[str] = "ln K"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.num_symbols <= self.input_size:
            raise ValueError(f"num_symbols must be in [2, {self.input_size}]; got {self.num_symbols!r}")

    @property
    def baseline(self) -> float:
        return math.log(self.num_symbols)

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        symbols = jax.random.randint(key, (batch_size, self.seq_len), 0, self.num_symbols)
        return jax.nn.one_hot(symbols, self.input_size), symbols[:, 0]

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        return {"accuracy": (outputs.argmax(-1) == targets).mean()}

"""Adding problem, in the definition of Arjovsky, Shah & Bengio (2016) used by most later papers."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Adding(Task):
    r"""Add the two marked numbers of a length-T sequence.

    Input (T, 2): channel 0 holds U[0, 1) values; channel 1 is zero except two ones, the
    first at a uniform position in [0, T//2), the second in [T//2, T). Target: the sum of
    the two marked values, predicted at the last step only. Loss: MSE.
    Baseline: always predicting 1 gives Var(U1 + U2) = 1/6. Solved: MSE < 0.01 (the
    threshold most papers use; Rusch et al. 2022 logs).
    """

    input_size: ClassVar[int] = 2
    num_outputs: ClassVar[int] = 1
    readout: ClassVar[str] = "last"
    metric_name: ClassVar[str] = "MSE"
    solved_below: ClassVar[float] = 0.01
    baseline_formula: ClassVar[str] = "1/6"

    @property
    def baseline(self) -> float:
        return 1.0 / 6.0

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        T, half = self.seq_len, self.seq_len // 2
        k_values, k_first, k_second = jax.random.split(key, 3)
        values = jax.random.uniform(k_values, (batch_size, T))
        first = jax.random.randint(k_first, (batch_size,), 0, half)
        second = jax.random.randint(k_second, (batch_size,), half, T)
        marks = jax.nn.one_hot(first, T) + jax.nn.one_hot(second, T)
        inputs = jnp.stack([values, marks], axis=-1)
        return inputs, jnp.sum(values * marks, axis=1)

    def memoryless_outputs(self, inputs: jax.Array) -> jax.Array:
        """Always 1, the mean of the target (B, 1)."""
        return jnp.ones((inputs.shape[0], 1), inputs.dtype)

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        return (outputs[:, 0] - targets) ** 2

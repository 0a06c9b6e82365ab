"""The task contract: batches from a PRNG key, a loss, metrics and an analytic baseline."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Task:
    """A synthetic sequence task of length parameter `seq_len` (T).

    Subclasses set the class attributes and implement `sample`, `per_example_loss` and
    `baseline`; `loss` and `metrics` follow. Everything is a pure jax function, so
    batches are generated inside the jitted train step.

    Attributes:
      input_size: features per time step of `inputs`.
      num_outputs: readout width (classes or regression targets).
      readout: "all" (a prediction at every step) or "last" (only at the final step).
      metric_name: what `metrics()["loss"]` is, for tables ("CE", "MSE").
      solved_metric, solved_below / solved_above: when a run counts as solved.
    """

    seq_len: int
    input_size: ClassVar[int]
    num_outputs: ClassVar[int]
    readout: ClassVar[str]
    metric_name: ClassVar[str]
    solved_metric: ClassVar[str] = "loss"
    solved_below: ClassVar[float | None] = None
    solved_above: ClassVar[float | None] = None

    def __post_init__(self) -> None:
        if not isinstance(self.seq_len, int) or self.seq_len < 2:
            raise ValueError(f"seq_len must be an integer >= 2; got {self.seq_len!r}")

    @property
    def length(self) -> int:
        """Number of time steps the model reads (may exceed `seq_len`, as in copy)."""
        return self.seq_len

    @property
    def baseline(self) -> float:
        """Loss of the best memoryless strategy."""
        raise NotImplementedError

    def sample(self, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """Return (inputs (B, length, input_size), targets)."""
        raise NotImplementedError

    def per_example_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Loss of each sequence, shape (B,)."""
        raise NotImplementedError

    def loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
        return jnp.mean(self.per_example_loss(outputs, targets))

    def extra_metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        return {}

    def metrics(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        """`loss`, `ratio` (loss / baseline) and the task's own metrics."""
        loss = self.loss(outputs, targets)
        return {"loss": loss, "ratio": loss / self.baseline, **self.extra_metrics(outputs, targets)}

    def solved(self, metrics: dict[str, float]) -> bool:
        value = metrics[self.solved_metric]
        if self.solved_below is not None:
            return bool(value < self.solved_below)
        return bool(value >= self.solved_above)

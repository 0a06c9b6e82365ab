"""The task contract: batches from a PRNG key, a loss, metrics, an analytic baseline, and what a
table shows of it (`headline`, `table_metrics`, `baseline_formula`, the solved rule)."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

# Keys of the generated held-out sets (training batches use keys derived from the run's seed);
# 2**31 - 2 is the gradient diagnostics' batch (experiments.diagnostics.DIAG_SEED).
HELD_OUT_KEYS = {"test": 2**31 - 1, "valid": 2**31 - 3}


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
      headline: the metrics key a table leads with: "loss", or "ratio" (loss / baseline) where
        the baseline depends on T.
      table_metrics: further metrics keys a table shows under the headline (e.g. accuracies).
      baseline_formula: the memoryless baseline as a formula of T and the options, for headers.

    Options: any dataclass field besides `seq_len` is a task option (`--task_options=k=v,...`),
    with its default the source's setting.
    """

    seq_len: int
    input_size: ClassVar[int]
    num_outputs: ClassVar[int]
    readout: ClassVar[str]
    metric_name: ClassVar[str]
    solved_metric: ClassVar[str] = "loss"
    solved_below: ClassVar[float | None] = None
    solved_above: ClassVar[float | None] = None
    headline: ClassVar[str] = "loss"
    table_metrics: ClassVar[tuple[str, ...]] = ()
    baseline_formula: ClassVar[str] = ""

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
        """Return (inputs (B, length, input_size), targets): a training batch."""
        raise NotImplementedError

    def held_out(self, split: str, size: int) -> tuple[jax.Array, jax.Array]:
        """The fixed held-out set of `split`, at most `size` sequences, as `sample` returns them.

        "test" is what results report; "valid" is for choosing hyperparameters (the learning rate
        of a sweep), so a choice never sees the test set. A generated task draws each from its own
        fixed key (`HELD_OUT_KEYS`: the same set for every run of a task, T and size); a task on a
        dataset returns (up to `size` of) its fixed split.
        """
        if split not in HELD_OUT_KEYS:
            raise ValueError(f"split must be one of {', '.join(HELD_OUT_KEYS)}; got {split!r}")
        return self.sample(jax.random.PRNGKey(HELD_OUT_KEYS[split]), size)

    def memoryless_outputs(self, inputs: jax.Array) -> jax.Array | None:
        """What the memoryless predictor of `baseline` outputs for a batch, as the model's outputs, or None
        when the task does not say (tables then print only the analytic baseline)."""
        del inputs
        return None

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

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The task's options: its dataclass fields besides `seq_len`."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "seq_len")

    @property
    def solved_rule(self) -> str:
        """The solved rule as text, e.g. "loss < 0.01" or "recall_accuracy >= 0.99"."""
        if self.solved_below is not None:
            return f"{self.solved_metric} < {self.solved_below:g}"
        return f"{self.solved_metric} >= {self.solved_above:g}"

    def solved(self, metrics: dict[str, float]) -> bool:
        value = metrics[self.solved_metric]
        if self.solved_below is not None:
            return bool(value < self.solved_below)
        return bool(value >= self.solved_above)

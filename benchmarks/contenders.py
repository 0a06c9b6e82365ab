"""The contenders `benchmarks.speed` times: each trains with `run(n)` (n steps, blocking on the result) and
says with `check()` whether training stayed finite.

For each setting and cell:

- ours: `Experiment(config).train_step` exactly as `experiments.train` runs it,
  `Experiment.compiled_step()` (vmapped in chunks) over a seed axis (`--num_seeds`, 1 by default):
  `SequenceModel` (our cell under `jax.lax.scan`) + `Dense` readout, the batch made inside the step.
- flax: the same `Experiment.train_step` (same batches, loss, clipping, Adam and bookkeeping)
  with only the model swapped for `nn.Dense(9)(nn.RNN(cell)(x))` over flax's own cell (`FlaxRNNModel`):
  rnn -> `nn.SimpleCell`; lstm -> `nn.OptimizedLSTMCell` and `nn.LSTMCell`; gru -> `nn.GRUCell`.
- torch, when `import torch` works (it is not a project requirement): `torch.nn.RNN/LSTM/GRU`
  (batch_first) + `Linear` + cross-entropy + `clip_grad_norm_` + `Adam`, `torch.set_num_threads(2)`
  and OMP_WAIT_POLICY=PASSIVE unless set (see `import_torch`),
  on copy batches from the same task, made before timing and cycled (so data generation, inside
  the JAX step, is outside torch's timed region; it is small: B (T, 10) one-hots).
"""

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from experiments.config import Config
from experiments.experiment import Experiment
from experiments.model import SequenceModel

FLAX_CELLS = {"rnn": ("SimpleCell",), "lstm": ("OptimizedLSTMCell", "LSTMCell"), "gru": ("GRUCell",)}
TORCH_CELLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


class _FlaxNet(nn.Module):
    cell_name: str
    hidden_size: int
    num_outputs: int

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        cell = getattr(nn, self.cell_name)(features=self.hidden_size)
        return nn.Dense(self.num_outputs)(nn.RNN(cell)(inputs))


@dataclasses.dataclass(frozen=True)
class FlaxRNNModel:
    """`nn.Dense(O)(nn.RNN(cell)(x))` with `SequenceModel`'s `init`/`apply`, to drop into `Experiment`."""

    cell_name: str
    hidden_size: int
    num_outputs: int

    @property
    def net(self) -> _FlaxNet:
        return _FlaxNet(self.cell_name, self.hidden_size, self.num_outputs)

    def init(self, rng: jax.Array, inputs: jax.Array) -> Any:
        return self.net.init(rng, inputs)["params"]

    def apply(self, params: Any, inputs: jax.Array) -> jax.Array:
        return self.net.apply({"params": params}, inputs)

    def activation_bytes(self, batch_size: int, length: int, input_size: int) -> int:
        """The same estimate as for our cells (`Experiment.seed_chunk` reads it)."""
        cell = getattr(nn, self.cell_name)(features=self.hidden_size)
        return SequenceModel(cell, self.num_outputs).activation_bytes(batch_size, length, input_size)


def train_programs(exp: Experiment, compiler_options: dict[str, Any] | None = None) -> tuple[Callable, Callable]:
    """`experiments.train`'s jitted init and train step, over a leading seed axis, under its precision;
    the step compiled with `compiler_options` (XLA debug options of this one compilation) when given."""

    def precise(fn: Callable) -> Callable:
        def run(*args: Any) -> Any:
            with exp.precision():
                return fn(*args)

        return run

    step = exp.compiled_step()
    if compiler_options:
        compiled: list[Any] = []

        def step_with_options(state: Any) -> Any:
            if not compiled:  # compiled once, for the state's shapes
                compiled.append(step.lower(state).compile(compiler_options=compiler_options))
            return compiled[0](state)

        return precise(exp.compiled_init()), precise(step_with_options)
    return precise(exp.compiled_init()), precise(step)


class JaxContender:
    """Seeds trained by `train_programs`, one call per row of `seeds`, each row in turn at every step.

    `seeds` (1, N): the N seeds in one vmapped program, as `experiments.train` runs them; (N, 1): the
    same seeds as N single-seed runs.
    """

    def __init__(self, name: str, programs: tuple[Callable, Callable], seeds: jax.Array):
        init, self.step = programs
        self.name, self.states = name, [init(row) for row in seeds]

    def run(self, n: int) -> None:
        states = self.states
        for _ in range(n):
            states = [self.step(state) for state in states]
        self.states = jax.block_until_ready(states)

    def check(self) -> None:
        for s in self.states:
            if bool((s.diverged_at >= 0).any()) or not bool(jnp.isfinite(s.loss_sum).all()):
                raise AssertionError(f"{self.name}: training diverged during the benchmark")


class TorchContender:
    """torch.nn.RNN/LSTM/GRU + Linear + loss + clip_grad_norm_ + Adam, on pre-made batches of `config`'s task.

    `num_models` independent models (seeds), trained one after another at every step: the way
    PyTorch runs N seeds without vmap. On `device="cuda"` the batches live on the GPU, the RNN is
    cuDNN's, and `run` synchronises before returning. Loss: cross-entropy at every step (copy) or
    MSE of the last step's output (adding), as the JAX task computes it. Precision follows ours:
    `config.matmul_precision` "highest" turns TF32 off in cuBLAS and cuDNN (PyTorch's own default
    leaves it on in cuDNN's RNN kernels), "default" turns it on in both, as XLA does on a GPU.
    """

    def __init__(
        self,
        torch: Any,
        cell: str,
        hidden_size: int,
        config: Config,
        threads: int,
        device: str = "cpu",
        num_models: int = 1,
        num_batches: int = 4,
        name: str = "torch",
    ):
        torch.set_num_threads(threads)
        torch.manual_seed(config.seed)
        tf32 = config.matmul_precision == "default"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        self.name, self.torch, self.clip, self.device = name, torch, config.clip_norm, device
        task = Experiment(config).task
        self.last_only = task.readout == "last"
        self.models = []
        for _ in range(num_models):
            rnn = getattr(torch.nn, TORCH_CELLS[cell])(task.input_size, hidden_size, batch_first=True).to(device)
            readout = torch.nn.Linear(hidden_size, task.num_outputs).to(device)
            params = [*rnn.parameters(), *readout.parameters()]
            self.models.append((rnn, readout, params, torch.optim.Adam(params, lr=config.learning_rate)))
        self.batches = []
        for i in range(num_batches):
            inputs, targets = task.sample(jax.random.PRNGKey(i), config.batch_size)
            x = torch.from_numpy(np.array(inputs, np.float32)).to(device)
            y = torch.from_numpy(np.array(targets, np.float32 if self.last_only else np.int64)).reshape(-1).to(device)
            self.batches.append((x, y))
        self.count, self.last_loss = 0, float("nan")

    def loss(self, rnn: Any, readout: Any, x: Any, y: Any) -> Any:
        ys, _ = rnn(x)
        if self.last_only:
            return ((readout(ys[:, -1])[:, 0] - y) ** 2).mean()
        logits = readout(ys)
        return self.torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y)

    def run(self, n: int) -> None:
        torch = self.torch
        for _ in range(n):
            x, y = self.batches[self.count % len(self.batches)]
            self.count += 1
            for rnn, readout, params, optimizer in self.models:
                optimizer.zero_grad(set_to_none=True)
                loss = self.loss(rnn, readout, x, y)
                loss.backward()
                if self.clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, self.clip)
                optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.last_loss = float(loss.detach())

    def check(self) -> None:
        if not math.isfinite(self.last_loss):
            raise AssertionError(f"{self.name}: training diverged during the benchmark")


def torch_device(torch: Any) -> str:
    """ "cuda" when JAX runs on a GPU and torch sees one (cuDNN kernels), else "cpu"."""
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return "cuda" if on_gpu else "cpu"


def import_torch() -> Any:
    """`torch`, or None when it is not installed.

    Unless set already, OMP_WAIT_POLICY becomes PASSIVE before torch loads its OpenMP runtime:
    with the default (threads spin at barriers), 2 threads on 2 cores shared with other
    processes made torch 5-100x slower here (a forward pass of 0.06-0.9 s instead of 0.015 s).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    return torch


class WarmContender(JaxContender):
    """A contender whose programs and warmed-up states were made elsewhere (another revision's code)."""

    def __init__(self, name: str, step: Callable, states: list[Any]):
        self.name, self.step, self.states = name, step, states

r"""Milliseconds per training step: our cells against flax's `nn.RNN` (and PyTorch, when installed),
and N seeds trained in one vmapped program against the same seeds one after another.

    python -m benchmarks.speed --preset=full --out=results/speed.md
    python -m benchmarks.speed --preset=quick
    python -m benchmarks.speed --settings=128x520x256 --cells=lstm --variants=step,sequence+unroll4 --rounds=9
    python -m benchmarks.speed --preset=gpu --out=results/speed/gpu.md     # on a GPU: vs cuDNN
    python -m benchmarks.speed --sections=seeds --seeds_setting=50x100x64 --seed_counts=1,2,4,8 --notorch

`--sections` picks the tables: `speed` (ours vs flax vs torch, below), `seeds` (the paragraph after),
`linear`, `grid` and `profile` (described at their flags).

What one step is: a training step on the copy task (10 input categories, 9 classes at every time
step), forward + backward + gradient clipping + Adam update, jitted, with the project's defaults
(`Config()`: adam, lr 1e-3, clip_norm 1). A setting `BxTxH` is batch B, T time steps read by the
cell (copy with delay `seq_len = T - 20`, since copy sequences are `seq_len + 20` long) and width H.

Contenders, for each setting and cell:

- ours: `Experiment(config).train_step` exactly as `experiments.train` runs it,
  `Experiment.compiled_step()` (vmapped in chunks) over a seed axis (`--num_seeds`, 1 by default):
  `SequenceModel` (our cell under `jax.lax.scan`) + `Dense` readout, the batch made inside the step.
- flax: the same `Experiment.train_step` (same batches, loss, clipping, Adam and bookkeeping)
  with only the model swapped for `nn.Dense(9)(nn.RNN(cell)(x))` over flax's own cell:
  rnn -> `nn.SimpleCell`; lstm -> `nn.OptimizedLSTMCell` and `nn.LSTMCell`; gru -> `nn.GRUCell`.
- torch, when `import torch` works (it is not a project requirement): `torch.nn.RNN/LSTM/GRU`
  (batch_first) + `Linear` + cross-entropy + `clip_grad_norm_` + `Adam`, `torch.set_num_threads(2)`
  and OMP_WAIT_POLICY=PASSIVE unless set (see `import_torch`),
  on copy batches from the same task, made before timing and cycled (so data generation, inside
  the JAX step, is outside torch's timed region; it is small: B (T, 10) one-hots).

Method: every contender of one (setting, cell) is compiled and warmed up (`--warmup` steps), then
timed in `--rounds` rounds; a round runs each contender for n steps back to back, blocking on the
result (`block_until_ready`), in the order ours, flax..., torch, and reversed in every other round
(A B B A ...), so slow drifts of a shared machine hit every contender alike. n is the smallest
count making ours take `--min_round_s`. The table gives the median over rounds of ms per step and
`ratio = other / ours`: above 1 means ours is faster.

Analytic GFLOP/s (of ours) counts matmul FLOPs only. With G gates (rnn 1, gru 3, lstm 4), I = 10
inputs and O = 9 outputs, the forward pass is F = 2 B T (G H (I + H) + H O); the backward pass
multiplies by the transpose of each matmul's two operands, 2F, so a training step is ~3F and
GFLOP/s = 3F / (seconds per step) / 1e9. Elementwise ops, the loss and Adam are not counted.

`--variants` (timed in the same rounds as ours) runs our model with other execution flags: `step`
(the scan of the cell's step), `sequence` (its whole-sequence method: the fused kernel of
`cells.fused`), `unrollK` (`--unroll=K`), or a `+`-joined combination (`sequence+unroll16`). The
`gpu` preset times both paths against cuDNN (PyTorch on CUDA) and the seeds table up to 256 seeds.

Seeds (`--sections=seeds`): for each cell and each N of `--seed_counts`, on `--seeds_setting`
(default: the main job's, `experiments.compare.DEFAULTS`: adding, T=100, hidden 64, batch 50, Adam
1e-3, clip 1), `vmapped` trains seeds 0..N-1 in one program exactly as `experiments.train` does
(`Experiment.compiled_step()`: vmap over a leading seed axis of N, in chunks); `sequential` trains the same N seeds as N
single-seed runs of that path (the same jitted program, seed axis 1), one step of each seed in turn.
Both are timed in alternating rounds as above; the table gives seed-steps/s = N / (median seconds
per step of all N seeds) of each and `vmapped/sequential`: above 1 means vmapping is faster.
"""

import dataclasses
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from flax import linen as nn

from cells import CELLS as CELL_REGISTRY
from experiments import policy
from experiments.compare import DEFAULTS as MAIN_JOB
from experiments.config import Config, ConfigError, check_out_file
from experiments.io import atomic_write
from experiments.model import SequenceModel
from experiments.policy import PRECISIONS
from experiments.report import fmt, markdown_table
from experiments.train import Experiment
from experiments.validation import validate
from tasks.copy_memory import NUM_RECALL, CopyMemory

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
FLAX_CELLS = {"rnn": ("SimpleCell",), "lstm": ("OptimizedLSTMCell", "LSTMCell"), "gru": ("GRUCell",)}
TORCH_CELLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
PADDING = 2 * NUM_RECALL  # copy sequences are seq_len + 20 steps long
SECTIONS = ("speed", "seeds", "linear", "grid", "profile")
LINEAR_CELLS = ("lru", "mingru", "minlstm")
# a timed step evaluates nothing: no held-out set is built, and validation counts none (`Config.eval_size` >= 1)
TIMED_EVAL_SIZE = 1


@dataclasses.dataclass(frozen=True)
class Setting:
    """Batch size B, time steps T, hidden width H."""

    batch_size: int
    length: int
    hidden_size: int

    @classmethod
    def parse(cls, text: str, flag: str = "settings", min_length: int = PADDING + 2) -> "Setting":
        match = re.fullmatch(r"\s*([0-9]{1,9})x([0-9]{1,9})x([0-9]{1,9})\s*", text)  # ASCII digits (validate)
        if not match:
            raise ConfigError(f"--{flag}: {text!r} is not BxTxH (e.g. 128x120x128)")
        setting = cls(*map(int, match.groups()))
        if setting.batch_size < 1 or setting.hidden_size < 1 or setting.length < min_length:
            raise ConfigError(f"--{flag}: {text!r} needs B >= 1, H >= 1 and T >= {min_length}")
        return setting

    def __str__(self) -> str:
        return f"B={self.batch_size} T={self.length} H={self.hidden_size}"

    def config(self, cell: str) -> Config:
        return Config(
            cell=cell,
            task="copy",
            seq_len=self.length - PADDING,
            hidden_size=self.hidden_size,
            batch_size=self.batch_size,
            eval_size=TIMED_EVAL_SIZE,
        )

    def train_flops(self, cell: str) -> float:
        """Matmul FLOPs of one training step, ~3x the forward pass (see the module docstring)."""
        B, T, H = self.batch_size, self.length, self.hidden_size
        I, O = CopyMemory.input_size, CopyMemory.num_outputs
        if cell not in GATES:  # a cell without a gate count here (lru, exprnn, ...): not counted
            return math.nan
        return 3 * 2 * B * T * (GATES[cell] * H * (I + H) + H * O)


@dataclasses.dataclass(frozen=True)
class Options:
    settings: tuple[Setting, ...]
    cells: tuple[str, ...] = CELLS
    rounds: int = 7
    warmup: int = 2
    min_round_s: float = 0.5
    use_torch: bool = True
    torch_threads: int = 2
    variants: tuple[str, ...] = ()
    num_seeds: int = 1
    sections: tuple[str, ...] = SECTIONS
    seeds_setting: Setting = Setting(MAIN_JOB.batch_size, MAIN_JOB.seq_len, MAIN_JOB.hidden_size)  # adding
    seed_counts: tuple[int, ...] = (1, 2, 4, 8)
    flax: bool = True  # time flax's nn.RNN beside ours
    seeds_cells: tuple[str, ...] | None = None  # cells of the seeds table (None: `cells`)
    matmul_precision: str = "highest"  # ours: --matmul_precision; PyTorch on CUDA: TF32 off (highest) or on
    linear_setting: Setting = Setting(50, 1000, 128)  # adding, T = seq_len
    linear_cells: tuple[str, ...] = LINEAR_CELLS
    baseline: str = ""  # git revision timed beside today's code in the linear table ("" = none)
    grid_slice: str = "long"
    grid_workers: int = 3
    profile_dir: str = ""  # the profile section's jax.profiler trace ("" = cost analysis only)


PRESETS = {
    "full": Options(settings=(Setting(128, 120, 128), Setting(128, 520, 256)), rounds=9, warmup=2, min_round_s=0.5),
    "gpu": Options(
        settings=(Setting(50, 100, 128), Setting(50, 1000, 128), Setting(128, 520, 256)),
        rounds=5,
        warmup=2,
        min_round_s=0.2,
        variants=("step",),
        flax=False,  # on a GPU, flax's nn.RNN is the step path (the `step` variant); its compiles cost minutes
        seeds_setting=Setting(50, 100, 128),
        seed_counts=(1, 8, 32, 256),
        seeds_cells=("lstm",),
    ),
    "quick": Options(
        settings=(Setting(4, 24, 8),),
        rounds=3,
        warmup=1,
        min_round_s=0.0,
        seeds_setting=Setting(4, 24, 8),
        seed_counts=(1, 2),
        linear_setting=Setting(4, 24, 8),
        sections=("speed", "seeds", "linear"),  # the grid and profile sections have their own tiny test
    ),
    "gpu_tiny": Options(  # the gpu preset's code path at CPU sizes (a test runs it)
        settings=(Setting(4, 24, 8),),
        cells=("lstm",),
        rounds=2,
        warmup=1,
        min_round_s=0.0,
        variants=("step",),
        flax=False,
        seeds_setting=Setting(4, 12, 8),
        seed_counts=(1, 3),
        seeds_cells=("lstm",),
        sections=("speed", "seeds"),
    ),
}


# ----------------------------------------------------------------------------- flax's nn.RNN side


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


# ----------------------------------------------------------------------------- variants of ours

VARIANT_PATHS = ("step", "sequence")
# XLA:GPU command buffers (CUDA graphs) for loops and conditionals too, and loops unrolled into them: the
# per-step launch latency of a small recurrent step. Set per compilation (`compile(compiler_options=...)`),
# so the variant runs beside the default programs in one process. A compilation's options replace XLA's
# default set of command types, so the set is XLA's default (FUSION, CUBLAS, CUBLASLT, CUSTOM_CALL, CUDNN)
# plus WHILE and CONDITIONAL: what `XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL` means.
COMMAND_BUFFER_OPTIONS = {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
    "xla_gpu_command_buffer_unroll_loops": True,
}
XLA_VARIANTS = {"cmdbuf": COMMAND_BUFFER_OPTIONS}  # variant part -> XLA compile options
XLA_VARIANT_BACKENDS = {"cmdbuf": ("gpu", "cuda")}


def parse_variant(name: str) -> dict[str, Any]:
    """`step`, `sequence`, `unrollK`, `cmdbuf`, a precision (`tf32x3`) or a `+`-joined combination
    (`sequence+unroll16`, `cmdbuf+tf32x3`) -> changes: Config fields, and "xla" (a name of `XLA_VARIANTS`)
    for XLA compile options."""
    changes: dict[str, Any] = {}
    for part in name.split("+"):
        match = re.fullmatch(r"unroll([0-9]{1,4})", part)
        if part in VARIANT_PATHS and "sequence_path" not in changes:
            changes["sequence_path"] = part
        elif match and 1 <= int(match.group(1)) <= 1024 and "unroll" not in changes:
            changes["unroll"] = int(match.group(1))
        elif part in XLA_VARIANTS and "xla" not in changes:
            changes["xla"] = part
        elif part in PRECISIONS and "matmul_precision" not in changes:
            changes["matmul_precision"] = part
        else:
            raise ConfigError(
                f"--variants: {name!r} is not step, sequence, unrollK, cmdbuf, a --matmul_precision value "
                f"({', '.join(PRECISIONS)}) or a +-joined combination"
            )
    return changes


def check_variant_backend(name: str, backend: str) -> None:
    """ConfigError when a part of variant `name` needs another backend (cmdbuf: a GPU's command buffers;
    tf32x3: a GPU's dot algorithm)."""
    changes = parse_variant(name)
    xla = changes.get("xla")
    if xla is not None and backend not in XLA_VARIANT_BACKENDS[xla]:
        raise ConfigError(f"--variants={name}: {xla} sets XLA GPU command-buffer options; this backend is {backend}")
    try:
        policy.matmul_precision(backend, changes.get("matmul_precision", "highest"))
    except ValueError as e:
        raise ConfigError(f"--variants={name}: {e}") from None


def variant_experiment(config: Config, variant: str) -> Experiment:
    """Our Experiment with the variant's execution flags (`--sequence_path`, `--unroll`)."""
    changes = parse_variant(variant)
    changes.pop("xla", None)
    return Experiment(config.replace(**changes))


def variant_programs(config: Config, variant: str) -> tuple[Callable, Callable]:
    """`train_programs` of the variant: its execution flags, and its XLA compile options if any."""
    xla = parse_variant(variant).get("xla")
    return train_programs(variant_experiment(config, variant), XLA_VARIANTS.get(xla))


# ----------------------------------------------------------------------------- contenders


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
        self, torch: Any, cell: str, hidden_size: int, config: Config, threads: int,
        device: str = "cpu", num_models: int = 1, num_batches: int = 4, name: str = "torch",
    ):  # fmt: skip
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


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Group:
    """Median ms/step of every contender of one (setting, cell)."""

    setting: Setting
    cell: str
    steps_per_round: int
    ms: dict[str, float]  # contender name -> median ms per step
    spread: dict[str, float]  # contender name -> interquartile range / median over rounds
    num_seeds: int = 1  # every step trains this many seeds

    @property
    def gflops(self) -> float:
        return self.num_seeds * self.setting.train_flops(self.cell) / (self.ms["ours"] / 1e3) / 1e9


def time_contenders(contenders: list[Any], rounds: int, warmup: int, min_round_s: float) -> tuple[int, dict, dict]:
    """Warm up (compile) all, then alternate them for `rounds` rounds.

    Returns the steps per round and, by contender name, the median ms per step over rounds and the
    interquartile range / median.
    """
    for c in contenders:
        c.run(max(warmup, 1))
    t0 = time.perf_counter()
    contenders[0].run(1)
    one = time.perf_counter() - t0
    n = max(1, math.ceil(min_round_s / max(one, 1e-9)))
    per_step: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            t0 = time.perf_counter()
            c.run(n)
            per_step[c.name].append((time.perf_counter() - t0) / n)
    for c in contenders:
        c.check()
    ms = {name: 1e3 * statistics.median(ts) for name, ts in per_step.items()}
    return n, ms, {name: _relative_iqr(ts) for name, ts in per_step.items()}


def make_contenders(options: Options, setting: Setting, cell: str, torch: Any) -> list[Any]:
    """ours, flax's cell(s), torch (if given) and our variants, for one (setting, cell); ours first."""
    config = setting.config(cell).replace(matmul_precision=options.matmul_precision)
    parts = validate(config)
    seeds = jnp.arange(options.num_seeds)[None]
    contenders: list[Any] = [JaxContender("ours", train_programs(Experiment(config, parts)), seeds)]
    for flax_cell in FLAX_CELLS.get(cell, ()) if options.flax else ():
        exp = Experiment(config)
        exp.model = FlaxRNNModel(flax_cell, setting.hidden_size, exp.task.num_outputs)
        contenders.append(JaxContender(f"flax:{flax_cell}", train_programs(exp), seeds))
    if torch is not None and cell in TORCH_CELLS:
        device = torch_device(torch)
        contenders.append(TorchContender(torch, cell, setting.hidden_size, config, options.torch_threads, device))
    for variant in options.variants:
        contenders.append(JaxContender(f"ours+{variant}", variant_programs(config, variant), seeds))
    return contenders


def _relative_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


def benchmark(options: Options, log: Callable[[str], None] = lambda s: None) -> list[Group]:
    """Time every (setting, cell) group in turn: build, compile and warm up its contenders, then alternate."""
    torch = import_torch() if options.use_torch else None
    groups = []
    for setting in options.settings:
        for cell in options.cells:
            t0 = time.perf_counter()
            contenders = make_contenders(options, setting, cell, torch)
            n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
            del contenders
            groups.append(Group(setting, cell, n, ms, spread, options.num_seeds))
            timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
            log(f"{setting} {cell}: {timings} ({n} steps/round, {time.perf_counter() - t0:.0f}s with compiling)")
    return groups


@dataclasses.dataclass
class SeedsGroup:
    """Median ms per step of all `num_seeds` seeds, vmapped and sequential, of one cell."""

    cell: str
    num_seeds: int
    steps_per_round: int
    ms: dict[str, float]  # "vmapped" / "sequential" -> median ms per step of all seeds
    spread: dict[str, float]


def seeds_config(cell: str, setting: Setting) -> Config:
    """The seeds table's config of `cell`: experiments.compare's defaults at `setting`'s sizes, evaluating nothing."""
    sizes = dict(batch_size=setting.batch_size, seq_len=setting.length, hidden_size=setting.hidden_size)
    return MAIN_JOB.replace(cell=cell, eval_size=TIMED_EVAL_SIZE, **sizes)


def benchmark_seeds(
    options: Options, log: Callable[[str], None] = lambda s: None, torch: Any = None
) -> list[SeedsGroup]:
    """For each cell and N in `options.seed_counts`: N seeds in one vmapped program vs one after another
    (ours, and PyTorch's N models one after another when `torch` is given), and the N seeds vmapped
    with each of `options.variants`' execution flags."""
    s = options.seeds_setting
    groups = []
    for cell in options.seeds_cells or options.cells:
        config = seeds_config(cell, s).replace(matmul_precision=options.matmul_precision)
        programs = train_programs(Experiment(config, validate(config)))  # shared: compiled once per seed count
        variants = {v: variant_programs(config, v) for v in options.variants}
        for num_seeds in options.seed_counts:
            t0, seeds = time.perf_counter(), jnp.arange(num_seeds)
            contenders = [
                JaxContender("vmapped", programs, seeds[None]),
                JaxContender("sequential", programs, seeds[:, None]),
                *(JaxContender(f"vmapped+{v}", variant, seeds[None]) for v, variant in variants.items()),
            ]
            if torch is not None:
                device = torch_device(torch)
                contenders.append(
                    TorchContender(
                        torch, cell, s.hidden_size, config, options.torch_threads, device, num_seeds, name="torch"
                    )
                )
            n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
            groups.append(SeedsGroup(cell, num_seeds, n, ms, spread))
            timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
            log(f"seeds {cell} N={num_seeds}: {timings} per step of all seeds ({time.perf_counter() - t0:.0f}s)")
    return groups


# ----------------------------------------------------------------------------- linear recurrences, before/after


class WarmContender(JaxContender):
    """A contender whose programs and warmed-up states were made elsewhere (another revision's code)."""

    def __init__(self, name: str, step: Callable, states: list[Any]):
        self.name, self.step, self.states = name, step, states


def linear_config(options: Options, cell: str) -> Config:
    return seeds_config(cell, options.linear_setting).replace(matmul_precision=options.matmul_precision)


def benchmark_linear(options: Options, log: Callable[[str], None] = lambda s: None) -> list[Group]:
    """The linear-recurrence cells' train step on `linear_setting` (adding): today's default execution, its
    `--variants`, and, with `--baseline=REV`, revision REV's default execution, alternated in the same rounds."""
    from benchmarks.baseline import baseline_programs

    seeds = jnp.arange(options.num_seeds)[None]
    before = {}
    if options.baseline:
        configs = {
            c: linear_config(options, c).replace(num_seeds=options.num_seeds).to_dict() for c in options.linear_cells
        }
        warm = lambda init, step: [jax.block_until_ready(step(init(row))) for row in seeds]  # noqa: E731
        before = baseline_programs(options.baseline, configs, warm)
    groups = []
    for cell in options.linear_cells:
        t0, config = time.perf_counter(), linear_config(options, cell).replace(num_seeds=options.num_seeds)
        contenders: list[Any] = [JaxContender("ours", train_programs(Experiment(config, validate(config))), seeds)]
        if cell in before:
            contenders.append(WarmContender("baseline", before[cell][1], before[cell][2]))
        contenders += [JaxContender(f"ours+{v}", variant_programs(config, v), seeds) for v in options.variants]
        n, ms, spread = time_contenders(contenders, options.rounds, options.warmup, options.min_round_s)
        groups.append(Group(options.linear_setting, cell, n, ms, spread, options.num_seeds))
        timings = ", ".join(f"{name} {v:.4g} ms" for name, v in ms.items())
        log(f"linear {cell}: {timings} ({time.perf_counter() - t0:.0f}s)")
    return groups


def linear_section(options: Options, groups: list[Group]) -> list[str]:
    has_baseline = any("baseline" in g.ms for g in groups)
    header = ["cell", "ours ms/step"] + (["baseline ms/step", "baseline/ours"] if has_baseline else [])
    header += [f"ours+{v} ms/step" for v in options.variants]
    rows = []
    for g in groups:
        row = [g.cell, fmt(g.ms["ours"])]
        if has_baseline:
            row += [fmt(g.ms.get("baseline", math.nan)), fmt(g.ms.get("baseline", math.nan) / g.ms["ours"])]
        rows.append(row + [fmt(g.ms[f"ours+{v}"]) for v in options.variants])
    s = options.linear_setting
    return [
        "## Linear-recurrence cells: training step, today's default execution"
        + (f" vs revision {options.baseline}" if has_baseline else ""),
        "",
        markdown_table(header, rows),
        "",
        f"{MAIN_JOB.task} task, {s} (T = seq_len), {MAIN_JOB.optimizer} lr {MAIN_JOB.learning_rate}, clipping at norm "
        f"{MAIN_JOB.clip_norm}, {options.num_seeds} seed(s), one layer; each column the execution its code picks on "
        "this backend (`--sequence_path=auto`), ours+V: today's code with variant V's flags.",
        "baseline/ours above 1: today's code is faster than the baseline revision's, compiled and timed in the "
        "same process, in alternating rounds (benchmarks/baseline.py).",
        _timing_note(options, groups),
    ]


# ----------------------------------------------------------------------------- the grid, per minute


@dataclasses.dataclass(frozen=True)
class GridSlice:
    """A fixed slice of a `benchmarks.tables` grid: its table and preset, the cells, lengths, steps and seeds."""

    table: str
    preset: str
    cells: tuple[str, ...]
    seq_lens: tuple[int, ...]
    steps: int
    num_seeds: int

    def args(self) -> list[str]:
        return [
            f"--table={self.table}",
            f"--preset={self.preset}",
            f"--cells={','.join(self.cells)}",
            f"--seq_lens={','.join(map(str, self.seq_lens))}",
            f"--steps={self.steps}",
            f"--num_seeds={self.num_seeds}",
        ]


GRID_SLICES = {
    # every cell of the long adding grid at T=1000, 3 seeds, 200 steps (its evaluation at step 200 included)
    "long": GridSlice("adding", "long", ("lstm", "gru", "indrnn", "cornn", "lem", "exprnn", "lru", "mingru", "minlstm"),
                      (1000,), 200, 3),
    # the long slice's cells that differ most in kind, for a few minutes of a lent GPU
    "gpu": GridSlice("adding", "long", ("lstm", "gru", "lru", "minlstm"), (1000,), 200, 3),
    "tiny": GridSlice("adding", "smoke", ("rnn", "gru"), (6,), 4, 2),  # the code path, in seconds (a test runs it)
}  # fmt: skip


@dataclasses.dataclass
class GridRun:
    """One launch of the slice: `workers` local workers, wall seconds from launch to exit, and each point's
    (cell -> members, steps done, wall seconds of its training run) from its results.json."""

    workers: int
    wall_s: float
    points: dict[str, tuple[int, int, float]]

    @property
    def seed_steps(self) -> int:
        return sum(members * steps for members, steps, _ in self.points.values())

    def per_minute(self) -> float:
        return 60 * self.seed_steps / self.wall_s


def run_grid(grid: GridSlice, workers: int, results_dir: Path, log: Callable[[str], None]) -> GridRun:
    """`python -m benchmarks.tables <slice> --launcher=local --workers=N` into a fresh `results_dir`, timed."""
    cmd = [sys.executable, "-m", "benchmarks.tables", *grid.args(), "--launcher=local", f"--workers={workers}"]
    cmd.append(f"--results_dir={results_dir}")
    # no persistent compilation cache: the second launch would load what the first compiled
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"grid slice with {workers} worker(s) exited {proc.returncode}: {proc.stderr[-2000:]}")
    points = {}
    for path in sorted((results_dir / grid.table).glob("*/results.json")):
        r = json.loads(path.read_text())
        points[path.parent.name] = (int(r["execution"]["members"]), int(r["steps_done"]), float(r["wall_time_s"]))
    if len(points) != len(grid.cells) * len(grid.seq_lens):
        raise RuntimeError(f"grid slice with {workers} worker(s): {len(points)} points finished: {sorted(points)}")
    log(f"grid: {workers} worker(s): {len(points)} points in {wall:.0f}s")
    return GridRun(workers, wall, points)


def benchmark_grid(options: Options, log: Callable[[str], None] = lambda s: None) -> list[GridRun]:
    """The slice one point at a time (one local worker), then with `grid_workers` local workers."""
    grid = GRID_SLICES[options.grid_slice]
    counts = (1,) if options.grid_workers == 1 else (1, options.grid_workers)
    with tempfile.TemporaryDirectory(prefix="rnnlab-grid-") as tmp:
        return [run_grid(grid, n, Path(tmp) / f"workers{n}", log) for n in counts]


def grid_section(options: Options, runs: list[GridRun]) -> list[str]:
    grid = GRID_SLICES[options.grid_slice]
    header = ["point"] + [f"{r.workers} worker(s): seed-steps/min" for r in runs]
    rows = []
    for point in runs[0].points:
        rows.append([point] + [fmt(60 * m * n / w) for m, n, w in (r.points[point] for r in runs)])
    rows.append(["**all (wall clock)**"] + [fmt(r.per_minute()) for r in runs])
    out = [
        f"## Grid throughput: {grid.table} ({grid.preset} preset), cells {', '.join(grid.cells)}, "
        f"T = {', '.join(map(str, grid.seq_lens))}, {grid.num_seeds} seeds, {grid.steps} steps",
        "",
        markdown_table(header, rows),
        "",
        "Each run: `python -m benchmarks.tables " + " ".join(grid.args()) + " --launcher=local --workers=N` "
        "into a fresh results folder, as a user launches the grid. seed-steps/min of a point: seeds x steps / "
        "its training run's wall time (results.json: compiling and evaluation included, other points running "
        "beside it); all: every point's seeds x steps / the launch's wall time (process starts included).",
    ]
    if len(runs) > 1:
        out.append(
            f"{runs[1].workers} workers / one at a time, in all: {fmt(runs[1].per_minute() / runs[0].per_minute())}."
        )
    return out


# ----------------------------------------------------------------------------- profile of one vmapped step


def profile_section(options: Options, log: Callable[[str], None] = lambda s: None) -> list[str]:
    """XLA's cost and memory analysis of one compiled vmapped step (the first seeds cell, the largest seed
    count, `seeds_setting`); with `profile_dir`, a `jax.profiler` trace of 3 steps there (TensorBoard or
    Perfetto read it)."""
    s, cell, n = options.seeds_setting, (options.seeds_cells or options.cells)[0], max(options.seed_counts)
    config = seeds_config(cell, s).replace(matmul_precision=options.matmul_precision, num_seeds=n)
    exp = Experiment(config, validate(config))
    init, _ = train_programs(exp)
    state = init(jnp.arange(n))
    with exp.precision():
        compiled = exp.compiled_step().lower(state).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    memory = compiled.memory_analysis()
    state = jax.block_until_ready(compiled(state))
    t0 = time.perf_counter()
    state = jax.block_until_ready(compiled(state))
    step_s = time.perf_counter() - t0
    rows = [[k, fmt(float(v))] for k, v in sorted((cost or {}).items()) if k in PROFILE_COSTS]
    for name in (
        "temp_size_in_bytes",
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "generated_code_size_in_bytes",
    ):
        if memory is not None and hasattr(memory, name):
            rows.append([name, fmt(float(getattr(memory, name)))])
    rows.append(["measured seconds per step (one step)", fmt(step_s)])
    flops = float((cost or {}).get("flops", math.nan))
    rows.append(["flops / measured seconds", fmt(flops / step_s)])
    out = [
        f"## Profile: one vmapped step of {n} {cell} seeds, {MAIN_JOB.task} {s}",
        "",
        markdown_table(["quantity", "value"], rows),
        "",
        "XLA's `cost_analysis()` and `memory_analysis()` of the compiled `Experiment.compiled_step()` (as "
        "experiments.train runs it); flops counts every HLO op XLA costs, not only matmuls.",
    ]
    if options.profile_dir:
        with jax.profiler.trace(options.profile_dir):
            for _ in range(3):
                state = compiled(state)
            jax.block_until_ready(state)
        out.append(f"A jax.profiler trace of 3 steps is in `{options.profile_dir}` (TensorBoard's profile plugin or "
                   "Perfetto read its .trace.json.gz / .xplane.pb).")  # fmt: skip
    log(f"profile {cell} N={n}: {step_s * 1e3:.4g} ms per step, {flops:.3g} flops")
    return out


PROFILE_COSTS = ("flops", "bytes accessed", "transcendentals", "optimal_seconds", "utilization")


# ----------------------------------------------------------------------------- report


def _timing_note(options: Options, groups: list[Any]) -> str:
    low, high = min(g.steps_per_round for g in groups), max(g.steps_per_round for g in groups)
    worst = max((s for g in groups for s in g.spread.values()), default=0.0)
    return (
        f"Median over {options.rounds} alternating rounds of {low if low == high else f'{low}-{high}'} step(s) "
        f"each, after {options.warmup} warm-up step(s); largest interquartile range / median over rounds: {worst:.0%}."
    )


def speed_section(options: Options, groups: list[Group], torch: Any) -> list[str]:
    has_torch = any("torch" in g.ms for g in groups)
    header = ["setting", "cell", "flax cell", "ours ms/step", "flax ms/step", "flax/ours", "ours GFLOP/s"]
    header += ["torch ms/step", "torch/ours"] if has_torch else []
    rows = []
    for g in groups:
        ours = g.ms["ours"]
        for flax_cell in FLAX_CELLS.get(g.cell, ("-",)) if options.flax else ("-",):
            other, torch_ms = g.ms.get(f"flax:{flax_cell}", math.nan), g.ms.get("torch", math.nan)
            row = [g.setting, g.cell, flax_cell, *map(fmt, (ours, other, other / ours, g.gflops))]
            rows.append(row + ([fmt(torch_ms), fmt(torch_ms / ours)] if has_torch else []))
    title = "## Training step speed: ours vs flax nn.RNN" + (" vs PyTorch" if has_torch else "")
    out = [title, "", markdown_table(header, rows), ""]
    if options.variants:
        header = ["setting", "cell", "variant", "variant ms/step", "ours ms/step", "ours/variant"]
        header += ["torch/variant"] if has_torch else []
        rows = []
        for g in groups:
            for v in options.variants:
                ms, ours = g.ms[f"ours+{v}"], g.ms["ours"]
                row = [g.setting, g.cell, v, fmt(ms), fmt(ours), fmt(ours / ms)]
                rows.append(row + ([fmt(g.ms.get("torch", math.nan) / ms)] if has_torch else []))
        out += ["### Variants of our model (same rounds as ours)", "", markdown_table(header, rows), ""]
        out += ["ours/variant > 1: the variant is faster than the project's model.", ""]
    out += [
        _timing_note(options, groups),
        "Ratios are other / ours: above 1 means ours is faster. "
        "GFLOP/s: matmul FLOPs 3 x 2 B T (G H (I + H) + H O), I = 10, O = 9, G = 1 (rnn), 3 (gru), 4 (lstm).",
        "Copy task with seq_len = T - 20; adam, lr 1e-3, gradient clipping at norm 1.",
    ]
    if torch is None:
        out.append(
            "torch column skipped: torch is not installed." if options.use_torch else "torch column skipped: --notorch."
        )
    return out


def seeds_section(options: Options, groups: list[SeedsGroup]) -> list[str]:
    has_torch = any("torch" in g.ms for g in groups)
    header = ["cell", "seeds", "vmapped seed-steps/s", "x one seed", "sequential seed-steps/s", "vmapped/sequential"]
    header += ["torch sequential seed-steps/s", "vmapped/torch"] if has_torch else []
    header += [f"vmapped+{v} seed-steps/s" for v in options.variants]
    rows = []
    one_seed = {g.cell: 1e3 / g.ms["vmapped"] for g in groups if g.num_seeds == 1}
    for g in groups:
        rate = {name: g.num_seeds * 1e3 / ms for name, ms in g.ms.items()}
        gain = fmt(rate["vmapped"] / one_seed[g.cell]) if g.cell in one_seed else "-"
        row = [g.cell, g.num_seeds, fmt(rate["vmapped"]), gain, fmt(rate["sequential"])]
        row += [fmt(rate["vmapped"] / rate["sequential"])]
        row += [fmt(rate["torch"]), fmt(rate["vmapped"] / rate["torch"])] if has_torch else []
        rows.append(row + [fmt(rate[f"vmapped+{v}"]) for v in options.variants])
    return [
        "## Seeds: N seeds vmapped in one program vs the same seeds one after another",
        "",
        markdown_table(header, rows),
        "",
        f"{MAIN_JOB.task} task, {options.seeds_setting}, {MAIN_JOB.optimizer} lr {MAIN_JOB.learning_rate}, clipping "
        f"at norm {MAIN_JOB.clip_norm} (experiments.compare's defaults; B, T, H from --seeds_setting).",
        "vmapped: seeds 0..N-1 in one `Experiment.compiled_step()` over a seed axis of N, as experiments.train "
        "runs them; sequential: the same N seeds as N single-seed runs of that path, one step of each in turn.",
        "seed-steps/s = N / median seconds per step of all N seeds; vmapped/sequential above 1 means vmap is faster; "
        "x one seed: vmapped seed-steps/s over the N=1 row's; torch sequential: N PyTorch models (cuDNN on a GPU) "
        "trained one after another, one step of each in turn."
        + (" vmapped+V: the same vmapped seeds with variant V's execution flags." if options.variants else ""),
        _timing_note(options, groups),
    ]


def markdown(
    options: Options,
    groups: list[Group],
    seeds: list[SeedsGroup],
    torch: Any,
    command: str = "",
    extra: tuple[list[str], ...] = (),
) -> str:
    """The Markdown report: the speed table (when `groups`), the seeds table (when `seeds`), then `extra`'s
    sections (linear, grid, profile)."""
    out = speed_section(options, groups, torch) + [""] if groups else []
    out += seeds_section(options, seeds) + [""] if seeds else []
    for section in extra:
        out += section + [""]
    device = jax.devices()[0]
    versions = f"{device.platform} ({device.device_kind}); jax {jax.__version__}, flax {flax.__version__}"
    versions += f", optax {optax.__version__}"
    if torch is not None and torch_device(torch) == "cuda":
        versions += f", torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    elif torch is not None:
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
        versions += f", torch {torch.__version__} ({options.torch_threads} threads, OMP_WAIT_POLICY {policy})"
    versions += f"; matmul precision {options.matmul_precision}"
    if torch is not None and torch_device(torch) == "cuda":
        versions += f" (PyTorch: TF32 {'on' if options.matmul_precision == 'default' else 'off'} in cuBLAS and cuDNN)"
    out.append(
        f"{versions}; Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{datetime.date.today().isoformat()}."
    )
    if command:
        out.append(f"Command: `{command}`")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("preset", "full", sorted(PRESETS), "full: 128x120x128 and 128x520x256; quick: tiny, seconds.")
    flags.DEFINE_string("sections", None, f"Override the preset's tables, comma-separated among {', '.join(SECTIONS)}.")
    flags.DEFINE_string("settings", None, "Override the preset's settings: BxTxH,... (T = copy seq_len + 20).")
    flags.DEFINE_string(
        "cells", None, f"Comma-separated registered cells ({', '.join(CELLS)} have flax and PyTorch counterparts)."
    )
    flags.DEFINE_integer("rounds", None, "Override the preset's number of alternating timed rounds.")
    flags.DEFINE_integer("warmup", None, "Override the preset's warm-up steps per contender (after compiling).")
    flags.DEFINE_float("min_round_s", None, "Override the preset's minimum seconds of one contender in one round.")
    flags.DEFINE_bool("torch", True, "Time PyTorch too, when `import torch` works.")
    flags.DEFINE_bool("flax", None, "Override the preset: time flax's nn.RNN over the same cells too.")
    flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads for the PyTorch column.")
    flags.DEFINE_string(
        "variants",
        "",
        "Comma-separated variants of ours to time too: step, sequence, unrollK, or +-joined (sequence+unroll16).",
    )
    flags.DEFINE_integer("num_seeds", 1, "Seeds vmapped in one step, as experiments.train's --num_seeds.")
    flags.DEFINE_string("seeds_setting", None, "Override the preset's BxTxH of the seeds table (adding, T = seq_len).")
    flags.DEFINE_string("seed_counts", None, "Override the preset's seed counts N of the seeds table: N,...")
    flags.DEFINE_string("out", "", "Also write the Markdown report to this file (atomically).")
    flags.DEFINE_string(
        "matmul_precision",
        "highest",
        "Ours as experiments.train's flag (highest, default, tf32x3: GPUs only); PyTorch on CUDA: TF32 on for "
        "default, off otherwise.",
    )
    flags.DEFINE_string("linear_setting", None, "linear section: BxTxH on adding (default 50x1000x128).")
    flags.DEFINE_string("linear_cells", None, f"linear section: cells (default {','.join(LINEAR_CELLS)}).")
    flags.DEFINE_string(
        "baseline", "", "linear section: a git revision whose code is timed beside today's (e.g. main, a commit)."
    )
    flags.DEFINE_enum("grid_slice", None, sorted(GRID_SLICES), "grid section: the slice (long; tiny for tests).")
    flags.DEFINE_integer("grid_workers", None, "grid section: local workers beside the one-at-a-time run (default 3).")
    flags.DEFINE_string("profile_dir", "", "profile section: also write a jax.profiler trace of 3 steps here.")


def options_from_flags() -> Options:
    from experiments.flags import int_list_flag, list_flag

    options = PRESETS[FLAGS.preset]
    changes: dict[str, Any] = {"use_torch": FLAGS.torch, "num_seeds": FLAGS.num_seeds}
    if FLAGS.flax is not None:
        changes["flax"] = FLAGS.flax
    if FLAGS.torch_threads < 1:
        raise ConfigError(f"--torch_threads={FLAGS.torch_threads}: must be >= 1")
    changes["torch_threads"] = FLAGS.torch_threads
    if FLAGS.settings is not None:
        changes["settings"] = tuple(Setting.parse(s) for s in list_flag(FLAGS.settings, "settings"))
        _refuse_repeats("settings", FLAGS.settings, changes["settings"])
    for name, allowed in (("cells", tuple(CELL_REGISTRY.names())), ("sections", SECTIONS)):
        if (value := getattr(FLAGS, name)) is not None:
            changes[name] = tuple(list_flag(value, name))
            if bad := [c for c in changes[name] if c not in allowed]:
                raise ConfigError(f"--{name}: {', '.join(bad)} not among {', '.join(allowed)}")
    if FLAGS.matmul_precision not in PRECISIONS:
        raise ConfigError(f"--matmul_precision={FLAGS.matmul_precision!r}: must be one of {', '.join(PRECISIONS)}")
    changes["matmul_precision"] = FLAGS.matmul_precision
    if FLAGS.linear_setting is not None:
        changes["linear_setting"] = Setting.parse(FLAGS.linear_setting, "linear_setting", min_length=2)
    if FLAGS.linear_cells is not None:
        changes["linear_cells"] = tuple(list_flag(FLAGS.linear_cells, "linear_cells"))
        if bad := [c for c in changes["linear_cells"] if c not in CELL_REGISTRY.names()]:
            raise ConfigError(f"--linear_cells: {', '.join(bad)} not among {', '.join(CELL_REGISTRY.names())}")
    changes["baseline"] = FLAGS.baseline
    if FLAGS.grid_slice is not None:
        changes["grid_slice"] = FLAGS.grid_slice
    if FLAGS.grid_workers is not None:
        if not 1 <= FLAGS.grid_workers <= 64:
            raise ConfigError(f"--grid_workers={FLAGS.grid_workers}: must be in [1, 64]")
        changes["grid_workers"] = FLAGS.grid_workers
    changes["profile_dir"] = FLAGS.profile_dir
    if FLAGS.seeds_setting is not None:
        changes["seeds_setting"] = Setting.parse(FLAGS.seeds_setting, "seeds_setting", min_length=2)
    if FLAGS.seed_counts is not None:
        changes["seed_counts"] = tuple(int_list_flag(FLAGS.seed_counts, "seed_counts", 1, 1024))  # ASCII: not ²
    if FLAGS.variants:
        changes["variants"] = tuple(list_flag(FLAGS.variants, "variants"))
        parsed = [tuple(sorted(parse_variant(v).items())) for v in changes["variants"]]
        _refuse_repeats("variants", FLAGS.variants, parsed, changes["variants"])
        for v in changes["variants"]:
            check_variant_backend(v, jax.default_backend())
    for name in ("rounds", "warmup"):
        if (value := getattr(FLAGS, name)) is not None:
            if value < 1:
                raise ConfigError(f"--{name}={value}: must be >= 1")
            changes[name] = value
    if FLAGS.min_round_s is not None:
        if not 0 <= FLAGS.min_round_s <= 3600:  # also refuses nan and inf
            raise ConfigError(f"--min_round_s={FLAGS.min_round_s}: must be a number of seconds in [0, 3600]")
        changes["min_round_s"] = FLAGS.min_round_s
    if not 1 <= FLAGS.num_seeds <= 1024:
        raise ConfigError(f"--num_seeds={FLAGS.num_seeds}: must be in [1, 1024]")
    options = dataclasses.replace(options, **changes)
    check_options(options)
    if FLAGS["out"].present:  # before timing anything
        check_out_file(FLAGS.out)
    return options


def _refuse_repeats(flag: str, text: str, parsed: Any, shown: Any = None) -> None:
    """ConfigError when two entries of a list flag mean the same (`4x24x8` and `04x24x8`): the same row twice."""
    shown = list(shown or parsed)
    for i, value in enumerate(parsed):
        if value in parsed[:i]:
            first = shown[list(parsed).index(value)]
            raise ConfigError(f"--{flag}={text!r}: {shown[i]} repeats {first}; give each once")


def check_options(options: Options) -> None:
    """Validate the config of every group before timing any; an error names the flag that set it."""
    checks = []
    if "speed" in options.sections:
        flag = "settings" if FLAGS["settings"].present else "preset"
        for s in options.settings:
            checks += [(flag, s, s.config(c).replace(num_seeds=options.num_seeds)) for c in options.cells]
    if "seeds" in options.sections:
        s, flag = options.seeds_setting, "seeds_setting" if FLAGS["seeds_setting"].present else "preset"
        n = max(options.seed_counts)
        checks += [(flag, s, seeds_config(c, s).replace(num_seeds=n)) for c in options.seeds_cells or options.cells]
    if "profile" in options.sections:
        s, flag = options.seeds_setting, "seeds_setting" if FLAGS["seeds_setting"].present else "preset"
        cell = (options.seeds_cells or options.cells)[0]
        checks.append((flag, s, seeds_config(cell, s).replace(num_seeds=max(options.seed_counts))))
    if "linear" in options.sections:
        flag = "linear_setting" if FLAGS["linear_setting"].present else "preset"
        checks += [(flag, options.linear_setting, linear_config(options, c)) for c in options.linear_cells]
    for flag, setting, config in checks:
        config = config.replace(matmul_precision=options.matmul_precision)
        if error := _precision_error(config):
            raise ConfigError(error)
        try:
            validate(config)
        except ConfigError as e:
            raise ConfigError(f"--{flag}: {setting} ({config.cell}): {e}") from None


def _precision_error(config: Config) -> str:
    """The one-line refusal of --matmul_precision on this backend, or ""."""
    try:
        policy.matmul_precision(jax.default_backend(), config.matmul_precision)
    except ValueError as e:
        return str(e)
    return ""


def main(argv: list[str]) -> None:
    options = options_from_flags()
    speed, seeds = "speed" in options.sections, "seeds" in options.sections
    linear, grid, profile = ("linear" in options.sections, "grid" in options.sections, "profile" in options.sections)
    torch = import_torch() if options.use_torch else None
    if options.use_torch and torch is None:
        print("torch is not installed: the torch column is skipped", file=sys.stderr)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    n_groups = len(options.cells) * (speed * len(options.settings) + seeds * len(options.seed_counts))
    log(f"jax {jax.__version__} on {jax.devices()[0].platform}; {n_groups} groups")
    groups = benchmark(options, log) if speed else []
    seeds_groups = benchmark_seeds(options, log, torch) if seeds else []
    extra = []
    if linear:
        extra.append(linear_section(options, benchmark_linear(options, log)))
    if grid:
        extra.append(grid_section(options, benchmark_grid(options, log)))
    if profile:
        extra.append(profile_section(options, log))
    command = " ".join(["python -m benchmarks.speed", *sys.argv[1:]])
    report = markdown(options, groups, seeds_groups, torch, command, tuple(extra))
    print(report)
    if FLAGS.out:
        atomic_write(FLAGS.out, lambda f: f.write(report))


FLAG_GROUPS = {
    "what to time": (
        *("preset", "sections", "settings", "cells", "variants", "num_seeds", "seeds_setting", "seed_counts"),
        "matmul_precision",
    ),
    "contenders": ("flax", "torch", "torch_threads"),
    "timing": ("rounds", "warmup", "min_round_s"),
    "output": ("out",),
}

if __name__ == "__main__":
    from experiments.flags import run

    define_flags()
    run(main, groups=FLAG_GROUPS)

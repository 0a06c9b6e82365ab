r"""What `benchmarks.speed` times, as data: a setting `BxTxH`, the options of one run, and the presets.

A setting `BxTxH` is batch B, T time steps read by the cell (copy with delay `seq_len = T - 20`, since copy
sequences are `seq_len + 20` long) and width H. One timed step is a training step on the copy task (10 input
categories, 9 classes at every time step), forward + backward + gradient clipping + Adam update, jitted, with
the project's defaults (`Config()`: adam, lr 1e-3, clip_norm 1).

Analytic GFLOP/s (of ours) counts matmul FLOPs only. With G gates (rnn 1, gru 3, lstm 4), I = 10
inputs and O = 9 outputs, the forward pass is F = 2 B T (G H (I + H) + H O); the backward pass
multiplies by the transpose of each matmul's two operands, 2F, so a training step is ~3F and
GFLOP/s = 3F / (seconds per step) / 1e9. Elementwise ops, the loss and Adam are not counted.

The seeds, linear and profile sections train on the main job's task (`experiments.compare.DEFAULTS`: adding,
Adam 1e-3, clip 1) at their setting's sizes (`seeds_config`, `linear_config`), with T = seq_len.
"""

import dataclasses
import math
import re

from experiments.compare import DEFAULTS as MAIN_JOB
from experiments.config import Config, ConfigError
from tasks.copy_memory import NUM_RECALL, CopyMemory

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
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
        """Matmul FLOPs of one training step, ~3x the forward pass (see the module)."""
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


def seeds_config(cell: str, setting: Setting) -> Config:
    """The seeds table's config of `cell`: experiments.compare's defaults at `setting`'s sizes, evaluating nothing."""
    sizes = dict(batch_size=setting.batch_size, seq_len=setting.length, hidden_size=setting.hidden_size)
    return MAIN_JOB.replace(cell=cell, eval_size=TIMED_EVAL_SIZE, **sizes)


def linear_config(options: Options, cell: str) -> Config:
    """The linear section's config of `cell`: the seeds table's defaults at `linear_setting`, ours' precision."""
    return seeds_config(cell, options.linear_setting).replace(matmul_precision=options.matmul_precision)

r"""Milliseconds per training step: our cells against flax's `nn.RNN` (and PyTorch, when installed),
and N seeds trained in one vmapped program against the same seeds one after another.

    python -m benchmarks.speed --preset=full --out=results/speed.md
    python -m benchmarks.speed --preset=quick
    python -m benchmarks.speed --settings=128x520x256 --cells=lstm --variants=step,sequence+unroll4 --rounds=9
    python -m benchmarks.speed --preset=gpu --out=results/speed/gpu.md     # on a GPU: vs cuDNN
    python -m benchmarks.speed --sections=seeds --seeds_setting=50x100x64 --seed_counts=1,2,4,8 --notorch

`--sections` picks the tables: `speed` (ours vs flax vs torch), `seeds` (N seeds vmapped vs one after
another), `linear`, `grid` and `profile` (described at their flags). What one step is, a setting `BxTxH`,
the presets and the FLOP count: `benchmarks/speed_presets.py`; the contenders (ours, flax, torch):
`benchmarks/contenders.py`; `--variants`: `benchmarks/variants.py`; the alternating rounds:
`benchmarks/timing.py`; each section's measurement and table: `benchmarks/speed_sections.py` and
`benchmarks/grid_slice.py`; the flag checks: `benchmarks/speed_checks.py`. This module is the command line.
"""

import sys

import jax
from absl import flags

from benchmarks.contenders import import_torch
from benchmarks.grid_slice import GRID_SLICES, benchmark_grid, grid_section
from benchmarks.speed_checks import checked_options
from benchmarks.speed_presets import CELLS, LINEAR_CELLS, PRESETS, SECTIONS, Options
from benchmarks.speed_sections import (
    benchmark,
    benchmark_linear,
    benchmark_seeds,
    linear_section,
    markdown,
    profile_section,
)
from experiments.config import check_out_file
from experiments.io import atomic_write

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
    """The checked options of this command line (`speed_checks.checked_options`); --out is checked writable."""
    names = [*(name for group in FLAG_GROUPS.values() for name in group), *SECTION_FLAGS]
    values = {name: FLAGS[name].value for name in names}
    given = {name for name in names if FLAGS[name].present}
    options = checked_options(values, given, jax.default_backend())
    if FLAGS["out"].present:  # before timing anything
        check_out_file(FLAGS.out)
    return options


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    options = options_from_flags()
    speed, seeds = "speed" in options.sections, "seeds" in options.sections
    linear, grid, profile = ("linear" in options.sections, "grid" in options.sections, "profile" in options.sections)
    torch = import_torch() if options.use_torch else None
    if options.use_torch and torch is None:
        print("torch is not installed: the torch column is skipped", file=sys.stderr)
    n_groups = len(options.cells) * (speed * len(options.settings) + seeds * len(options.seed_counts))
    _log(f"jax {jax.__version__} on {jax.devices()[0].platform}; {n_groups} groups")
    groups = benchmark(options, _log) if speed else []
    seeds_groups = benchmark_seeds(options, _log, torch) if seeds else []
    extra = []
    if linear:
        extra.append(linear_section(options, benchmark_linear(options, _log)))
    if grid:
        extra.append(grid_section(options, benchmark_grid(options, _log)))
    if profile:
        extra.append(profile_section(options, _log))
    command = " ".join(["python -m benchmarks.speed", *sys.argv[1:]])
    report = markdown(options, groups, seeds_groups, torch, command, tuple(extra))
    print(report)
    if FLAGS.out:
        atomic_write(FLAGS.out, lambda f: f.write(report))


# the sections' own flags (`--help` lists them under "other")
SECTION_FLAGS = ("linear_setting", "linear_cells", "baseline", "grid_slice", "grid_workers", "profile_dir")
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

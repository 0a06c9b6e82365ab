"""Variants of our model, timed in the same rounds as ours: other execution flags and XLA compile options.

`--variants` runs our model with: `step` (the scan of the cell's step), `sequence` (its whole-sequence
method: the fused kernel of `cells.fused`), `unrollK` (`--unroll=K`), `cmdbuf` (XLA GPU command buffers,
`COMMAND_BUFFER_OPTIONS`), a `--matmul_precision` value (`tf32x3`), or a `+`-joined combination
(`sequence+unroll16`, `cmdbuf+tf32x3`). The `gpu` preset times both paths against cuDNN (PyTorch on CUDA)
and the seeds table up to 256 seeds.
"""

import re
from collections.abc import Callable
from typing import Any

from benchmarks.contenders import train_programs
from experiments import policy
from experiments.config import Config, ConfigError
from experiments.experiment import Experiment
from experiments.policy import PRECISIONS

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

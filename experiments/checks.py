"""What a conformance check reports (`CheckResult`) and the assertions checks are written with.

Shared by the cell checks (`experiments.cell_checks`) and the task checks (`experiments.task_checks`): a
check raises `CheckError` (one line) on a broken contract; float32 programs are compared with the
tolerances RTOL .. GRAD_ATOL. `check_sizes` refuses sizes the checks cannot run at, naming the flag.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.config import ConfigError
from experiments.rules import check_integer

RTOL, ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5  # gradients of two float32 programs: summation orders differ over T steps
# the problem RTOL .. GRAD_ATOL hold for: the default sizes, hidden_size + input_size = 8 + 3, seq_len 5
REFERENCE_FAN_IN, REFERENCE_LENGTH = 11, 5
# (low, high) of the sizes the checks run at: small inputs are the point, and a huge width would only hang
SIZE_BOUNDS = {"hidden_size": (1, 4096), "input_size": (1, 4096), "batch": (1, 1024), "seq_len": (2, 1000)}
MAX_ELEMENTS = 2**24  # batch x seq_len x (hidden_size + input_size): the gradient check keeps every step


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one conformance check."""

    name: str
    passed: bool
    message: str = ""

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{status} {self.name}" + (f": {self.message}" if self.message else "")


class CheckError(Exception):
    """Raised inside a check to fail it with a message."""


def one_line(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"the cell called sys.exit({e.code!r})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def key_path(path: tuple) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def compare(name: str, got: Any, want: Any, exact: bool = False, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Fail unless two pytrees have the same structure and (near-)equal leaves."""
    got_def, want_def = jax.tree.structure(got), jax.tree.structure(want)
    require(got_def == want_def, f"{name}: tree structure {got_def} != {want_def}")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        require(a.shape == b.shape, f"{name}{key_path(path)}: shape {a.shape} != {b.shape}")
        same = np.array_equal(a, b) if exact else np.allclose(a, b, rtol=rtol, atol=atol)
        if not same:
            diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))) if a.size else 0.0
            raise CheckError(f"{name}{key_path(path)} differs (max abs diff {diff:.3g})")


def finite(name: str, tree: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact) and not np.all(np.isfinite(leaf)):
            raise CheckError(f"{name}{key_path(path)} has non-finite values")


def shapes(tree: Any) -> Any:
    return jax.tree.map(lambda a: (tuple(np.shape(a)), str(jnp.result_type(a))), tree)


def check_sizes(**sizes: int) -> None:
    """ConfigError naming the flag unless every size is an integer within SIZE_BOUNDS (and, given all four,
    their product within MAX_ELEMENTS)."""
    for name, value in sizes.items():
        check_integer(name, value, *SIZE_BOUNDS[name])
    if {"batch", "seq_len", "hidden_size", "input_size"} <= sizes.keys():
        n = sizes["batch"] * sizes["seq_len"] * (sizes["hidden_size"] + sizes["input_size"])
        if n > MAX_ELEMENTS:
            raise ConfigError(
                f"--batch={sizes['batch']} x --seq_len={sizes['seq_len']} x (--hidden_size={sizes['hidden_size']} + "
                f"--input_size={sizes['input_size']}) = {n}: must be at most {MAX_ELEMENTS} (the checks keep every "
                "step of the batch in memory); lower one of them"
            )

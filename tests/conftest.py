"""Suite-wide settings, and a shared fixture: run entry points with bad input and check each fails in one line."""

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import jax
import pytest

from tests.helpers import ROOT

# No test writes into the user's JAX compilation cache (experiments.compile_cache): entry points run by the
# tests inherit this; a test of the cache names its own folder.
os.environ["RNNLAB_COMPILATION_CACHE"] = "off"

# The suite checks float32 numerics against NumPy references: matmuls at full fp32 precision on
# every backend (the project's default, --matmul_precision=highest), not a GPU's TF32 default.
jax.config.update("jax_default_matmul_precision", "highest")

Case = tuple[str, Sequence[str], str]  # (module, args, what stderr must start with after "error: ")


def run_module(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m module args...` from the repo root, on CPU."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_errors(cases: Sequence[Case]) -> None:
    """Every case exits 2 with nothing on stdout and exactly one stderr line, `error: <prefix>...`.

    Nothing printed on stdout means nothing was measured or trained. Cases run two at a time.
    """
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda case: run_module(case[0], *case[1]), cases))
    wrong = []
    for (module, args, prefix), proc in zip(cases, procs, strict=True):
        lines = proc.stderr.strip().splitlines()
        if not (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {prefix}")) or proc.stdout:
            wrong.append(f"{module} {' '.join(args)}: exit {proc.returncode}, stderr {proc.stderr[-600:]!r}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="session")
def one_line_errors() -> Callable[[Sequence[Case]], None]:
    return assert_one_line_errors

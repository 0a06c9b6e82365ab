"""The conformance suite passes on every registered cell and fails on broken ones."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from cells import CELLS
from experiments.cell_checks import CHECKS, CheckResult, check_cell
from experiments.config import Config, ConfigError
from experiments.validation import validate
from tests.helpers import ROOT

CHECK_NAMES = ["construct"] + [name for name, _ in CHECKS]


def _failed(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.passed}


@pytest.mark.parametrize("name", CELLS.names())
def test_registered_cell_conforms(name: str) -> None:
    results = check_cell(name, hidden_size=4, input_size=3, batch=2, seq_len=3)
    assert [r.name for r in results] == CHECK_NAMES
    assert not _failed(results), "\n".join(str(r) for r in results)


class _Base(nn.RNNCellBase):
    """A minimal tanh cell that the broken cells below spoil in one way each."""

    hidden_size: int = 4

    def _h(self, carry: jax.Array, x: jax.Array) -> jax.Array:
        W = self.param("W", nn.initializers.lecun_normal(), (x.shape[-1], self.hidden_size))
        U = self.param("U", nn.initializers.orthogonal(), (self.hidden_size, self.hidden_size))
        return jnp.tanh(x @ W + carry @ U)

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

    @property
    def num_feature_axes(self) -> int:
        return 1


class GoodCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x)
        return h, h


class WrongCarryShapeCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x)
        return jnp.concatenate([h, h], axis=-1), h


class WrongCarryStructureCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x)
        return (h, h), h


class NaNCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x) * jnp.nan
        return h, h


class UnbatchedCarryCell(GoodCell):
    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros((self.hidden_size,))


class UnusedParamCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        self.param("b", nn.initializers.normal(), (self.hidden_size,))
        h = self._h(carry, x)
        return h, h


class BatchMixingCell(_Base):
    """Normalises over the batch axis, so a vmapped call differs from the stacked batch."""

    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x)
        h = h - h.mean(axis=0)
        return h, h


class IntOutputCell(_Base):
    """Carries a float state but outputs int32: the readout's gradient through y is exactly zero."""

    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry, x)
        return h, jnp.round(10 * h).astype(jnp.int32)


class IntCarryCell(_Base):
    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,), jnp.int32)

    @nn.compact
    def __call__(self, carry, x):
        h = self._h(carry.astype(jnp.float32), x)
        return jnp.round(10 * h).astype(jnp.int32), h


class RaisingCell(_Base):
    @nn.compact
    def __call__(self, carry, x):
        raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize(
    "cell, must_fail, messages",
    [
        (GoodCell(), set(), {}),
        (WrongCarryShapeCell(), {"carry_contract", "scan"}, {"carry_contract": "shape (2, 8)"}),
        (WrongCarryStructureCell(), {"carry_contract", "scan"}, {"carry_contract": "structure"}),
        (NaNCell(), {"output", "gradients"}, {"output": "non-finite"}),
        (UnbatchedCarryCell(), {"carry_init"}, {"carry_init": "leading batch dim 2"}),
        (UnusedParamCell(), {"gradients"}, {"gradients": "['b']"}),
        (BatchMixingCell(), {"vmap"}, {"vmap": "differs"}),
        (IntOutputCell(), {"dtypes"}, {"dtypes": "y is int32; it must be floating"}),
        (IntCarryCell(), {"dtypes"}, {"dtypes": "carry<root> is int32"}),
        (RaisingCell(), set(CHECK_NAMES) - {"construct", "carry_init"}, {"output": "RuntimeError: boom"}),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_broken_cell_fails_relevant_checks(cell: nn.Module, must_fail: set[str], messages: dict[str, str]) -> None:
    results = check_cell(cell, input_size=3, batch=2, seq_len=3)
    report = "\n".join(str(r) for r in results)
    assert must_fail <= _failed(results), report
    if not must_fail:
        assert not _failed(results), report
    by_name = {r.name: r.message for r in results}
    for name, text in messages.items():
        assert text in by_name[name], report
    assert all("\n" not in r.message for r in results)


def test_unbuildable_spec_fails_construct_only() -> None:
    results = check_cell("cells.gru:NoSuchCell")
    assert [(r.name, r.passed) for r in results] == [("construct", False)]
    assert "NoSuchCell" in results[0].message
    results = check_cell("rnn", options="activation=sigmoid")
    assert not results[0].passed and "activation" in results[0].message


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "experiments.conformance", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_on_import_path() -> None:
    proc = _cli("cells.gru:GRUCell", "--hidden_size=4", "--seq_len=3", "plugins:Registry")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the second spec is not a cell
    lines = proc.stdout.strip().splitlines()
    n = len(CHECK_NAMES)
    assert [line.split()[1].rstrip(":") for line in lines[:n]] == CHECK_NAMES
    assert all(line.startswith("PASS ") for line in lines[:n])
    assert lines[n] == f"cells.gru:GRUCell: {n}/{n} checks passed"
    assert lines[n + 1].startswith("FAIL construct: ")
    assert lines[n + 2] == "plugins:Registry: 0/1 checks passed"


@pytest.mark.parametrize("cell", ["IntOutputCell", "IntCarryCell"])
def test_training_refuses_a_cell_with_integer_outputs_or_carry(cell: str) -> None:
    with pytest.raises(ConfigError, match=r"^--cell=tests.test_conformance:Int\w+: its (output|carry) is int32"):
        validate(Config(cell=f"tests.test_conformance:{cell}", hidden_size=4))

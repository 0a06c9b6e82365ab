"""Values the float32 program cannot hold, seeds past int32, non-finite options, one number rule in every parser,
user modules that fail at import, cells that only fit a batch of 1, flags a measurement would ignore, conformance
tolerances at large widths, and the speed benchmark's lists and memory check (`experiments/rules.py` holds the
rules; each test below fails without them)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from cells import make_cell
from experiments import cell_checks
from experiments.config import Config, ConfigError, check_fields, lr_multipliers, parse_learning_rates
from experiments.validation import validate
from plugins import load_object, parse_options
from tasks import make_task
from tests.helpers import ROOT

TINY = Config(cell="rnn", seq_len=5, hidden_size=4, batch_size=2, eval_size=4, steps=2)


# ---------------------------------------------------------------- values checked after the float32 cast


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"learning_rate": 1e-46}, "--learning_rate"),  # 0 in float32: never moves
        ({"learning_rate": 1e-40}, "--learning_rate"),  # subnormal: flushed to 0 by XLA
        ({"learning_rate": 1e39}, "--learning_rate"),  # inf in float32: every seed "diverged"
        ({"learning_rate": (1e-3, 0.0010000000000000002)}, "--learning_rate"),  # one float32 number twice
        ({"clip_norm": 1e-46}, "--clip_norm"),  # clips to 0
        ({"clip_norm": 1e39}, "--clip_norm"),
        ({"optimizer": "sgd", "momentum": 0.99999999999}, "--momentum"),  # 1.0 in float32
        ({"lr_multipliers": "kernel=1e30", "learning_rate": 1e10}, "--lr_multipliers"),  # the product overflows
        ({"lr_multipliers": "kernel=1e-40"}, "--lr_multipliers"),  # the product underflows
    ],
)
def test_values_that_float32_turns_into_0_inf_or_duplicates_are_refused(changes, flag):
    with pytest.raises(ConfigError, match=f"^{flag}"):
        check_fields(TINY.replace(**changes))


def test_rates_float32_holds_are_accepted_and_the_list_parser_checks_the_cast():
    check_fields(TINY.replace(learning_rate=(1e-30, 1e-3, 1e30), clip_norm=0.0, lr_multipliers="kernel=1e-3"))
    from experiments.rules import float32_positive

    assert float32_positive(1.2e-38) and not float32_positive(1.1e-38) and not float32_positive(3.5e38)
    with pytest.raises(ConfigError, match="same float32 number"):
        parse_learning_rates("1e-3,0.0010000000000000002")


# ---------------------------------------------------------------- seeds


def test_seeds_past_int32_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"^--seed=2147483647 --num_seeds=2: the last seed, 2147483648"):
        check_fields(TINY.replace(seed=2**31 - 1, num_seeds=2))
    check_fields(TINY.replace(seed=2**31 - 2, num_seeds=2))
    from experiments.rules import check_seeds

    with pytest.raises(ConfigError, match="--seed=2147483648"):
        check_seeds(2**31, 1)


@pytest.mark.slow
def test_seed_and_number_flags_are_one_line_errors_in_every_entry_point(one_line_errors, tmp_path):
    work = str(tmp_path / "w")
    train = ["--cell=rnn", "--seq_len=5", "--hidden_size=4", "--steps=2", f"--workdir={work}"]
    one_line_errors(
        [
            ("experiments.train", [*train, "--seed=2147483647", "--num_seeds=2"], "--seed=2147483647 --num_seeds=2"),
            (
                "experiments.gradients",
                ["--cells=rnn", "--seed=2147483647", "--num_seeds=2", f"--workdir={work}"],
                "--seed=2147483647 --num_seeds=2",
            ),
            ("experiments.train", [*train, "--seed=١"], "--seed=١: not an integer"),  # an Arabic-Indic one
            ("experiments.train", [*train, "--steps=1_000"], "--steps=1_000: not an integer"),
            ("experiments.train", [*train, "--learning_rate=1_0e-3"], "--learning_rate=1_0e-3: must be"),
            ("experiments.train", [*train, "--clip_norm=1_0"], "--clip_norm=1_0: not a number"),
            ("experiments.train", [*train, "--learning_rate=1e-46"], "--learning_rate=1e-46: 1e-46 is 0.0 in float32"),
            ("experiments.gradients", ["--batch=1_6", f"--workdir={work}"], "--batch=1_6: not an integer"),
            ("experiments.conformance", ["rnn", "--hidden_size=0x10"], "--hidden_size=0x10: not an integer"),
            ("benchmarks.speed", ["--rounds=٣"], "--rounds=٣: not an integer"),
            ("benchmarks.speed", ["--seed_counts=1,01"], "--seed_counts='1,01': 1 given more than once"),
            ("benchmarks.speed", ["--settings=4x24x8,04x24x8"], "--settings='4x24x8,04x24x8': B=4 T=24 H=8 repeats"),
            ("benchmarks.speed", ["--settings=4x2٤x8"], "--settings: '4x2٤x8' is not BxTxH"),
            ("benchmarks.tables", ["--preset=smoke", "--seq_lens=١٠"], "--seq_lens='١٠': must be"),
            ("experiments.train", [*train, "--cell_options=activation=relu,x=1_0"], "--cell_options: option x='1_0'"),
        ]
    )
    assert not (tmp_path / "w").exists()


def test_one_number_rule_in_list_flags_and_options():
    from experiments.rules import int_list

    assert int_list("1,2,10", "x") == [1, 2, 10]
    for bad in ("1,01", "١", "1_0", "²", "0x10"):
        with pytest.raises(ConfigError):
            int_list(bad, "seq_lens")
    for bad in ("kernel=1_0", "kernel=١"):
        with pytest.raises(ConfigError, match="--lr_multipliers"):
            lr_multipliers(bad)
    with pytest.raises(ValueError, match="not a number as written here"):
        parse_options("forget_bias=1_000")
    with pytest.raises(ValueError, match="given more than once"):
        parse_options("forget_bias=1,forget_bias=2")
    assert parse_options("a=1e-3,b=relu,c=-inf") == {"a": 1e-3, "b": "relu", "c": float("-inf")}


# ---------------------------------------------------------------- non-finite cell and task options


@pytest.mark.parametrize(
    "cell, options",
    [("lstm", "forget_bias=1e400"), ("cornn", "dt=inf"), ("lstm", "chrono_tmax=inf"), ("gru", "chrono_tmax=nan")],
)
def test_infinite_or_nan_cell_options_are_refused(cell, options):
    with pytest.raises(ValueError, match="must be finite"):
        make_cell(cell, 4, options)
    with pytest.raises(ConfigError, match="^--cell_options"):
        validate(TINY.replace(cell=cell, cell_options=options))
    results = cell_checks.check_cell(cell, hidden_size=4, options=options)
    assert [r.name for r in results] == ["construct"] and not results[0].passed  # no cell built: nothing passes


def test_infinite_task_options_are_refused_unless_the_class_allows_them():
    with pytest.raises(ValueError, match="power_a=nan must be finite"):
        make_task("associative_recall", 6, "power_a=nan")
    cell = make_cell("tests.test_value_checks:ScaledCell", 4, "scale=inf")  # it declares `scale` may be inf
    assert cell.scale == float("inf")


class ScaledCell(nn.Module):
    """A cell that lists an option in `nonfinite_options`: inf is a meaningful value for it."""

    hidden_size: int
    scale: float = 1.0
    nonfinite_options = ("scale",)

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(nn.Dense(self.hidden_size)(jnp.concatenate([carry, x], -1)))
        return h, h

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:1] + (self.hidden_size,))


# ---------------------------------------------------------------- user modules that fail in unusual ways


MODULES = {
    "raises_at_import": "raise RuntimeError('no licence server')\n",
    "exits_at_import": "import sys\nsys.exit(0)\n",
    "exits_in_init": textwrap.dedent("""\
        import sys
        from flax import linen as nn

        class Cell(nn.Module):
            hidden_size: int

            def __post_init__(self):
                sys.exit(0)

            def initialize_carry(self, rng, input_shape):
                return None
        """),
}


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    folder = tmp_path / "user"
    folder.mkdir()
    for name, text in MODULES.items():
        (folder / f"rv_{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_module_that_raises_or_exits_at_import_is_a_value_error_naming_it(user_modules):
    with pytest.raises(ValueError, match=r"cannot import 'rv_raises_at_import' .*RuntimeError: no licence server"):
        load_object("rv_raises_at_import:Cell")
    with pytest.raises(ValueError, match=r"cannot import 'rv_exits_at_import' .*it called sys.exit\(0\)"):
        load_object("rv_exits_at_import:Cell")
    with pytest.raises(ConfigError, match=r"^--cell: cell 'rv_exits_in_init:Cell' failed to build: it called sys.exit"):
        validate(TINY.replace(cell="rv_exits_in_init:Cell"))


@pytest.mark.slow
def test_entry_points_exit_non_zero_in_one_line_on_a_module_that_exits_at_import(user_modules, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{user_modules}{os.pathsep}{ROOT}"}
    work = tmp_path / "w"

    def run(*args):
        cmd = [sys.executable, "-m", *args]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    train = run("experiments.train", "--cell=rv_exits_at_import:Cell", "--seq_len=5", f"--workdir={work}")
    assert train.returncode == 2 and train.stderr.strip().splitlines() == [
        "error: --cell: cannot import 'rv_exits_at_import' (from 'rv_exits_at_import:Cell'): it called sys.exit(0)"
    ]
    assert not work.exists()
    check = run("experiments.conformance", "rv_raises_at_import:Cell")
    assert check.returncode == 1, check.stderr
    assert "FAIL construct: ValueError: cannot import 'rv_raises_at_import'" in check.stdout
    assert "RuntimeError: no licence server" in check.stdout


# ---------------------------------------------------------------- cells validated at a batch other than 1


class BatchOfOneCell(nn.Module):
    """Its output is (1, H) whatever the batch: fits a batch of 1 and nothing else."""

    hidden_size: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(nn.Dense(self.hidden_size)(jnp.concatenate([carry, x], -1)))
        return h, h.mean(0, keepdims=True)

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:1] + (self.hidden_size,))


class NoParamsCell(nn.Module):
    """Keeps its weight in a collection of its own: nothing for the optimizer in `params`."""

    hidden_size: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        w = self.variable("weights", "w", jnp.ones, (x.shape[-1], self.hidden_size)).value
        h = jnp.tanh(carry + x @ w)
        return h, h

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:1] + (self.hidden_size,))


def test_a_cell_whose_output_ignores_the_batch_is_refused_with_its_shape():
    with pytest.raises(ConfigError, match=r"its output has shape \(1, 4\) on a batch of 3; it must be \(3, \.\.\.\)"):
        validate(TINY.replace(cell="tests.test_value_checks:BatchOfOneCell"))


def test_a_cell_without_params_is_refused_naming_the_collection():
    with pytest.raises(ConfigError, match=r"has no `params` collection \(its variables hold weights\)"):
        validate(TINY.replace(cell="tests.test_value_checks:NoParamsCell"))


# ---------------------------------------------------------------- flags a measurement ignores


@pytest.mark.slow
def test_gradients_refuses_flags_it_would_ignore(one_line_errors, tmp_path):
    out = f"--workdir={tmp_path / 'g'}"
    one_line_errors(
        [
            (
                "experiments.gradients",
                ["--from_workdirs=runs/x", "--hidden_size=999", out],
                "--hidden_size: ignored with",
            ),
            ("experiments.gradients", ["--cells=rnn", "--learning_rate=1e-2", out], "--learning_rate: does not apply"),
            ("experiments.gradients", ["--cells=rnn", "--batch_size=8", out], "--batch_size: does not apply"),
        ]
    )


# ---------------------------------------------------------------- conformance tolerances


class RoundingCell(nn.Module):
    """Small outputs (~1e-3) whose jitted step differs from the eager one by `offset`: float32 rounding at a
    large width looks like this (the built-in rnn at width 4096 differed by 4.5e-6)."""

    hidden_size: int
    offset: float = 4.5e-6

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        a = self.param("a", nn.initializers.normal(1.0), (self.hidden_size,))
        h = 1e-3 * jnp.tanh(carry * a + x.sum(-1, keepdims=True))
        if isinstance(h, jax.core.Tracer):
            h = h + self.offset
        return h, h

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:1] + (self.hidden_size,))


def test_conformance_tolerances_scale_with_width_and_length_from_the_default():
    base = cell_checks.tolerances(8, 3, 5)
    assert base.step == (cell_checks.RTOL, cell_checks.ATOL)
    assert base.gradients == (cell_checks.GRAD_RTOL, cell_checks.GRAD_ATOL)
    wide = cell_checks.tolerances(4096, 3, 5)
    assert wide.step[1] == pytest.approx(cell_checks.ATOL * 4099 / 11) and wide.step[1] > 4.5e-6
    assert cell_checks.tolerances(8, 3, 500).sequence[1] == pytest.approx(cell_checks.ATOL * 10)


def test_float32_rounding_at_width_4096_passes_and_a_real_difference_still_fails():
    def jit_result(width: int, offset: float) -> cell_checks.CheckResult:
        results = cell_checks.check_cell(RoundingCell(width, offset), hidden_size=width)
        return next(r for r in results if r.name == "jit")

    assert not jit_result(8, 4.5e-6).passed  # at width 8, 4.5e-6 is not rounding
    assert jit_result(4096, 4.5e-6).passed, jit_result(4096, 4.5e-6)
    assert not jit_result(4096, 1e-2).passed


# ---------------------------------------------------------------- benchmarks.speed


@pytest.mark.slow
def test_speed_counts_no_held_out_set_in_its_memory_check(tmp_path):
    """With 2 GiB of memory, the old check counted a held-out set of 1000 sequences of 40k steps (1.8 GiB) that the
    benchmark never builds, and refused the setting; the step itself needs a few MiB."""
    code = textwrap.dedent("""\
        import sys
        from experiments import memory_estimate
        memory_estimate.physical_memory_bytes = lambda: 2 * 2**30
        from benchmarks import speed
        speed.define_flags()
        speed.FLAGS(["speed", "--sections=speed,seeds", "--settings=1x40000x1", "--seeds_setting=1x40000x1",
                     "--cells=rnn", "--seed_counts=1"])
        speed.options_from_flags()
        print("accepted")
        """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "accepted", proc.stderr[-2000:]


# ---------------------------------------------------------------- more adversarial inputs to the same rules


@pytest.mark.parametrize(
    "options",
    ["x=0x10", "x=0o17", "x=0b11", "x=1_0.5", "x=１", "x=٣.5", "x=1e1_0"],  # Python reads each as a number
)
def test_option_numbers_python_reads_but_the_rule_refuses(options):
    with pytest.raises(ValueError, match="not a number as written here"):
        parse_options(options)


@pytest.mark.parametrize("options", ["forget_bias=-Infinity", "forget_bias=NaN", "forget_bias=1e309"])
def test_every_spelling_of_a_non_finite_option_is_refused(options):
    with pytest.raises(ValueError, match="must be finite"):
        make_cell("lstm", 4, options)


@pytest.mark.parametrize(
    "changes",
    [
        {"learning_rate": 1e-39},  # subnormal, not 0: XLA flushes it
        {"learning_rate": (1e-3, 1e-3 + 1e-12)},  # distinct in float64 only
        {"learning_rate": (1e-30, 1e38, 3.5e38)},  # the last overflows
        {"optimizer": "sgd", "momentum": 1 - 2**-26},  # rounds to 1.0
        {"optimizer": "sgd", "momentum": 1e-46},  # 0 in float32, but not 0
        {"lr_multipliers": "kernel=1e28", "learning_rate": (1e-3, 1e11)},  # only the second rate overflows
        {"seed": 2**31 - 1024, "num_seeds": 1025},
    ],
)
def test_more_values_the_program_cannot_hold(changes):
    with pytest.raises(ConfigError):
        check_fields(TINY.replace(**changes))


def test_a_module_whose_attribute_lookup_raises_is_one_value_error(tmp_path, monkeypatch):
    (tmp_path / "rv_lazy.py").write_text("def __getattr__(name):\n    raise RuntimeError('lazy import failed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"module 'rv_lazy' \(from 'rv_lazy:Cell'\): RuntimeError: lazy import failed"):
        load_object("rv_lazy:Cell")


class CarryWithoutBatchCell(nn.Module):
    """initialize_carry forgets the batch axis: (H,) where (B, H) is needed."""

    hidden_size: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(nn.Dense(self.hidden_size)(x) + carry)
        return h, h

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros((self.hidden_size,))


class TupleOutputCell(nn.Module):
    hidden_size: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        h = jnp.tanh(nn.Dense(self.hidden_size)(jnp.concatenate([carry, x], -1)))
        return h, (h, h)

    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(input_shape[:1] + (self.hidden_size,))


@pytest.mark.parametrize(
    "cell, message",
    [
        ("CarryWithoutBatchCell", r"initialize_carry gives carry of shape \(4,\) for a batch of 3"),
        ("TupleOutputCell", r"its output is a tuple; it must be one array of shape \(3, \.\.\.\)"),
    ],
)
def test_cells_that_break_the_batch_contract_are_named(cell, message):
    with pytest.raises(ConfigError, match=message):
        validate(TINY.replace(cell=f"tests.test_value_checks:{cell}"))


def test_a_task_whose_sample_exits_is_one_config_error(tmp_path, monkeypatch):
    (tmp_path / "rv_task.py").write_text(
        textwrap.dedent("""\
            import dataclasses, sys
            from tasks.adding import Adding

            @dataclasses.dataclass(frozen=True)
            class Task(Adding):
                def sample(self, key, batch_size):
                    sys.exit(3)
            """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"^--task=rv_task:Task: the task fails on a batch of 2: it called sys.exit\(3\)"
    ):
        validate(TINY.replace(task="rv_task:Task"))

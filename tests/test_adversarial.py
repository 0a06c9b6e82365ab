"""Entry points attacked as a careless or hostile user would: odd flag values, hand-edited records, hostile
folders and plug-ins that break their contract in odd ways. Each either holds a promise (one line naming the
flag, no crash, nothing lost) or is the test of the fix that made it hold."""

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import jax.numpy as jnp
import pytest

from benchmarks import plan
from experiments import io
from experiments.config import Config, ConfigError, check_fields, lr_multipliers, parse_learning_rates
from experiments.flags import int_list_flag, list_flag
from experiments.resume import check_resumable, steps_done
from experiments.trainer import train_and_evaluate
from experiments.validation import validate
from plugins import parse_options

SMALL = Config(cell="rnn", task="adding", seq_len=4, hidden_size=4, batch_size=2, steps=2, eval_size=2, eval_every=1)
ROOT = Path(__file__).resolve().parents[1]
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested deeper than Python's recursion limit


def one_line(e: pytest.ExceptionInfo, prefix: str) -> None:
    message = str(e.value)
    assert message.startswith(prefix) and "\n" not in message, message


# ------------------------------------------------------------------ flag values (held)


@pytest.mark.parametrize(
    ("changes", "prefix"),
    [
        (dict(cell=""), "--cell"),
        (dict(cell="   "), "--cell"),
        (dict(task="ádding"), "--task=ádding"),
        (dict(cell="rnn:"), "--cell"),
        (dict(cell="/no/such/file.py:Cell"), "--cell"),
        (dict(optimizer="ADAM"), "--optimizer='ADAM'"),
        (dict(matmul_precision=""), "--matmul_precision=''"),
        (dict(sequence_path="fused"), "--sequence_path='fused'"),
        (dict(seq_len=10**30), "--seq_len="),
        (dict(cell_options="=1"), "--cell_options"),
        (dict(cell_options="activation=relu\u200b"), "--cell_options"),  # a zero-width space after relu
        (dict(task_options="x"), "--task_options=x"),
        (dict(task_options=",,"), "--task_options"),  # was read as no options: the defaults trained
        (dict(lr_multipliers="nosuch=2"), "--lr_multipliers"),
        (dict(rmsprop_decay=1.0), "--rmsprop_decay"),
        (dict(num_devices=4097), "--num_devices"),
        (dict(num_layers=0), "--num_layers"),
    ],
)
def test_odd_flag_values_are_one_line_naming_the_flag(changes, prefix):
    with pytest.raises(ConfigError) as e:
        validate(SMALL.replace(**changes))
    one_line(e, prefix)


@pytest.mark.parametrize("text", ["", " ", "1e-3,", ",1e-3", "1e-2,1e-3", "1e-3,1e-3", "0x10", "1e-3;1e-2", "∞"])
def test_learning_rate_texts_are_refused_in_one_line(text):
    with pytest.raises(ConfigError) as e:
        parse_learning_rates(text)
    one_line(e, "--learning_rate=")


@pytest.mark.parametrize("text", ["\t", "rnn,\u00a0", "rnn,RNN,rnn"])
def test_list_flags_refuse_blank_and_repeated_entries(text):
    with pytest.raises(ConfigError) as e:
        list_flag(text, "cells")
    one_line(e, "--cells=")


@pytest.mark.parametrize("text", ["9" * 5000, "6,06", "+", "-0"])
def test_integer_lists_refuse_huge_repeated_and_signless_values(text):
    with pytest.raises(ConfigError):
        int_list_flag(text, "seq_lens")


@pytest.mark.parametrize("text", ["kernel=1,kernel=2", "1x=2", "kernel", "kernel=-1", "kernel=nan"])
def test_lr_multipliers_refuse_odd_groups(text):
    with pytest.raises(ConfigError) as e:
        lr_multipliers(text)
    one_line(e, "--lr_multipliers=")


@pytest.mark.parametrize("text", ["a=1,a=2", "a=1_0", "a=١", "1a=2", ",,", "a=1,,b=2", "a=1,"])
def test_odd_options_are_one_value_error(text):
    with pytest.raises(ValueError) as e:
        parse_options(text)
    assert "\n" not in str(e.value)


def test_an_option_nested_too_deeply_is_a_string_not_a_crash():
    assert parse_options("a=" + "(" * 10_000) == {"a": "(" * 10_000}


def test_negative_zero_clip_and_momentum_are_zero():
    check_fields(SMALL.replace(clip_norm=-0.0, momentum=-0.0, clip_value=-0.0))


# ------------------------------------------------------------------ plug-ins that break their contract


CELLS = """
import jax.numpy as jnp
import flax.linen as nn

print("a plug-in that prints at import")


class Base(nn.RNNCellBase):
    features: int = 4

    def initialize_carry(self, rng, input_shape):
        return jnp.zeros((*input_shape[:-1], self.features))

    @property
    def num_feature_axes(self):
        return 1


class NaNCell(Base):
    @nn.compact
    def __call__(self, h, x):
        h = jnp.tanh(nn.Dense(self.features)(x) + nn.Dense(self.features)(h)) * jnp.nan
        return h, h


class HugeCell(Base):
    @nn.compact
    def __call__(self, h, x):
        self.param("w", nn.initializers.zeros, (200_000, 200_000))
        return h, h


class RecursionCell(Base):
    @nn.compact
    def __call__(self, h, x):
        raise RecursionError("deep")


class MemoryCell(Base):
    @nn.compact
    def __call__(self, h, x):
        raise MemoryError()


class ThreeOutputs(Base):
    @nn.compact
    def __call__(self, h, x):
        h = nn.Dense(self.features)(x)
        return h, h, h


class NoneCarry(Base):
    @nn.compact
    def __call__(self, h, x):
        return None, nn.Dense(self.features)(x)


class DictCarry(Base):
    @nn.compact
    def __call__(self, h, x):
        h = nn.Dense(self.features)(x)
        return {"h": h}, h


class BoolOutput(Base):
    @nn.compact
    def __call__(self, h, x):
        h = jnp.tanh(nn.Dense(self.features)(x) + h)
        return h, h > 0


class ComplexOutput(Base):
    @nn.compact
    def __call__(self, h, x):
        h = jnp.tanh(nn.Dense(self.features)(x) + h)
        return h, h + 1j * h


class NeedsAnOption(Base):
    required: int = None

    def __post_init__(self):
        if self.required is None:
            raise TypeError("missing option 'required'")
        super().__post_init__()


NOT_A_CLASS = 42


def function_cell(h, x):
    return h, x
"""

TASKS = """
import jax.numpy as jnp
from tasks.adding import Adding


class IntInputs(Adding):
    def sample(self, key, batch):
        x, y = super().sample(key, batch)
        return x.astype(jnp.int32), y


class BatchOfOne(Adding):
    def sample(self, key, batch):
        x, y = super().sample(key, batch)
        return x[:1], y[:1]


class ShortSequences(Adding):
    def sample(self, key, batch):
        x, y = super().sample(key, batch)
        return x[:, :-1], y


class TargetsOfOne(Adding):
    def sample(self, key, batch):
        x, y = super().sample(key, batch)
        return x, y[:1]


class ThreeValues(Adding):
    def sample(self, key, batch):
        x, y = super().sample(key, batch)
        return x, y, y


class NoInputs(Adding):
    input_size = 0
"""


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "cells_adv.py").write_text(textwrap.dedent(CELLS))
    (folder / "tasks_adv.py").write_text(textwrap.dedent(TASKS))
    (folder / "syntax.py").write_text("def broken(:\n")
    (folder / "binary.py").write_bytes(b"\xff\xfe\x00garbage\x00")
    (folder / "folder.py").mkdir()
    return folder


@pytest.mark.parametrize(
    ("cell", "prefix", "words"),
    [
        ("HugeCell", "--hidden_size=4: parameters", "GiB"),  # refused by the memory check, never allocated
        ("RecursionCell", "--cell=", "deep"),
        ("MemoryCell", "--cell=", "MemoryError"),
        ("ThreeOutputs", "--cell=", "too many values"),
        ("NoneCarry", "--cell=", "carry None unlike its initial carry"),
        ("DictCarry", "--cell=", "unlike its initial carry"),
        ("BoolOutput", "--cell=", "its output is bool"),
        ("ComplexOutput", "--cell=", "its output is complex64; it must be real floating"),
        ("NeedsAnOption", "--cell_options", "missing option"),
        ("NOT_A_CLASS", "--cell", "is not a flax.linen cell"),
        ("function_cell", "--cell", "is not a flax.linen cell"),
    ],
)
def test_a_plug_in_cell_that_breaks_its_contract_is_one_line(plugins, cell, prefix, words, capsys):
    with pytest.raises(ConfigError) as e:
        validate(SMALL.replace(cell=f"{plugins / 'cells_adv.py'}:{cell}"))
    one_line(e, prefix)
    assert words in str(e.value)


@pytest.mark.parametrize("file", ["syntax.py", "binary.py", "folder.py"])
def test_a_plug_in_file_that_is_not_python_is_one_line(plugins, file):
    with pytest.raises(ConfigError) as e:
        validate(SMALL.replace(cell=f"{plugins / file}:Cell"))
    one_line(e, "--cell")


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ("IntInputs", "gives int32 inputs; they must be floating"),
        ("BatchOfOne", "gives inputs of shape (1, 4, 2); they must be (batch, length, input_size) = (2, 4, 2)"),
        ("ShortSequences", "gives inputs of shape (2, 3, 2)"),
        ("TargetsOfOne", "gives targets of shape (1,); they must be (batch, ...) = (2, ...)"),
        ("ThreeValues", "too many values to unpack"),
        ("NoInputs", "gives 2 input features, input_size says 0"),
    ],
)
def test_a_task_whose_sample_breaks_the_contract_is_refused_before_compiling(plugins, task, words):
    """Before the fix, the first three trained without a word (on int inputs, one sequence, T-1 steps) and the
    fourth failed after compiling with a traceback."""
    with pytest.raises(ConfigError) as e:
        validate(SMALL.replace(task=f"{plugins / 'tasks_adv.py'}:{task}"))
    one_line(e, f"--task={plugins / 'tasks_adv.py'}:{task}: ")
    assert words in str(e.value)


def test_a_cell_that_gives_nan_trains_to_a_recorded_divergence(plugins, tmp_path):
    results = train_and_evaluate(SMALL.replace(cell=f"{plugins / 'cells_adv.py'}:NaNCell", tensorboard=False), tmp_path)
    assert results["seeds"][0]["diverged_at_step"] == 0 and not results["seeds"][0]["solved"]


# ------------------------------------------------------------------ files someone else prepared


def _in_thread(fn, timeout=20):
    """fn() in a daemon thread: (finished, its value or exception); a reader that waits on a FIFO does not finish."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["value"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), out.get("value")


def test_reading_json_never_waits_on_a_fifo_nor_crashes_on_deep_nesting(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    finished, value = _in_thread(lambda: io.read_json(tmp_path / "fifo.json"))
    assert finished and isinstance(value, OSError)
    finished, value = _in_thread(lambda: io.read_jsonl(tmp_path / "fifo.json"))
    assert finished and isinstance(value, OSError)
    (tmp_path / "deep.json").write_text(DEEP)
    with pytest.raises(ValueError, match="nested too deeply"):
        io.read_json(tmp_path / "deep.json")
    (tmp_path / "deep.jsonl").write_text('{"step": 0}\n' + DEEP + "\n")
    assert io.read_jsonl(tmp_path / "deep.jsonl") == [{"step": 0}]


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_steps_done_of_a_hostile_results_json_is_0(tmp_path, kind):
    """`--plan` reads every point's steps this way: a FIFO made it wait forever, deep nesting crashed it."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "results.json")
    else:
        (tmp_path / "results.json").write_text(DEEP)
    assert _in_thread(lambda: steps_done(tmp_path)) == (True, 0)


def _session(**config):
    return {
        "config": {**Config().to_dict(), **config},
        "sessions": [{"steps": [0, 1000], "wall_time_s": 10.0, "backend": "cpu"}],
    }


@pytest.mark.parametrize(
    "results",
    [
        _session(seq_len=0),  # log(0) in the nearest-T search
        _session(seq_len=-5),
        _session(seq_len="100"),
        _session(hidden_size=0),
        _session(cell=["rnn"]),  # unhashable in the family lookup
        _session(learning_rate=[]),
        {"config": Config().to_dict(), "sessions": [{"steps": [0, "Infinity"], "wall_time_s": 10, "backend": "cpu"}]},
        {"config": "lstm", "sessions": []},
        {"config": Config().to_dict(), "sessions": ["x", 3, None, [0, 1000]]},
    ],
)
def test_plan_skips_records_a_run_never_writes(tmp_path, results):
    path = tmp_path / "p" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results).replace('"Infinity"', "Infinity"))
    records = plan.find_records([tmp_path])
    assert records == []
    assert plan.estimate(SMALL, 100, records, "cpu").seconds is None


def test_plan_reads_no_fifo_and_no_deep_json_and_keeps_good_records(tmp_path):
    (tmp_path / "a").mkdir()
    os.mkfifo(tmp_path / "a" / "results.json")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text(DEEP)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps(_session()))
    finished, records = _in_thread(lambda: plan.find_records([tmp_path]))
    assert finished and len(records) == 1 and records[0].seconds_per_step == 0.01


def test_a_checkpoint_whose_metadata_is_nested_too_deeply_is_not_a_crash(tmp_path):
    from experiments.checkpoint import Checkpoints
    from experiments.formats import checkpoint_predates_hyperparams

    folder = tmp_path / "checkpoints" / "5" / "default"
    folder.mkdir(parents=True)
    (folder / "_METADATA").write_text(DEEP)
    assert checkpoint_predates_hyperparams(tmp_path / "checkpoints" / "5") is False
    assert Checkpoints(tmp_path).params_mismatch(5, None) is None


@pytest.mark.parametrize(
    "config",
    [{"learning_rate": []}, {"seq_len": "4"}, {"cell": None}, {"tensorboard": "yes"}, {"steps": 1.5}],
)
def test_a_config_json_with_wrong_types_is_one_line(tmp_path, config):
    (tmp_path / "config.json").write_text(json.dumps({**SMALL.to_dict(), **config}))
    with pytest.raises(ConfigError) as e:
        check_resumable(SMALL, tmp_path)
    one_line(e, f"--workdir={tmp_path}")


# ------------------------------------------------------------------ records of a table: sweep.json, --reproduce


# benchmarks.tables' flags are defined once per process: these cases run together in one subprocess
RECORD_CASES = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    from absl import flags
    from benchmarks import reproduce, tables
    tables.define_flags()
    out = []
    for kind, folder, arg in json.loads(sys.argv[1]):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["tables"])
        try:
            if kind == "status":
                flags.FLAGS.results_dir, flags.FLAGS.status = folder, True
                tables.apply_record()
            else:
                reproduce.reproduce(folder, tables._values(), set(), tables._flag_value, [])
            out.append("accepted")
        except Exception as e:
            out.append(f"{type(e).__name__}: {e}")
    print(json.dumps(out))
    """)


def _records(cases: list[tuple[str, str, object]]) -> list[str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", RECORD_CASES, json.dumps(cases)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


SWEEP_JSON = [  # (flags recorded in sweep.json, why it is damaged)
    ({"steps": "abc"}, '"flags.steps" is not a value of --steps'),
    ({"seq_lens": 5}, '"flags.seq_lens" is not a value of --seq_lens'),
    ({"cells": ["rnn"]}, '"flags.cells" is not a value of --cells'),
    ({"table": 5}, '"flags.table" is not a value of --table'),
    (["steps"], '"flags" must be an object, not list'),
    ("steps", '"flags" must be an object, not str'),
]
COMMANDS = [  # (recorded command, what the one line says of it)
    ('python -m benchmarks.tables --table=adding "unbalanced', "does not parse (No closing quotation)"),
    ("python -m benchmarks.tables --table=adding --steps=abc", "has --steps=abc: "),
    ("python -m benchmarks.tables --table=adding --seq_lens=6 --num_seeds=x", "has --num_seeds=x"),
]


def test_hand_edited_table_records_are_one_line_naming_them(tmp_path):
    """A sweep.json whose flags are not the flags' values (before the fix each crashed --status and --render_only
    with a traceback: the raw value was used as the flag's), and a recorded command --reproduce cannot parse
    (a traceback too); a --reproduce folder that is blank, a file, missing, or holds no readable record."""
    cases, expected = [], []
    for i, (recorded, why) in enumerate(SWEEP_JSON):
        folder = tmp_path / f"s{i}" / "adding"
        folder.mkdir(parents=True)
        (folder / "sweep.json").write_text(json.dumps({"command": "x", "flags": recorded}))
        cases.append(("status", str(folder), None))
        expected.append(f"DamagedError: --results_dir={folder}: {folder / 'sweep.json'} is damaged ({why}")
    for i, (command, why) in enumerate(COMMANDS):
        folder = tmp_path / f"r{i}" / "adding"
        folder.mkdir(parents=True)
        (folder / "sweep.json").write_text(json.dumps({"command": command, "flags": {}}))
        cases.append(("reproduce", str(folder), None))
        expected.append(f"ConfigError: --reproduce={folder}: its recorded command {why}")
    (tmp_path / "file").write_text("")
    (tmp_path / "deep" / "adding").mkdir(parents=True)
    (tmp_path / "deep" / "adding" / "sweep.json").write_text(DEEP)  # damaged: read as no record
    deep = tmp_path / "deep" / "adding"
    blank = [
        (" ", "--reproduce=' ': must name"),
        (str(tmp_path / "file"), "--reproduce="),
        (str(tmp_path / "missing"), "--reproduce="),
        (str(deep), f"--reproduce={deep}: no sweep.json"),
    ]
    for folder, why in blank:
        cases.append(("reproduce", folder, None))
        expected.append(f"ConfigError: {why}")
    got = _records(cases)
    wrong = [(c, g) for c, g, e in zip(cases, got, expected, strict=True) if not g.startswith(e) or "\n" in g]
    assert not wrong, wrong


def test_jsonl_of_one_float_type_keeps_its_values():
    assert io.loads("NaN") != io.loads("NaN") and io.loads("1e400") == float("inf") and jnp.isinf(io.loads("-1e400"))

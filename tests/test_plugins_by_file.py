"""Plug-ins from a file, with no PYTHONPATH: a cell and a task by path, short row names, and the task
conformance suite (a user's task checked as a user's cell is)."""

import dataclasses
import math
import shutil
from typing import ClassVar

import jax
import jax.numpy as jnp
import pytest

from benchmarks.table_sweep import cells_flag
from cells import make_cell
from experiments.config import ConfigError
from experiments.grid import Sweep
from experiments.task_checks import check_task
from plugins import file_module_name, load_object
from tasks import Adding, make_task
from tests.helpers import ROOT, tensorboard_scalars

UGRNN = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class UGRNN(nn.RNNCellBase):
    """Update-gate RNN (Collins et al. 2017): g = sigmoid(W_g [x, h]), c = tanh(W_c [x, h]), h' = g h + (1 - g) c."""

    hidden_size: int

    @nn.compact
    def __call__(self, carry, x):
        g, c = jnp.split(nn.Dense(2 * self.hidden_size)(jnp.concatenate([x, carry], -1)), 2, axis=-1)
        g = jax.nn.sigmoid(g)
        h = g * carry + (1 - g) * jnp.tanh(c)
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape[:-1] + (self.hidden_size,))

    @property
    def num_feature_axes(self) -> int:
        return 1
'''


@pytest.fixture
def plugin_files(tmp_path, monkeypatch):
    """ugrnn.py and a task file in a folder that is not on sys.path; the test runs from its parent."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ugrnn.py").write_text(UGRNN)
    shutil.copy(ROOT / "examples" / "my_tasks.py", folder / "latch.py")
    monkeypatch.chdir(tmp_path)
    return folder


def test_a_cell_and_a_task_load_from_files_without_pythonpath(plugin_files):
    cell = make_cell("mine/ugrnn.py:UGRNN", 4)
    assert type(cell).__name__ == "UGRNN" and cell.hidden_size == 4
    task = make_task("mine/latch.py:FirstSymbol", 6, "num_symbols=3")
    assert task.baseline == pytest.approx(math.log(3))
    # one module per file, however it is named: the same class every time (jit caches, isinstance)
    assert load_object(f"{plugin_files}/ugrnn.py:UGRNN") is type(cell)
    assert type(cell).__module__ == file_module_name(plugin_files / "ugrnn.py") != file_module_name("mine/latch.py")
    with pytest.raises(ValueError, match=r"^no file 'mine/nope.py'"):
        make_cell("mine/nope.py:UGRNN", 4)
    with pytest.raises(ValueError, match=r"has no attribute 'GRU'"):
        make_cell("mine/ugrnn.py:GRU", 4)


def test_short_row_names_for_cells_by_path():
    cells = cells_flag("lstm,ugrnn=mine/ugrnn.py:UGRNN,pkg.mod:Cell")
    assert cells == {"lstm": "lstm", "mine/ugrnn.py:UGRNN": "ugrnn", "pkg.mod:Cell": "pkg.mod:Cell"}
    names = {spec: name for spec, name in cells.items() if spec != name}
    sweep = Sweep(settings={"steps": 5}, grid={"cell": tuple(cells), "seq_len": (10,)}, names=names)
    assert [label for label, _ in sweep.rows()] == ["lstm", "ugrnn", "pkg.mod:Cell"]
    assert [key.dirname for key in sweep.points()] == ["lstm_T10", "ugrnn_T10", "pkg_mod_Cell_T10"]
    assert sweep.points()[next(k for k in sweep.points() if k.row == "ugrnn")].cell == "mine/ugrnn.py:UGRNN"
    for bad, message in (
        ("a=lstm,a=gru", "share the row name a"),
        ("=lstm", "is not cell or name=cell"),
        ("x=lstm,lstm", "lstm given more than once"),
    ):
        with pytest.raises(ConfigError, match=rf"^--cells='{bad}': .*{message}"):
            cells_flag(bad)


def test_the_task_conformance_suite_passes_good_tasks_and_names_what_a_bad_one_breaks(plugin_files):
    results = check_task("mine/latch.py:FirstSymbol", seq_len=6, options="num_symbols=3")
    assert all(r.passed for r in results) and len(results) == 8, [str(r) for r in results]
    assert all(r.passed for r in check_task("adding", seq_len=6))

    @dataclasses.dataclass(frozen=True)
    class Broken(Adding):
        """Four faults: inputs wider than declared, a batch that ignores the key, no baseline, a table metric
        that metrics() does not give."""

        input_size: ClassVar[int] = 3
        table_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)

        @property
        def baseline(self) -> float:
            return float("nan")

        def sample(self, key, batch_size):
            inputs, targets = super().sample(jax.random.PRNGKey(0), batch_size)
            return inputs, targets

    failed = {r.name: r.message for r in check_task(Broken(seq_len=6)) if not r.passed}
    assert set(failed) == {"sample", "determinism", "held_out", "baseline", "metrics"}, failed
    assert failed["sample"] == "inputs have shape (4, 6, 2); expected (4, 6, 3) (B, length, input_size)"
    assert failed["determinism"] == "a different key gave an identical batch"
    assert failed["held_out"] == "the test and validation splits are equal"
    assert failed["baseline"].startswith("baseline is nan")
    assert failed["metrics"].startswith("table_metrics[0] is 'accuracy', but metrics() gives loss, ratio")
    assert [str(r) for r in check_task("mine/latch.py:Nope")] == [
        "FAIL construct: ValueError: module 'mine/latch.py' has no attribute 'Nope' (from 'mine/latch.py:Nope')"
    ]


def test_tensorboard_tags_are_grouped(tmp_path):
    from experiments.tensorboard import TensorBoardLog, tag

    record = {
        "step": 10,
        "seed": 0,
        "learning_rate": 1e-3,
        "train_loss": 0.5,
        "grad_norm": 1.0,
        "grad_norm_max": 2.0,
        "clipped_fraction": 0.0,
        "diverged": False,
        "steps_per_s": 50.0,
        "eval_loss": 0.4,
        "eval_ratio": 2.4,
        "eval_accuracy": 0.5,
        "valid_loss": 0.41,
        "custom": 1.0,
    }
    log = TensorBoardLog(tmp_path)
    log.write([record])
    log.close()
    assert set(tensorboard_scalars(tmp_path / "tb" / "seed_0")) == {
        "train/loss",
        "grad/norm",
        "grad/norm_max",
        "grad/clipped_fraction",
        "train/diverged",
        "train/steps_per_s",
        "eval/loss",
        "eval/ratio",
        "eval/accuracy",
        "valid/loss",
        "custom",
    }
    assert tag("eval_recall_accuracy") == "eval/recall_accuracy"
    assert jnp.isfinite(tensorboard_scalars(tmp_path / "tb" / "seed_0")["eval/loss"][0][1])

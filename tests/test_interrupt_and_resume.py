"""Interruption and resume, kill -9, and property-based checks that bad input fails cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cells import CELLS
from experiments import io, trainer
from experiments.config import OPTIMIZERS, Config, ConfigError
from experiments.experiment import Experiment
from experiments.trainer import train_and_evaluate
from experiments.validation import validate
from tasks import TASKS
from tests.helpers import ROOT
from tests.helpers import metrics_without_timing as evals

RUN = Config(
    cell="gru",
    task="adding",
    seq_len=8,
    hidden_size=8,
    batch_size=8,
    steps=600,
    eval_every=50,
    eval_size=16,
    checkpoint_every=100,
)
RUN_FLAGS = [f"--{k}={v}" for k, v in RUN.to_dict().items() if k != "cell_options"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, train_and_evaluate(RUN, workdir)


def test_signal_in_process_saves_and_resume_is_bit_identical(uninterrupted, tmp_path, monkeypatch):
    workdir, expected = uninterrupted
    log = trainer._log

    def log_then_signal(exp, wd, step, *args, **kwargs):
        if step == 250:  # a logging step that is not a checkpoint step
            os.kill(os.getpid(), signal.SIGTERM)
        return log(exp, wd, step, *args, **kwargs)

    monkeypatch.setattr(trainer, "_log", log_then_signal)
    stopped = train_and_evaluate(RUN, tmp_path)
    assert stopped["stopped_by"] == "SIGTERM" and stopped["steps_done"] == 250
    monkeypatch.setattr(trainer, "_log", log)
    resumed = train_and_evaluate(RUN, tmp_path)
    assert resumed["seeds"] == expected["seeds"]
    assert evals(tmp_path) == evals(workdir)


def _start(workdir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "experiments.train", *RUN_FLAGS, f"--workdir={workdir}"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(workdir: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.time() + 120
    while len(io.read_jsonl(workdir / "metrics.jsonl")) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_real_signal_to_a_subprocess_then_resume(uninterrupted, tmp_path, sig):
    workdir, expected = uninterrupted
    proc = _start(tmp_path)
    _wait_for_records(tmp_path, proc, 3)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:  # no chance to save: metrics.jsonl must still parse
        assert proc.returncode == -signal.SIGKILL
        records = io.read_jsonl(tmp_path / "metrics.jsonl")
        assert records and all("eval_loss" in r for r in records)
    else:
        assert proc.returncode == 128 + sig, stderr
        assert "Traceback" not in stderr
        assert io.read_json(tmp_path / "results.json")["stopped_by"] == sig.name
    resumed = _start(tmp_path)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert io.read_json(tmp_path / "results.json")["seeds"] == expected["seeds"]
    assert evals(tmp_path) == evals(workdir)


def test_a_torn_last_line_is_skipped_and_dropped_on_resume(uninterrupted, tmp_path):
    workdir, expected = uninterrupted
    train_and_evaluate(RUN.replace(steps=300), tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 350, "eval_lo')  # what kill -9 mid-write leaves
    assert [r["step"] for r in io.read_jsonl(tmp_path / "metrics.jsonl")][-1] == 300
    train_and_evaluate(RUN, tmp_path)
    assert evals(tmp_path) == evals(workdir)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "results.json"
    io.write_json(path, {"ok": 1})

    def explode(f):
        f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, explode)
    assert io.read_json(path) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


# Property-based: every field rejects bad values with a one-line message naming its flag.
INT_FIELDS = ["seq_len", "hidden_size", "batch_size", "steps", "eval_every", "eval_size", "num_seeds"]
bad_ints = st.one_of(st.integers(max_value=0), st.integers(min_value=10**12), st.booleans())
bad_floats = st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))
names = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=20)
SMALL = Config(cell="rnn", seq_len=4, hidden_size=4, batch_size=2, steps=2, eval_size=2)


def assert_rejected(config: Config, flag: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(config)
    assert f"--{flag}" in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(INT_FIELDS), value=bad_ints)
def test_bad_sizes_and_lengths(field, value):
    assert_rejected(SMALL.replace(**{field: value}), field)


@settings(max_examples=40, deadline=None)
@given(value=bad_floats)
def test_bad_learning_rates(value):
    assert_rejected(SMALL.replace(learning_rate=value), "learning_rate")


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["cell", "task", "optimizer"]), value=names)
def test_unknown_names(field, value):
    if value in {"cell": CELLS.names(), "task": TASKS.names(), "optimizer": OPTIMIZERS}[field]:
        return
    assert_rejected(SMALL.replace(**{field: value}), field)


@settings(max_examples=40, deadline=None)
@given(module=st.sampled_from(["", "cells", "no_such_pkg.mod", "cells.rnn", "1bad", "a..b"]), attr=names)
def test_malformed_or_missing_cell_import_paths(module, attr):
    assert_rejected(SMALL.replace(cell=f"{module}:{attr}"), "cell")


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="--workdir=.*not writable"):
        train_and_evaluate(SMALL, blocker / "sub")


def test_a_diverged_seed_is_frozen_while_the_others_train():
    exp = Experiment(SMALL.replace(num_seeds=2))
    state = exp.compiled_init()(jnp.arange(2))
    poisoned = jax.tree.map(lambda p: p.at[1].set(jnp.nan), state.params)  # seed 1 produces NaN
    state = state._replace(params=poisoned)
    step = jax.jit(jax.vmap(exp.train_step))
    new = step(step(state))
    assert np.asarray(new.diverged_at).tolist() == [-1, 0]
    for before, after in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True):
        assert not np.array_equal(before[0], after[0])  # seed 0 trained
        assert np.isnan(after[1]).all()  # seed 1 frozen where it was
    assert float(new.count[0]) == 2 and float(new.count[1]) == 0


def test_a_run_that_cannot_fit_in_memory_is_refused_with_a_remat_suggestion():
    huge = Config(cell="lstm", task="adding", seq_len=200_000, hidden_size=2048, batch_size=512)
    with pytest.raises(ConfigError, match=r"GiB of activations.*add --remat=447"):
        validate(huge)
    validate(huge.replace(batch_size=1, hidden_size=64, remat=447))  # fits once rematerialised


@pytest.mark.slow
def test_compare_and_gradients_reject_bad_flags_in_one_line(tmp_path):
    cases = [
        ("experiments.compare", ["--cells=rnn,,gru"], "--cells"),
        ("experiments.compare", ["--cells=lstm,nope"], "--cell"),
        ("experiments.gradients", ["--batch=0"], "--batch"),
        ("experiments.gradients", ["--seq_len=-5"], "--seq_len"),
    ]
    for module, args, flag in cases:
        cmd = [sys.executable, "-m", module, *args, f"--workdir={tmp_path}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and flag in proc.stderr and "Traceback" not in proc.stderr, (module, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1

"""JAX's persistent compilation cache (experiments.compile_cache): on by default in the user's cache folder,
a second run reads every program back, a flag moves or disables it, and training says what it compiled."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import compile_cache
from tests.helpers import ROOT

TINY = [
    "--cell=rnn",
    "--seq_len=6",
    "--hidden_size=8",
    "--batch_size=8",
    "--steps=20",
    "--eval_every=10",
    "--eval_size=32",
    "--tensorboard=false",
]


def train(workdir: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.train", *TINY, f"--workdir={workdir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_the_folder_follows_the_flag_then_the_variable_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve() == tmp_path / "xdg" / "rnnlab" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.resolve() == Path.home() / ".cache" / "rnnlab" / "jax"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve() == tmp_path / "env" and compile_cache.resolve("off") is None
    assert compile_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.resolve() is None


@pytest.mark.slow
def test_a_second_run_reads_every_program_from_the_default_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != compile_cache.ENV}  # the default, as a user gets it
    env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    first = train(tmp_path / "a", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = tmp_path / "xdg" / "rnnlab" / "jax"
    assert len(list(folder.iterdir())) >= 3  # init, training step, evaluation at least
    log = first.stderr
    assert (
        f"rnn/adding T=6: compiling the initialisation, training step and evaluation (programs compiled by an "
        f"earlier run are read from {folder})" in log
    )
    step0 = next(line for line in log.splitlines() if "step 0/20" in line)
    assert "nan" not in step0 and "(before training) | eval MSE" in step0
    summary = log.strip().splitlines()[-1]
    assert "done: rnn/adding T=6: test MSE " in summary and "x baseline 0.1667), solved 0/1; 20 steps in " in summary
    assert summary.endswith(f"results: {tmp_path / 'a' / 'results.json'}")

    second = train(tmp_path / "b", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    compiled = next(line for line in second.stderr.splitlines() if "compiled in" in line)
    n = compiled.rpartition("(")[2].split()[0]
    assert f"({n} of {n} programs read from the compilation cache)" in compiled, compiled

    off = train(tmp_path / "c", "--compilation_cache=off", env={**env, "XDG_CACHE_HOME": str(tmp_path / "none")})
    assert off.returncode == 0 and "no persistent compilation cache" in off.stderr
    assert not (tmp_path / "none").exists()

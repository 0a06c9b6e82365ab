"""Per-backend policies, seeds sharded over devices, and the matmul precision flag.

Multi-device runs use `XLA_FLAGS=--xla_force_host_platform_device_count=4` in a subprocess
(the flag must be set before JAX starts).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from experiments import policy
from experiments.config import Config, ConfigError, num_devices
from experiments.validation import validate
from tests.helpers import ROOT

MB = 2**20


@pytest.mark.parametrize("backend", ["cpu", "gpu", "cuda", "rocm", "tpu"])
def test_policies_per_backend(backend):
    accelerator = backend != "cpu"
    assert policy.sequence_path(backend) == ("sequence" if accelerator else "step")
    assert policy.sequence_path(backend, "step") == "step"
    assert policy.scan_unroll(backend) == (policy.GPU_UNROLL if accelerator else 1)
    assert policy.scan_unroll(backend, 3) == 3
    # 32 seeds of 15 MB of residuals each: a CPU keeps chunks under 30 MiB, a GPU takes them all at once
    chunk = policy.seed_chunk(backend, 15 * MB, 32, device_memory=80 * 2**30 if accelerator else None)
    assert chunk == (32 if accelerator else 2)
    assert policy.seed_chunk(backend, 15 * MB, 32, requested=5) == 5
    assert policy.seed_chunk(backend, 15 * MB, 3, requested=5) == 3
    if accelerator:  # chunked only when the seeds' residuals would not fit in the device's memory
        assert policy.seed_chunk(backend, 2**30, 256, device_memory=80 * 2**30) == 40
        assert policy.seed_chunk(backend, 2**40, 4, device_memory=80 * 2**30) == 1
        assert policy.seed_chunk(backend, 2**30, 256, device_memory=None) == 256
    # an evaluation chunk: 250 held-out sequences, fewer where the device's members would not fit
    assert policy.eval_rows(backend, 31 * MB, 3, device_memory=80 * 2**30 if accelerator else None) == 250
    big = policy.eval_rows(backend, 31 * MB, 32, device_memory=24 * 2**30)  # 32 LSTM seeds at T=5000 in 24 GiB
    assert big == (12 if accelerator else 250)  # 12 GiB / (32 x 31 MiB) = 12.4
    assert policy.eval_rows(backend, 2**40, 1, device_memory=80 * 2**30) == (1 if accelerator else 250)


def test_a_smaller_evaluation_chunk_gives_the_same_metrics(monkeypatch):
    """`eval_set` cuts the held-out set into equal chunks of the largest divisor up to `eval_rows`."""
    import jax.numpy as jnp

    from experiments.experiment import Experiment

    exp = Experiment(Config(cell="gru", task="adding", seq_len=20, hidden_size=8, eval_size=500, num_seeds=2))
    params = exp.compiled_init()(*exp.member_inputs()).params
    evaluate = exp.compiled_eval()
    whole = exp.eval_set()
    monkeypatch.setattr(policy, "eval_rows", lambda backend, per_row, members, memory: 7)
    small = exp.eval_set()
    assert whole[0].shape[:2] == (2, 250) and small[0].shape[:2] == (100, 5)
    assert jnp.array_equal(whole[0].reshape(small[0].shape), small[0])
    a, b = evaluate(params, whole), evaluate(params, small)
    for k in a:
        assert jnp.allclose(a[k], b[k], rtol=1e-5), k


def test_cells_declare_where_their_whole_sequence_method_wins():
    """exprnn's sequence method computes exp(A) once, lru's in chunks of time beat its step on a CPU: the default
    path on every backend, in a stack too; mingru keeps the step scan on a CPU. Only the linear cells run in
    time chunks, on a CPU."""
    from cells import make_cell
    from experiments.build import make_model
    from tasks import make_task

    task = make_task("adding", 10)
    assert policy.sequence_path("cpu", "auto", ("cpu", "gpu")) == "sequence"
    assert policy.sequence_path("gpu", "auto", ("cpu",)) == "step"
    for cell, cpu_path in [("exprnn", "sequence"), ("lstm", "step"), ("lru", "sequence"), ("mingru", "step")]:
        for layers in (1, 2):
            model = make_model(Config(cell=cell, num_layers=layers), make_cell(cell, 8, num_layers=layers), task, "cpu")
            assert model.path == cpu_path, (cell, layers)
            assert model.time_chunk == (policy.CPU_TIME_CHUNK if cell in ("lru", "mingru") else 0), (cell, layers)
            gpu = make_model(Config(cell=cell, num_layers=layers), make_cell(cell, 8, num_layers=layers), task, "gpu")
            assert gpu.path == "sequence" and gpu.time_chunk == 0


def test_num_devices_auto_and_explicit():
    assert num_devices(Config(num_seeds=8), 4) == 4
    assert num_devices(Config(num_seeds=6), 4) == 3
    assert num_devices(Config(num_seeds=1), 4) == 1
    assert num_devices(Config(num_seeds=8, num_devices=2), 4) == 2


@pytest.mark.parametrize(
    "changes,flag",
    [
        ({"num_devices": 2}, "--num_devices=2: only"),  # this process sees one CPU device
        ({"sequence_path": "fused"}, "--sequence_path='fused': must be one of auto, sequence, step"),
        ({"matmul_precision": "tf32"}, "--matmul_precision='tf32': must be one of highest, default, tf32x3"),
        ({"unroll": -1}, "--unroll=-1"),
        ({"seed_chunk": -2}, "--seed_chunk=-2"),
    ],
)
def test_execution_flags_are_validated(changes, flag):
    assert jax.local_device_count() == 1
    with pytest.raises(ConfigError, match="^" + flag.replace("(", r"\(").replace("[", r"\[")):
        validate(Config(**changes))


SHARDED = """
import json, sys
from experiments.config import Config
from experiments.trainer import train_and_evaluate
import jax
base = dict(cell="gru", task="adding", seq_len=12, hidden_size=8, batch_size=8, steps=20, eval_every=10,
            eval_size=16, num_seeds=4, checkpoint_every=10)
config = Config(**{**base, **json.loads(sys.argv[2])})
results = train_and_evaluate(config, sys.argv[1])
print(json.dumps({"devices": jax.local_device_count(), **results["execution"]}))
"""


def _run(workdir: Path, devices: int, **changes) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-c", SHARDED, str(workdir), json.dumps(changes)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _finals(workdir: Path) -> list[float]:
    results = json.loads((workdir / "results.json").read_text())
    return [s["final"]["loss"] for s in results["seeds"]]


@pytest.mark.slow
def test_seeds_sharded_over_four_devices_equal_one_device_and_resume_across_device_counts(tmp_path):
    four = _run(tmp_path / "four", 4)
    assert four["devices"] == 4 and four["num_devices"] == 4 and four["seeds_per_device"] == 1
    one = _run(tmp_path / "one", 4, num_devices=1)
    assert one["num_devices"] == 1 and one["seeds_per_device"] == 4
    assert _finals(tmp_path / "four") == pytest.approx(_finals(tmp_path / "one"), rel=1e-5)
    # half the steps on 4 devices, the rest resumed on 2 devices (same files, other mesh)
    _run(tmp_path / "resumed", 4, steps=10)
    two = _run(tmp_path / "resumed", 4, num_devices=2)
    assert two["num_devices"] == 2 and two["seeds_per_device"] == 2
    assert _finals(tmp_path / "resumed") == pytest.approx(_finals(tmp_path / "four"), rel=1e-5)
    results = json.loads((tmp_path / "four" / "results.json").read_text())
    assert results["execution"]["backend"] == "cpu" and results["execution"]["device_kind"] == "cpu"


def test_matmul_precision_is_recorded(tmp_path):
    from experiments.trainer import train_and_evaluate

    config = Config(cell="rnn", seq_len=6, hidden_size=4, batch_size=4, steps=2, eval_every=2, eval_size=4)
    results = train_and_evaluate(config.replace(matmul_precision="default"), tmp_path)
    assert results["execution"]["matmul_precision"] == "default"
    assert results["execution"]["cpu_count"] == os.cpu_count() and results["execution"]["eval_chunk"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["matmul_precision"] == "default"


def test_the_evaluation_chunk_counts_every_member_on_the_device(tmp_path, monkeypatch):
    """Seeds x learning rates are evaluated together: the chunk policy is asked for all of them."""
    from experiments.trainer import train_and_evaluate

    asked = []
    monkeypatch.setattr(policy, "eval_rows", lambda backend, per_row, members, memory: asked.append(members) or 3)
    config = Config(cell="rnn", seq_len=6, hidden_size=4, batch_size=4, steps=2, eval_every=2, eval_size=12)
    results = train_and_evaluate(config.replace(num_seeds=2, learning_rate=(1e-3, 1e-2)), tmp_path)
    assert asked and set(asked) == {4} and results["execution"]["eval_chunk"] == 3

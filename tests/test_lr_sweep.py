"""Learning-rate sweeps in one program (`--learning_rate=a,b,...`): every rate x seed is a member of the
state's leading axis; results pick the best rate on the validation split, never the test split."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import io
from experiments import memory_estimate as memory_module
from experiments.config import Config, ConfigError, learning_rates, members, num_devices, parse_learning_rates
from experiments.experiment import Experiment
from experiments.results import best_learning_rate, run_results
from experiments.resume import check_resumable
from experiments.trainer import train_and_evaluate
from experiments.validation import validate
from tests.helpers import ROOT, final_params

RATES = (1e-3, 1e-2)
SWEEP = Config(
    cell="gru",
    task="adding",
    seq_len=8,
    hidden_size=8,
    batch_size=8,
    steps=20,
    eval_every=10,
    eval_size=16,
    checkpoint_every=0,
    num_seeds=2,
    learning_rate=RATES,
)
# float32 rounding of a member computed among 4 members or among 2: measured bit-identical on CPU (tolerances 0
# pass, jax 0.10.2); the margin is for backends whose kernels depend on the batch size
RTOL, ATOL = 1e-6, 1e-7
PARAMS_RTOL, PARAMS_ATOL = 1e-5, 1e-6


def member_records(workdir: Path) -> list[dict]:
    keep = ("step", "seed", "learning_rate", "train_loss", "grad_norm")
    return [
        {k: v for k, v in r.items() if k in keep or k.startswith("eval_")}
        for r in io.read_jsonl(workdir / "metrics.jsonl")
    ]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    return workdir, train_and_evaluate(SWEEP, workdir)


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """The same seeds trained at each rate alone."""
    out = {}
    for rate in RATES:
        workdir = tmp_path_factory.mktemp(f"lr{rate}")
        out[rate] = workdir, train_and_evaluate(SWEEP.replace(learning_rate=rate, tensorboard=False), workdir)
    return out


# ------------------------------------------------------------------ flags and config


@pytest.mark.parametrize("text", ["1e-3,x", "0", "nan", "inf", "-1e-3", "1e-3,1e-3", "1e-2,1e-3", "", "1e-3,,1e-2"])
def test_bad_learning_rate_lists_are_one_line_errors(text):
    with pytest.raises(ConfigError) as e:
        parse_learning_rates(text)
    message = str(e.value)
    assert message.startswith(f"--learning_rate={text!r}: must be a finite number > 0, or a comma-separated list")
    assert "increasing" in message and "\n" not in message


@pytest.mark.parametrize(
    "value", [(1e-3, 1e-3), (1e-2, 1e-3), (1e-3, float("nan")), (0.0, 1e-3), (1e-3, True), ("1e-3", 1e-2), ()]
)
def test_bad_learning_rates_are_refused_before_compiling(value):
    with pytest.raises(ConfigError, match=r"^--learning_rate=.*: must be a finite number > 0, or a comma-separated"):
        validate(SWEEP.replace(learning_rate=value))


def test_learning_rates_parse_and_round_trip():
    assert parse_learning_rates("3e-4") == 3e-4 and isinstance(parse_learning_rates("3e-4"), float)
    assert parse_learning_rates(" 1e-4, 3e-4,1e-3") == (1e-4, 3e-4, 1e-3)
    assert Config(learning_rate=[1e-4, 1e-3]).learning_rate == (1e-4, 1e-3)
    assert Config(learning_rate=(1e-3,)).learning_rate == 1e-3  # one rate is a plain number everywhere
    assert learning_rates(Config()) == (1e-3,) and learning_rates(SWEEP) == RATES
    assert members(SWEEP) == [(0, 1e-3), (1, 1e-3), (0, 1e-2), (1, 1e-2)]  # member m = r * S + s
    for config in (SWEEP, SWEEP.replace(learning_rate=1e-3)):
        saved = json.loads(json.dumps(config.to_dict()))
        assert Config.from_dict(saved) == config and Config.from_dict(saved).to_dict() == config.to_dict()
    assert json.loads(json.dumps(SWEEP.to_dict()))["learning_rate"] == [1e-3, 1e-2]  # config.json: a list
    for old in sorted((ROOT / "results" / "quick").rglob("config.json"))[:3]:  # committed runs from before sweeps
        saved = io.read_json(old)
        assert (
            isinstance(saved["learning_rate"], float)
            and Config.from_dict(saved).learning_rate == saved["learning_rate"]
        )
        check_resumable(Config.from_dict(saved), old.parent)  # the same settings: resumable (reads, writes nothing)


def test_members_bound_devices_and_memory(monkeypatch):
    with pytest.raises(ConfigError, match=r"^--num_seeds=600 x 2 learning rates = 1200 runs in one program: must be"):
        validate(SWEEP.replace(num_seeds=600))
    assert num_devices(SWEEP, 8) == 4 and num_devices(SWEEP.replace(num_seeds=3), 4) == 3  # 6 members
    assert num_devices(SWEEP.replace(num_seeds=1), 4) == 2
    monkeypatch.setattr(jax, "local_device_count", lambda: 4)
    with pytest.raises(ConfigError, match=r"^--num_seeds=2 x 2 learning rates = 4 runs is not a multiple of "):
        validate(SWEEP.replace(num_devices=3))
    with pytest.raises(ConfigError, match=r"^--num_seeds=2 is not a multiple of --num_devices=3: each device trains"):
        validate(SWEEP.replace(learning_rate=1e-3, num_devices=3))  # the wording without a sweep is unchanged
    exp = Experiment(SWEEP)

    def estimate(c):
        return memory_module.memory_estimate(c, exp.model, exp.task, 32)

    single, sweep = estimate(SWEEP.replace(learning_rate=1e-3)), estimate(SWEEP)
    for part in ("activations", "batch", "parameters", "diagnostics"):
        assert sweep[part] == 2 * single[part]


def test_the_flag_on_the_command_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "experiments.train", "--learning_rate=1e-3,x", f"--workdir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --learning_rate=1e-3,x: must be a finite number > 0, or a comma-separated list of them in "
        "increasing order (a sweep)"
    ]
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ choosing the rate


def test_best_rate_is_the_lowest_mean_on_valid_ties_small_and_never_an_all_diverged_one():
    rates = (1e-4, 1e-3, 1e-2)
    no = np.zeros((3, 2), bool)
    assert best_learning_rate(rates, [[0.5, 0.5], [0.2, 0.4], [0.1, 0.9]], no) == 1e-3  # means .5, .3, .5
    assert best_learning_rate(rates, [[0.3, 0.3], [0.2, 0.4], [0.9, 0.9]], no) == 1e-4  # a tie: the smaller
    assert best_learning_rate(rates, [[0.5, 0.5], [0.2, np.nan], [0.9, 0.9]], no) == 1e-4  # NaN: the worst
    dead = np.array([[False, False], [False, False], [True, True]])
    assert best_learning_rate(rates, [[0.5, 0.5], [0.4, 0.4], [0.1, 0.1]], dead) == 1e-3
    assert best_learning_rate(rates, [[0.5, 0.5], [0.4, 0.4], [0.1, 0.1]], np.ones((3, 2), bool)) == 1e-2


def test_results_choose_on_the_validation_split_not_the_test_split():
    """Test metrics favour the large rate, validation metrics the small one: the small one is chosen."""
    exp = Experiment(SWEEP)
    key = exp.task.headline
    test, valid = {1e-3: 0.9, 1e-2: 0.1}, {1e-3: 0.2, 1e-2: 0.8}
    history = [
        {
            "step": 20,
            "seed": seed,
            "learning_rate": rate,
            "eval_loss": test[rate],
            "eval_ratio": test[rate],
            "valid_loss": valid[rate],
            "valid_ratio": valid[rate],
        }
        for seed, rate in exp.members
    ]
    state = types.SimpleNamespace(diverged_at=np.full(4, -1))
    results = run_results(exp, state, history, 20, {}, None)
    assert results["best_learning_rate"] == 1e-3 and results["learning_rates"] == [1e-3, 1e-2]
    assert results["mean"][key] == pytest.approx(0.9) and results["std"][key] == 0.0  # the best rate's test numbers
    by_rate = results["by_learning_rate"]
    assert [b["learning_rate"] for b in by_rate] == [1e-3, 1e-2]
    assert by_rate[1]["mean"][key] == pytest.approx(0.1) and by_rate[0]["mean_valid"][key] == pytest.approx(0.2)


# ------------------------------------------------------------------ training a sweep


def test_a_sweep_equals_the_runs_of_each_rate_alone(sweep, singles):
    workdir, results = sweep
    records = member_records(workdir)
    assert [(r["step"], r["seed"], r["learning_rate"]) for r in records[:4]] == [(0, s, lr) for s, lr in members(SWEEP)]
    for rate, (single_dir, single) in singles.items():
        alone = member_records(single_dir)
        mine = [r for r in records if r["learning_rate"] == rate]
        assert len(mine) == len(alone) == 6 and all(r["learning_rate"] == rate for r in alone)
        for a, b in zip(mine, alone, strict=True):
            assert a.keys() == b.keys() and a["step"] == b["step"] and a["seed"] == b["seed"]
            for k, v in a.items():  # train_loss and grad_norm are None at step 0
                assert v == (pytest.approx(b[k], rel=RTOL, abs=ATOL) if isinstance(v, float) else b[k]), (rate, k)
        r = RATES.index(rate)
        sweep_leaves = jax.tree.leaves(final_params(workdir, SWEEP))
        single_leaves = jax.tree.leaves(final_params(single_dir, SWEEP.replace(learning_rate=rate)))
        for a, b in zip(sweep_leaves, single_leaves, strict=True):
            np.testing.assert_allclose(a[2 * r : 2 * r + 2], b, rtol=PARAMS_RTOL, atol=PARAMS_ATOL)
        assert single["learning_rates"] == [rate] and single["best_learning_rate"] == rate
        assert (
            "final_valid" not in single["seeds"][0]
            and "valid_loss" not in io.read_jsonl(single_dir / "metrics.jsonl")[0]
        )
        assert single["mean"] == single["by_learning_rate"][0]["mean"]


def test_sweep_results_and_files(sweep):
    workdir, results = sweep
    assert io.read_json(workdir / "results.json") == results  # what it returns is what it writes
    assert results["config"]["learning_rate"] == io.read_json(workdir / "config.json")["learning_rate"] == [1e-3, 1e-2]
    assert [(s["seed"], s["learning_rate"]) for s in results["seeds"]] == members(SWEEP)
    headline = Experiment(SWEEP).task.headline
    valid_means = [
        np.mean([s["final_valid"][headline] for s in results["seeds"] if s["learning_rate"] == r]) for r in RATES
    ]
    best = RATES[int(np.argmin(valid_means))]
    assert results["best_learning_rate"] == best
    chosen = results["by_learning_rate"][RATES.index(best)]
    assert results["mean"] == chosen["mean"] and results["solved_fraction"] == chosen["solved_fraction"]
    assert chosen["mean_valid"][headline] == pytest.approx(min(valid_means))
    last = [r for r in io.read_jsonl(workdir / "metrics.jsonl") if r["step"] == 20]
    assert all(r["valid_loss"] != r["eval_loss"] for r in last)  # two different held-out sets
    assert results["execution"]["members"] == 4 and results["execution"]["seeds_per_device"] == 4
    folders = sorted(str(p.relative_to(workdir / "tb")) for p in (workdir / "tb").glob("*/*"))
    assert folders == ["lr_0.001/seed_0", "lr_0.001/seed_1", "lr_0.01/seed_0", "lr_0.01/seed_1"]


def test_a_resumed_sweep_is_bit_identical_and_keeps_its_rates(sweep, tmp_path):
    workdir, results = sweep
    config = SWEEP.replace(diag_every=10, tensorboard=False)  # diagnostics change nothing in training
    train_and_evaluate(config.replace(steps=10), tmp_path)  # "interrupted" at step 10
    resumed = train_and_evaluate(config, tmp_path)
    assert resumed["seeds"] == results["seeds"] and resumed["by_learning_rate"] == results["by_learning_rate"]
    assert member_records(tmp_path) == member_records(workdir)
    same = jax.tree.map(np.array_equal, final_params(tmp_path, config), final_params(workdir, SWEEP))
    assert all(jax.tree.leaves(same))
    with pytest.raises(ConfigError, match=r"--learning_rate \(saved \(0.001, 0.01\), now \(0.001, 0.03\)\)"):
        check_resumable(config.replace(learning_rate=(1e-3, 3e-2)), tmp_path)
    # diagnostics per member, labelled with the rate
    with np.load(tmp_path / "diagnostics.npz") as z:
        assert list(z["steps"]) == [0, 10, 20] and list(z["seeds"]) == [0, 1, 0, 1]
        assert list(z["learning_rates"]) == [1e-3, 1e-3, 1e-2, 1e-2] and z["carry_grad_mean"].shape[:2] == (3, 4)
    records = io.read_jsonl(tmp_path / "diagnostics.jsonl")
    assert [(r["step"], r["seed"], r["learning_rate"]) for r in records[-4:]] == [
        (20, s, lr) for s, lr in members(SWEEP)
    ]
    # experiments.gradients measures every member of a trained sweep, from its checkpoint
    from experiments.gradient_measure import measure_specs, trained_spec

    runs, _ = measure_specs([trained_spec(str(tmp_path), 4)], 4, 0.01, 2, 2, 2)
    assert [(r.seed, r.learning_rate, r.step) for r in runs] == [(s, lr, 20) for s, lr in members(SWEEP)]
    assert runs[0].label == "gru s0 lr0.001 @20" and runs[0].training["steps"] == [10, 20]


SHARDED = """
import json, sys
from experiments.config import Config
from experiments.trainer import train_and_evaluate
config = Config.from_dict(json.loads(sys.argv[2]))
results = train_and_evaluate(config, sys.argv[1])
print(json.dumps(results["execution"]))
"""


def test_a_sweep_sharded_over_two_devices_equals_one_device(sweep, tmp_path):
    workdir, results = sweep
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    config = json.dumps(SWEEP.replace(tensorboard=False).to_dict())
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(tmp_path), config],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    execution = json.loads(proc.stdout.strip().splitlines()[-1])
    assert execution["num_devices"] == 2 and execution["members"] == 4 and execution["seeds_per_device"] == 2
    two = io.read_json(tmp_path / "results.json")
    for a, b in zip(two["seeds"], results["seeds"], strict=True):
        assert (a["seed"], a["learning_rate"]) == (b["seed"], b["learning_rate"])
        for split in ("final", "final_valid"):
            assert a[split] == pytest.approx(b[split], rel=1e-5, abs=1e-7)
    assert two["best_learning_rate"] == results["best_learning_rate"]

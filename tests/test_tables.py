"""benchmarks.tables end to end on its smoke preset: tables, CSV, plots, resume, published data."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.presets import PRESETS
from experiments.sweep_report import PUBLISHED, matches, metric_entry
from tasks import make_task
from tests.helpers import ROOT


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tables(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "benchmarks.tables", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_preset_writes_tables_and_resumes(tmp_path):
    proc = tables("--table=adding", "--preset=smoke", f"--results_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "adding"
    report = (out / "adding.md").read_text()
    grid = PRESETS["smoke"]["adding"]
    seeds = grid.settings["num_seeds"]
    for cell in grid.cells:
        assert f"| {cell} |" in report
    assert "## Published, beside ours" in report and "Bai, Kolter & Koltun 2018" in report
    assert "Versions: python" in report and "Command: `python -m benchmarks.tables" in report
    rows = read_csv(out / "adding.csv")
    assert len(rows) == len(grid.cells) * len(grid.seq_lens) * seeds
    assert {"final_loss", "diag_init_decay_rate", "diag_end_horizon", "solved_at_step"} <= set(rows[0])
    for T in grid.seq_lens:
        assert (out / f"adding_curves_T{T}.png").stat().st_size > 0
    assert (out / "adding_final_vs_T.png").stat().st_size > 0

    again = tables("--table=adding", "--preset=smoke", f"--results_dir={tmp_path}")
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == len(rows) // seeds
    assert read_csv(out / "adding.csv") == rows


@pytest.mark.slow
def test_gradients_table_and_bad_flags(tmp_path):
    proc = tables("--table=gradients", "--preset=smoke", f"--results_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "gradients" / "gradients.md").read_text()
    assert "dec/step" in report and "| lstm | init |" in report
    bad_flags = ((["--table=addition"], "--table"), (["--seq_lens=10,x"], "--seq_lens"), (["--cells=lstm,"], "--cells"))
    for args, flag in bad_flags:
        bad = tables(*args, f"--results_dir={tmp_path}")
        assert bad.returncode == 2 and flag in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_published_figures_are_well_formed():
    rows = read_csv(PUBLISHED)
    assert rows and all(r["source"] and r["where"] and r["task"] in ("copy", "adding") for r in rows)
    for r in rows:
        assert r["value"] or r["outcome"]
        if r["value"]:
            float(r["value"])
    tcn_gru = next(r for r in rows if r["cell"] == "gru" and r["task"] == "adding")
    assert float(tcn_gru["value"]) == 5.3e-5 and matches(tcn_gru, "gru", 600) and not matches(tcn_gru, "gru", 601)
    open_ended = next(r for r in rows if r["cell"] == "lstm" and r["task"] == "adding" and not r["seq_len_max"])
    assert matches(open_ended, "lstm", 10_000)


def test_metric_entry_marks_solved_and_diverged_seeds():
    results = {
        "task": "adding",
        "seq_len": 100,
        "seeds": [
            {"final": {"loss": 0.001}, "solved": True, "solved_at_step": 400, "diverged_at_step": None},
            {"final": {"loss": 0.003}, "solved": True, "solved_at_step": 600, "diverged_at_step": None},
            {"final": {"loss": 0.2}, "solved": False, "solved_at_step": None, "diverged_at_step": 17},
        ],
    }
    entry = metric_entry(results, make_task("adding", 100))
    assert "solved 2/3 @ 500" in entry and "1 diverged** (step 17)" in entry


def test_a_rate_sweep_is_reported_at_its_best_rate_with_the_rate_shown():
    def member(seed, rate, loss):
        return {
            "seed": seed,
            "learning_rate": rate,
            "final": {"loss": loss},
            "solved": loss < 0.01,
            "solved_at_step": 300 if loss < 0.01 else None,
            "diverged_at_step": None,
        }

    results = {
        "task": "adding",
        "seq_len": 100,
        "learning_rates": [1e-3, 1e-2],
        "best_learning_rate": 1e-2,  # chosen on the validation split by experiments.train
        "seeds": [member(0, 1e-3, 0.1), member(1, 1e-3, 0.12), member(0, 1e-2, 0.004), member(1, 1e-2, 0.002)],
    }
    entry = metric_entry(results, make_task("adding", 100))
    assert entry.startswith("0.003 ± 0.001<br>solved 2/2 @ 300") and entry.endswith("best lr 0.01 of 0.001, 0.01")


def test_every_preset_is_well_formed_data():
    """Each preset's sweeps give valid Configs (scalar fields), and only the table named gradients measures."""
    from experiments.config import check_fields

    for preset, sweeps in PRESETS.items():
        assert "default" in sweeps, preset
        for table, sweep in sweeps.items():
            assert (sweep.measure == "gradients") == (table == "gradients"), (preset, table)
            for config in sweep.points().values():
                check_fields(config)


def test_the_header_names_each_machine_its_points_trained_on():
    from experiments.grid import PointKey
    from experiments.sweep_report import _provenance

    def point(backend: str, kind: str, jax_version: str, wall: float) -> dict:
        execution = {"backend": backend, "device_kind": kind}
        return {"results": {"execution": execution, "versions": {"jax": jax_version}, "wall_time_s": wall}}

    cpu = {PointKey("gru", 1000): point("cpu", "cpu", "0.10.2", 600.0)}
    assert _provenance(cpu, 0.0, {}) == ["Wall time: 10.0 min on cpu  ", "Versions: jax 0.10.2  "]
    mixed = {**cpu, PointKey("gru", 5000): point("gpu", "NVIDIA H100", "0.11.2", 120.0)}
    wall, versions = _provenance(mixed, 0.0, {})
    assert (
        wall
        == "Wall time: 12.0 min in all: 10.0 min on cpu for gru T=1000; 2.0 min on gpu (NVIDIA H100) for gru T=5000  "
    )
    assert versions == "Versions: cpu: jax 0.10.2; gpu (NVIDIA H100): jax 0.11.2  "
    assert _provenance({PointKey("gru", 1000): {}}, 60.0, {"jax": "x"})[1] == "Versions: jax x  "
    sessions = [  # one point started on a GPU and finished on a CPU
        {"backend": "gpu", "device_kind": "H100", "wall_time_s": 60.0, "versions": {"jax": "0.11.2"}},
        {"backend": "cpu", "device_kind": "cpu", "cpu_count": 2, "wall_time_s": 120.0, "versions": {"jax": "0.10.2"}},
    ]
    resumed = {PointKey("gru", 2000): {"results": {"wall_time_s": 180.0, "sessions": sessions}}}
    assert _provenance(resumed, 0.0, {})[0] == (
        "Wall time: 3.0 min in all: 1.0 min on gpu (H100) for gru T=2000; 2.0 min on 2 CPU cores (cpu) for gru T=2000  "
    )
    old = {PointKey("gru", 1000): {"results": {"wall_time_s": 60.0, "versions": {"jax": "0.4"}}}}  # no execution record
    assert _provenance(old, 0.0, {})[0] == "Wall time: 1.0 min on a machine not recorded  "

"""A task from outside the repo gets a table with no edit in the renderer: one file, one command."""

import csv
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_a_task_from_outside_the_repo_gets_its_table(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(ROOT / "examples" / "my_tasks.py", outside / "outside_tasks.py")  # not importable from the repo
    env = {**os.environ, "PYTHONPATH": f"{outside}{os.pathsep}{ROOT}", "JAX_PLATFORMS": "cpu"}
    args = ["--preset=smoke", "--task=outside_tasks:FirstSymbol", "--task_options=num_symbols=3", "--seq_lens=4,8"]
    cmd = [sys.executable, "-m", "benchmarks.tables", *args, f"--results_dir={tmp_path / 'results'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "results" / "FirstSymbol"
    report = (out / "FirstSymbol.md").read_text()
    # the header, the solved rule and the extra metric come from the task's declarations
    assert "## Final held-out CE (memoryless baseline ln K = 1.1), then accuracy" in report
    assert "Task `outside_tasks:FirstSymbol` (num_symbols=3); solved: accuracy >= 0.99." in report
    assert "| cell | T=4 | T=8 |" in report
    for cell in ("rnn", "gru"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {cell} |"))
        assert row.count("accuracy ") == 2 and row.count("solved ") == 2
    with open(out / "FirstSymbol.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2  # cells x lengths x seeds
    assert {"final_loss", "final_accuracy", "final_ratio", "solved"} <= set(rows[0])
    assert (out / "FirstSymbol_curves_T8.png").stat().st_size > 0

    bad = subprocess.run(
        [*cmd[:3], "--preset=smoke", "--task=outside_tasks:FirstSymbol", "--task_options=num_symbols=99"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--task_options=num_symbols=99" in bad.stderr and "[2, 8]" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

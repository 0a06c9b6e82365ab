"""benchmarks.tables as a researcher uses it: committed results are never overwritten unless named, every run
says what it wrote, a launch records its flags (--status needs none of them again), a table is reproduced by
one command, and a Ctrl-C on a local sweep stops it in one line with every point resumable."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import io
from tests.helpers import ROOT, logged_step
from tests.test_plugins_by_file import UGRNN

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


def tables(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "benchmarks.tables", *args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, start: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {start}"), proc.stderr[-2000:]


def test_a_committed_table_is_refused_without_overwrite_tracked_and_the_default_is_a_work_folder(tmp_path):
    committed = ROOT / "results" / "quick" / "adding" / "adding.md"
    before = committed.read_bytes()
    refused = tables("--table=adding", "--preset=quick", "--results_dir=results/quick", "--render_only")
    one_line_error(refused, "--results_dir=results/quick: results/quick/adding holds ")
    assert "pass --overwrite_tracked" in refused.stderr and committed.read_bytes() == before

    # a folder git tracks, named with --overwrite_tracked: written, and the run says so
    repo = tmp_path / "repo"
    (repo / "results" / "smoke" / "adding").mkdir(parents=True)
    (repo / "results" / "smoke" / "adding" / "adding.md").write_text("committed\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "results"], check=True)
    args = ("--table=adding", "--preset=smoke", "--cells=rnn", "--seq_lens=6", "--render_only")
    one_line_error(tables(*args, "--results_dir=results/smoke", cwd=repo), "--results_dir=results/smoke: ")
    named = tables(*args, "--results_dir=results/smoke", "--overwrite_tracked", cwd=repo)
    assert named.returncode == 0, named.stderr[-2000:]
    assert named.stdout.strip().splitlines()[-1] == (
        "wrote results/smoke/adding/adding.md, results/smoke/adding/adding.csv"
    )
    assert "| rnn | - (not yet trained" in (repo / "results" / "smoke" / "adding" / "adding.md").read_text()

    # no --results_dir: runs/tables/<preset>/<table>/, outside what git tracks
    default = tables(*args, cwd=repo)
    assert default.returncode == 0, default.stderr[-2000:]
    assert default.stdout.strip().splitlines()[-1].startswith("wrote runs/tables/smoke/adding/adding.md")
    assert (repo / "runs" / "tables" / "smoke" / "adding" / "adding.md").exists()


def test_reproduce_refuses_a_budget_above_the_committed_tables_in_one_line():
    """--reproduce of a committed table reads its header's command and checks it against its points' config.json
    before anything trains."""
    proc = tables("--reproduce=results/quick/adding", "--steps=5000")
    one_line_error(proc, "--steps=5000: must be an integer in [1, 2000] (the table's)")
    one_line_error(tables("--reproduce=results/quick/adding", "--hidden_size=8"), "--hidden_size: does not apply")
    one_line_error(tables("--reproduce=results/quick/adding", "--cells=lem"), "--cells=lem: lem is not a row")
    one_line_error(tables("--reproduce=results/nowhere"), "--reproduce='results/nowhere': must name a table folder")


@pytest.mark.slow
def test_a_plugin_table_records_its_flags_for_status_and_is_reproduced_at_a_lower_budget(tmp_path):
    """A cell from a file with a short row name; --status with only the folder; --reproduce of a table whose
    header has only a --render_only command (as the committed ones), at fewer steps and seeds."""
    (tmp_path / "ugrnn.py").write_text(UGRNN)
    cell = f"--cells=ugrnn={tmp_path / 'ugrnn.py'}:UGRNN"
    committed = tmp_path / "committed"
    args = ["--table=adding", "--preset=smoke", cell, "--seq_lens=6", "--steps=20"]
    proc = tables(*args, f"--results_dir={committed}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = committed / "adding"
    assert proc.stdout.strip().splitlines()[-1].startswith(f"wrote {out / 'adding.md'}, {out / 'adding.csv'}")
    assert io.read_json(out / "ugrnn_T6" / "results.json")["steps_done"] == 20
    record = io.read_json(out / "sweep.json")
    assert record["flags"]["cells"] == cell.partition("=")[2] and record["flags"]["steps"] == 20
    header = next(line for line in (out / "adding.md").read_text().splitlines() if line.startswith("Command:"))
    assert header.startswith("Command: `python -m benchmarks.tables --table=adding --preset=smoke --cells=ugrnn=")

    for folder in (committed, out):  # the results folder, or the table folder: the recorded flags, no overrides
        status = tables("--status", f"--results_dir={folder}", cwd=tmp_path)
        assert status.returncode == 0, status.stderr[-2000:]
        assert f"adding: 1 grid points under {out}" in status.stdout and "ugrnn_T6  finished: " in status.stdout

    # a table as committed before sweep.json: its header's render command is the training command
    (out / "sweep.json").unlink()
    text = (
        (out / "adding.md")
        .read_text()
        .replace(header, f"Command: `python -m benchmarks.tables {' '.join(args)} --render_only`  ")
    )
    (out / "adding.md").write_text(text)
    repro = tables(
        f"--reproduce={out}", "--steps=10", "--num_seeds=1", f"--results_dir={tmp_path / 'work'}", cwd=tmp_path
    )
    assert repro.returncode == 0, repro.stderr[-3000:]
    ours = tmp_path / "work" / "adding"
    assert io.read_json(ours / "ugrnn_T6" / "results.json")["steps_done"] == 10
    lines = repro.stdout.strip().splitlines()
    assert lines[-1].startswith(f"wrote {ours / 'adding.md'}") and lines[-1].endswith("adding_vs_committed.md")
    row = next(line for line in lines if line.startswith("| ugrnn | 6 |"))
    assert "(20 steps, 2 seeds)" in row and "(step 10, 1 seeds)" in row and "(10 steps, 1 seeds)" in row
    assert (ours / "adding_vs_committed.md").read_text().count("| ugrnn | 6 |") == 1


@pytest.mark.slow
def test_ctrl_c_on_a_local_sweep_stops_it_in_one_line_with_its_points_interrupted_and_timed(tmp_path):
    """SIGINT to the sweep's whole process group, as a terminal's Ctrl-C sends it, while both workers train."""
    args = ["--table=adding", "--preset=smoke", "--cells=rnn,gru", "--seq_lens=6", "--steps=100000"]
    args += [f"--results_dir={tmp_path}", "--launcher=local", "--workers=2"]
    cmd = [sys.executable, "-m", "benchmarks.tables", *args]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    points = [tmp_path / "adding" / name for name in ("rnn_T6", "gru_T6")]
    end = time.time() + 400
    while not all(logged_step(p) >= 10 for p in points):
        assert proc.poll() is None and time.time() < end, proc.communicate()
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, (out, err)
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: SIGINT received: the workers stopped")
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    for point in points:
        assert f"{point.name}: interrupted: steps 0->" in out
        results = io.read_json(point / "results.json")  # its time is kept
        assert results["stopped_by"] and 10 <= results["steps_done"] < 100000 and results["wall_time_s"] > 0
    status = tables("--status", f"--results_dir={tmp_path}")
    assert status.stdout.count(" by SIGTERM at step ") == 2 and "2 interrupted" in status.stdout, status.stdout
    shutil.rmtree(tmp_path / "adding" / ".submitit", ignore_errors=True)

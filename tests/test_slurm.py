"""Slurm commands that fail, hang or are missing (benchmarks/slurm.py): sbatch's own message in one line, a timeout on
every scheduler call, an unknown queue state that resubmits nothing, and an sbatch script that quotes what it names.
Fake `sbatch`, `squeue` and `srun` scripts on PATH stand in for a cluster."""

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import slurm
from benchmarks.presets import PRESETS
from experiments import io
from experiments.config import ConfigError
from tests.helpers import ROOT

SMOKE = ["--table=adding", "--preset=smoke"]
GRID = PRESETS["smoke"]["adding"]
POINTS = [f"{c}_T{T}" for c in GRID.cells for T in GRID.seq_lens]
SRUN = '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = --unbuffered ] && shift || shift 2; done\nexec "$@"\n'


def fake_commands(bin_dir: Path, **scripts: str) -> Path:
    """Executable shell scripts named after the keywords (`sbatch=...`), in `bin_dir`; `srun` unless given."""
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"srun": SRUN, **scripts}.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + text if not text.startswith("#!") else text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    return bin_dir


def tables(results: Path, bin_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "benchmarks.tables", *SMOKE, f"--results_dir={results}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- sbatch


SBATCH_FAILURES = {
    "rejected": (
        "echo 'sbatch: error: invalid partition specified: gpu' >&2\n"
        "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n",
        "error: --launcher=slurm: sbatch refused the job array (exit 1): sbatch: error: invalid partition specified: "
        "gpu / sbatch: error: Batch job submission failed: Invalid partition name specified",
    ),
    "unreadable": (
        "echo 'Welcome to the cluster! Your job is in good hands.'\nexit 0\n",
        "error: --launcher=slurm: sbatch answered 'Welcome to the cluster! Your job is in good hands.', which names no "
        "job id",
    ),
    "hangs": ("sleep 60\n", "error: --launcher=slurm: sbatch did not answer within 2 s (--slurm_timeout=2)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("failure", sorted(SBATCH_FAILURES))
def test_a_failing_or_hanging_sbatch_is_one_line_with_its_message(tmp_path, failure):
    script, message = SBATCH_FAILURES[failure]
    bin_dir = fake_commands(tmp_path / "bin", sbatch=script, squeue="exit 0\n")
    t0 = time.monotonic()
    proc = tables(tmp_path / "r", bin_dir, "--launcher=slurm", "--slurm_partition=gpu", "--slurm_timeout=2")
    assert time.monotonic() - t0 < 50  # the hanging sbatch is killed at 2 s, not waited for
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
    assert "submitted" not in proc.stdout
    assert not (tmp_path / "r" / "adding" / slurm.SLURM_JOBS).exists()  # no job id recorded


# ---------------------------------------------------------------- squeue


SUBMITTED = {point: f"4242_{i}" for i, point in enumerate(POINTS)}


def queue_of(tmp_path: Path, squeue: str | None, timeout_s: float = 5) -> "slurm.SlurmQueue | None":
    bin_dir = fake_commands(tmp_path / "bin", **({"squeue": squeue} if squeue is not None else {}))
    old = os.environ["PATH"]
    os.environ["PATH"] = str(bin_dir)  # only the fakes: a missing squeue is missing
    try:
        return slurm.slurm_queue(list(SUBMITTED.values()), timeout_s)
    finally:
        os.environ["PATH"] = old


@pytest.mark.parametrize(
    "squeue, reason",
    [
        (
            "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n",
            "squeue failed (exit 1): slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        ),
        ("exec /bin/sleep 30\n", "squeue did not answer within 1 s (--slurm_timeout)"),
        (None, "squeue is not on PATH"),
        ("echo 'Welcome!'\n", "squeue answered what is not 'job state' lines: Welcome!"),
    ],
)
def test_a_failing_hanging_or_missing_squeue_leaves_the_queue_state_unknown(tmp_path, squeue, reason):
    t0 = time.monotonic()
    queue = queue_of(tmp_path, squeue, timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert queue == slurm.SlurmQueue(states={}, unknown={"4242": reason})


def test_squeue_that_no_longer_knows_the_array_means_it_left_the_queue(tmp_path):
    invalid = "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
    assert queue_of(tmp_path, invalid) == slurm.SlurmQueue()
    listed = "echo '4242_1 PENDING'\necho '4242_2 RUNNING'\n"
    assert queue_of(tmp_path, listed) == slurm.SlurmQueue(states={"4242_1": "PENDING", "4242_2": "RUNNING"})


@pytest.mark.slow
def test_an_unknown_queue_state_is_reported_and_resubmits_nothing(tmp_path):
    results = tmp_path / "r"
    (results / "adding").mkdir(parents=True)
    io.write_json(results / "adding" / slurm.SLURM_JOBS, SUBMITTED)
    down = "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n"
    record = f"touch {tmp_path}/sbatch_called\necho 'Submitted batch job 5000'\n"
    bin_dir = fake_commands(tmp_path / "bin", sbatch=record, squeue=down)
    status = tables(results, bin_dir, "--status")
    assert status.returncode == 0, status.stderr[-2000:]
    assert (
        "  rnn_T6   submitted as Slurm job 4242_0, queue state unknown: squeue failed (exit 1): slurm_load_jobs "
        "error: Unable to contact slurm controller (connect failure)"
    ) in status.stdout.splitlines()
    assert status.stdout.splitlines()[-1] == "4 unknown"
    launch_run = tables(results, bin_dir, "--launcher=slurm")
    assert launch_run.returncode == 0, launch_run.stderr[-2000:]
    assert not (tmp_path / "sbatch_called").exists()  # nothing submitted a second time
    assert "0 of 4 grid points finished, 0 running, 0 queued, 0 submitted now" in launch_run.stdout
    assert "4 grid points not submitted: their Slurm queue state is unknown" in launch_run.stderr
    assert io.read_json(results / "adding" / slurm.SLURM_JOBS) == SUBMITTED


# ---------------------------------------------------------------- the sbatch script


def test_the_sbatch_script_quotes_paths_with_spaces(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{fake_commands(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")  # srun
    root, python = tmp_path / "my repo", tmp_path / "my env" / "bin" / "python"
    executor = slurm.slurm_executor(tmp_path / "jobs dir", slurm.SlurmOptions(), "rnnlab-adding", root, str(python))
    script = executor._make_submission_file_text(executor._submitit_command_str, "uid")
    setup = [line for line in script.splitlines() if line.startswith("export PYTHONPATH=")]
    shown = subprocess.run(
        ["bash", "-c", f'{setup[0]}\nprintf %s "$PYTHONPATH"'],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == str(root)
    command = next(line for line in script.splitlines() if line.startswith("srun "))
    words = shlex.split(command)
    assert str(python) in words and words[words.index(str(python)) + 1 :][:3] == ["-u", "-m", "submitit.core._submit"]


@pytest.mark.parametrize("value", ["qos=high\n#SBATCH --time=1", "account=lab\rx", "comment=a\x00b"])
def test_control_characters_in_slurm_additional_are_refused(value):
    with pytest.raises(ConfigError, match=r"^--slurm_additional=.*: holds a control character"):
        slurm.parse_additional(value)


@pytest.mark.slow
def test_slurm_flags_are_one_line_errors(one_line_errors, tmp_path):
    out = f"--results_dir={tmp_path}/r"
    one_line_errors(
        [
            (
                "benchmarks.tables",
                [*SMOKE, out, "--launcher=slurm", "--slurm_additional=qos=high\n#SBATCH --time=1"],
                "--slurm_additional='qos=high\\n#SBATCH --time=1': holds a control character",
            ),
            (
                "benchmarks.tables",
                [*SMOKE, out, "--launcher=slurm", "--slurm_timeout=0"],
                "--slurm_timeout=0.0: must be",
            ),
            ("benchmarks.tables", [*SMOKE, out, "--slurm_timeout=5"], "--slurm_timeout: applies to --launcher=slurm"),
        ]
    )
    assert not (tmp_path / "r").exists()

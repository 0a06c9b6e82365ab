"""Faults, one test (or more) each: a deadlock in vmapped initialisation, a signal before
the first step, checkpoints between logging steps, a damaged checkpoint, a deleted config.json, two
processes on one workdir, a stopped table sweep, reruns of finished runs and a full disk."""

import errno
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiments import gradient_measure, grid, io, sweep, sweep_report, trainer
from experiments.checkpoint import UNREADABLE, saved_steps
from experiments.config import Config, ConfigError
from experiments.experiment import Experiment
from experiments.lock import WorkdirLockedError, workdir_lock
from experiments.trainer import train_and_evaluate
from tests.helpers import ROOT
from tests.helpers import metrics_without_timing as evals

CFG = Config(
    cell="gru",
    task="adding",
    seq_len=8,
    hidden_size=8,
    batch_size=8,
    steps=60,
    eval_every=20,
    eval_size=16,
    checkpoint_every=10,
)


def flags_of(config: Config) -> list[str]:
    return [f"--{k}={v}" for k, v in config.to_dict().items() if k != "cell_options"]


def start(module: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_proc(config: Config, workdir: Path) -> subprocess.Popen:
    return start("experiments.train", *flags_of(config), f"--workdir={workdir}")


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def error_lines(stderr: str) -> list[str]:
    """What is not an absl INFO/WARNING progress line."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("I", "W"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, train_and_evaluate(CFG, workdir)


@pytest.fixture
def trained(reference, tmp_path):
    """A copy of the finished reference run (checkpoints 50 and 60)."""
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    return workdir


# ----------------------------------------------------------------------------- 0: deadlock

INIT_LOOP = """
import jax, jax.numpy as jnp
from experiments.config import Config
from experiments.experiment import Experiment
for cell in ("lstm", "gru"):
    init = Experiment(Config(cell=cell, hidden_size=128)).compiled_init()
    for i in range(20):
        jax.block_until_ready(init(jnp.arange(2) + i))
        print(cell, i, flush=True)
print("ok", flush=True)
"""


@pytest.mark.slow
def test_initialising_two_lstm_or_gru_seeds_in_a_loop_does_not_deadlock(tmp_path):
    """`jax.jit(jax.vmap(init_state))` in this loop hung on 2 cores, for good (two batched QRs waiting
    on XLA's CPU pool for each other). A call that makes no progress for 90 s fails the test; a
    slow one (a loaded machine) does not."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    lines: queue.Queue = queue.Queue()
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", INIT_LOOP], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        threading.Thread(target=lambda: [*map(lines.put, proc.stdout), lines.put(None)], daemon=True).start()
        try:
            last = None
            while last != "ok\n":
                try:
                    line = lines.get(timeout=90)
                except queue.Empty:
                    pytest.fail(f"initialisation hung: no progress for 90 s after {last!r} (the batched-QR deadlock)")
                if line is None:  # the process ended without "ok"
                    stderr.seek(0)
                    pytest.fail(f"exit {proc.wait()}: {stderr.read()[-2000:]}")
                last = line
        finally:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- 1: a signal before step 1


def test_a_signal_during_the_first_compile_stops_with_results_and_resumes_bit_identical(
    reference, tmp_path, monkeypatch
):
    compiled_step = Experiment.compiled_step

    def signalling(self, mesh=None):
        step = compiled_step(self, mesh)

        class Signalling:  # the step is compiled ahead of the first step: the signal arrives while it compiles
            def lower(self, *args):
                os.kill(os.getpid(), signal.SIGTERM)
                return step.lower(*args)

        return Signalling()

    monkeypatch.setattr(Experiment, "compiled_step", signalling)
    stopped = train_and_evaluate(CFG, tmp_path)
    assert stopped["stopped_by"] == "SIGTERM" and stopped["steps_done"] == 0 and not stopped["finished"]
    assert io.read_json(tmp_path / "results.json")["seeds"][0]["final"]["loss"] > 0  # evaluated at step 0
    assert io.read_json(tmp_path / "results.json")["wall_time_s"] > 0  # its time is kept
    assert [r["step"] for r in io.read_jsonl(tmp_path / "metrics.jsonl")] == [0]  # the schedule only
    monkeypatch.undo()
    resumed = train_and_evaluate(CFG, tmp_path)
    assert resumed["seeds"] == reference[1]["seeds"] and evals(tmp_path) == evals(reference[0])


@pytest.mark.slow
def test_sigterm_right_after_step_0_exits_cleanly_with_results(tmp_path):
    proc = train_proc(CFG.replace(steps=5000), tmp_path)
    wait_for(lambda: io.read_jsonl(tmp_path / "metrics.jsonl"), proc)  # step 0 logged: the step compiles now
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-3000:]
    results = io.read_json(tmp_path / "results.json")
    assert results["stopped_by"] == "SIGTERM" and results["steps_done"] < 5000 and results["seeds"][0]["final"]


# ----------------------------------------------------------------------------- 2: checkpoints between logs


@pytest.mark.slow
def test_checkpoints_between_logging_steps_survive_kill_9(reference, tmp_path):
    config = CFG.replace(eval_every=60)  # logs at 0 and 60 only; checkpoints every 10
    proc = train_proc(config, tmp_path)
    wait_for(lambda: any(s >= 20 for s in saved_steps(tmp_path)), proc)
    proc.kill()
    proc.wait()
    assert saved_steps(tmp_path) and all(0 < s < 60 for s in saved_steps(tmp_path))
    assert [r["step"] for r in io.read_jsonl(tmp_path / "metrics.jsonl")] == [0]
    resumed = train_and_evaluate(config, tmp_path)
    assert resumed["seeds"] == reference[1]["seeds"]  # evaluations do not change training: same as CFG's


# ----------------------------------------------------------------------------- 3: a damaged checkpoint


def damage(workdir: Path, step: int) -> None:
    """Truncate the data file of checkpoint `step` (what a disk error or a killed copy leaves)."""
    data = max((workdir / "checkpoints" / str(step) / "default" / "d").iterdir(), key=lambda p: p.stat().st_size)
    os.truncate(data, data.stat().st_size // 2)


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(reference, trained):
    damage(trained, 60)
    proc = train_proc(CFG, trained)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in stderr and not error_lines(stderr), stderr[-3000:]
    assert len([line for line in stderr.splitlines() if "does not restore" in line]) == 1
    assert (trained / UNREADABLE / "60").is_dir() and saved_steps(trained) == [50, 60]
    results = io.read_json(trained / "results.json")
    assert results["seeds"] == reference[1]["seeds"] and evals(trained) == evals(reference[0])
    assert results["wall_time_s"] > reference[1]["wall_time_s"]  # a resumed run adds its own time


def test_gradients_from_a_workdir_with_damaged_checkpoints(trained, caplog):
    spec = gradient_measure.Spec(CFG, str(trained))
    damage(trained, 60)
    _, step = gradient_measure.load_params(spec)
    assert step == 50 and saved_steps(trained) == [50, 60]  # read-only: nothing moved
    assert any("checkpoint 60" in r.getMessage() and "does not restore" in r.getMessage() for r in caplog.records)
    damage(trained, 50)
    with pytest.raises(ConfigError, match=r"^--from_workdirs=.*: no checkpoint restores \(steps 60, 50"):
        gradient_measure.load_params(spec)
    with pytest.raises(ConfigError, match=r"^--workdir=.*no checkpoint restores.*move .*checkpoints away"):
        train_and_evaluate(CFG, trained)
    assert saved_steps(trained) == [50, 60] and not (trained / UNREADABLE).exists()


# ----------------------------------------------------------------------------- 4: a deleted config.json


def test_a_deleted_config_json_refuses_instead_of_resuming(trained):
    (trained / "config.json").unlink()
    before = (trained / "metrics.jsonl").read_text()
    for config in (CFG.replace(learning_rate=0.01), CFG.replace(hidden_size=16), CFG):
        with pytest.raises(ConfigError, match=r"holds a run \(checkpoints, metrics.jsonl, results.json\) but no"):
            train_and_evaluate(config, trained)
    assert not (trained / "config.json").exists() and (trained / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("name", ["checkpoints", UNREADABLE])
def test_a_file_in_place_of_a_run_folder_is_refused_before_anything_is_written(trained, name):
    """A `checkpoints` file is refused up front (it once made the run restart from 0 and lose its metrics)."""
    folder = trained / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.write_text("x")
    before = (trained / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match=rf"^--workdir=.*{name} is a file where the run keeps a folder"):
        train_and_evaluate(CFG.replace(steps=CFG.steps + 10), trained)
    assert (trained / "metrics.jsonl").read_text() == before


# ----------------------------------------------------------------------------- 5: two processes


@pytest.mark.slow
def test_a_second_process_on_a_workdir_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    first = train_proc(CFG.replace(steps=10**6, checkpoint_every=0, eval_every=10**6), tmp_path)
    wait_for(lambda: io.read_jsonl(tmp_path / "metrics.jsonl"), first)
    second = train_proc(CFG.replace(steps=10**6, checkpoint_every=0, eval_every=10**6), tmp_path)
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 2 and stderr.strip().splitlines() == [
        f"error: --workdir={tmp_path}: is being trained by another process (pid {first.pid})"
    ]
    first.kill()
    first.wait()
    with workdir_lock(tmp_path):  # the kernel released the dead process's lock
        pass


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with workdir_lock(tmp_path), pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"):
        train_and_evaluate(CFG, tmp_path)
    with workdir_lock(tmp_path):
        pass


def test_tables_skips_a_point_another_process_trains_and_marks_it(tmp_path, capsys):
    point = tmp_path / "gru_T8"
    point.mkdir()
    with workdir_lock(point):
        result = sweep.run_point("train", CFG, point)
    assert result == {"busy": f"being trained by another process (pid {os.getpid()})"}
    assert "gru_T8: skipped" in capsys.readouterr().out and not (point / "config.json").exists()
    busy = f"- (being trained by another process (pid {os.getpid()}))"
    assert sweep_report.point_entry(result, grid.task_of(CFG)) == busy


# ----------------------------------------------------------------------------- 6: stopping a sweep


def test_a_part_trained_point_is_marked_in_the_table(reference):
    results, task = {**reference[1], "steps_done": 20, "finished": False}, grid.task_of(CFG)
    assert sweep_report.point_entry({"results": results}, task).startswith("**part-trained: 20/60 steps**<br>")
    first = sweep_report.point_entry({"results": results}, task, first_line=True)
    assert first.startswith("**part-trained: 20/60 steps**<br>")
    assert "part-trained" not in sweep_report.point_entry({"results": reference[1]}, task)


@pytest.mark.slow
def test_sigterm_stops_the_whole_tables_sweep_without_writing_the_table(tmp_path):
    flags = ["--table=adding", "--preset=smoke", "--cells=rnn", "--steps=100000", f"--results_dir={tmp_path}"]
    proc = start("benchmarks.tables", *flags)
    wait_for(lambda: len(io.read_jsonl(tmp_path / "adding" / "rnn_T6" / "metrics.jsonl")) >= 4, proc, 300)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-3000:]
    assert error_lines(stderr) == [
        "error: SIGTERM received: the sweep stopped with 0 of 2 grid points done; adding.md was not written; "
        "rerun the same command to resume"
    ]
    # no further point started (sweep.json: the launch's flags, for --status)
    assert sorted(p.name for p in (tmp_path / "adding").iterdir()) == ["rnn_T6", "sweep.json"]
    assert io.read_json(tmp_path / "adding" / "rnn_T6" / "results.json")["stopped_by"] == "SIGTERM"


def test_a_signal_stops_every_cell_of_compare(tmp_path, monkeypatch, capsys):
    from experiments import compare

    trained, real = [], trainer.train_and_evaluate

    def interrupted(config, workdir):  # SIGINT arrives while the first cell trains (caught by the sweep's handler)
        trained.append(config.cell)
        signal.raise_signal(signal.SIGINT)
        return real(config, workdir)

    monkeypatch.setattr(trainer, "train_and_evaluate", interrupted)
    with pytest.raises(SystemExit) as e:
        compare.compare(CFG, ["rnn", "gru"], tmp_path)
    assert e.value.code == 128 + signal.SIGINT and trained == ["rnn"] and not (tmp_path / "comparison.md").exists()
    err = capsys.readouterr().err
    assert err.startswith("error: SIGINT received: the sweep stopped with 1 of 2 grid points done; comparison.md")


# ----------------------------------------------------------------------------- 7: reruns


def test_rerunning_a_finished_run_keeps_its_timing_and_trains_nothing(reference, trained):
    again = train_and_evaluate(CFG, trained)
    for key in ("wall_time_s", "steps_per_s", "train_time_s", "timed_steps", "seeds", "steps_done"):
        assert again[key] == reference[1][key], key
    assert reference[1]["steps_per_s"] > 0 and evals(trained) == evals(reference[0])


def test_fewer_steps_than_a_run_has_trained_are_refused(trained):
    saved = (trained / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"^--steps=40: the run in --workdir=.* has already trained 60 steps"):
        train_and_evaluate(CFG.replace(steps=40), trained)
    assert (trained / "config.json").read_text() == saved


def test_results_list_each_session_with_its_machine(tmp_path):
    first = train_and_evaluate(CFG.replace(steps=20), tmp_path)
    assert [s["steps"] for s in first["sessions"]] == [[0, 20]]
    assert first["sessions"][0]["backend"] == "cpu" and first["sessions"][0]["versions"] == first["versions"]
    legacy = {k: v for k, v in first.items() if k != "sessions"}  # results written before the list existed
    io.write_json(tmp_path / "results.json", legacy)
    second = train_and_evaluate(CFG.replace(steps=30), tmp_path)
    assert [s["steps"] for s in second["sessions"]] == [[0, 20], [20, 30]]
    assert second["sessions"][0]["wall_time_s"] == first["wall_time_s"]
    assert sum(s["wall_time_s"] for s in second["sessions"]) == pytest.approx(second["wall_time_s"], abs=0.05)
    assert train_and_evaluate(CFG.replace(steps=30), tmp_path)["sessions"] == second["sessions"]  # trains nothing
    io.write_json(tmp_path / "results.json", {k: v for k, v in second.items() if k != "sessions"})
    assert "sessions" not in train_and_evaluate(CFG.replace(steps=30), tmp_path)  # nor invents a session


def test_a_run_without_checkpoints_is_not_extended_from_step_0(trained, tmp_path):
    """Committed results come without checkpoints (git-ignored): asking a fresh clone for more steps is refused."""
    clone = tmp_path / "clone"
    shutil.copytree(trained, clone, ignore=shutil.ignore_patterns("checkpoints"))
    files = {p.name: p.read_bytes() for p in clone.iterdir() if p.is_file() and not p.name.startswith(".")}
    with pytest.raises(ConfigError, match=r"^--steps=80: the run in --workdir=.* trained 60 steps but keeps no checkp"):
        train_and_evaluate(CFG.replace(steps=80), clone)
    assert {p.name: p.read_bytes() for p in clone.iterdir() if p.is_file() and not p.name.startswith(".")} == files
    assert not (clone / "checkpoints").exists()
    from benchmarks.point_status import point_status

    status = point_status("adding", CFG.replace(steps=80), clone)
    assert status.line.startswith("refused: the run in --workdir=") and "pass --steps=60" in status.line


def test_rerunning_a_run_whose_seeds_all_diverged_trains_nothing(tmp_path):
    config = CFG.replace(optimizer="sgd", learning_rate=1e6, clip_norm=0.0, steps=200, eval_every=5)
    first = train_and_evaluate(config, tmp_path)
    assert first["finished"] and first["steps_done"] < 200 and first["seeds"][0]["diverged_at_step"] is not None
    records = io.read_jsonl(tmp_path / "metrics.jsonl")
    again = train_and_evaluate(config, tmp_path)
    assert again["steps_done"] == first["steps_done"] and io.read_jsonl(tmp_path / "metrics.jsonl") == records
    assert saved_steps(tmp_path)[-1] == first["steps_done"]


# ----------------------------------------------------------------------------- 8: a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (needs root: mount); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_a_full_disk_is_one_line_up_front_and_mid_run_and_the_run_resumes(tiny_disk):
    filler = fill(tiny_disk)  # full before the run: refused by the write probe, nothing written
    with pytest.raises(ConfigError, match=r"^--workdir=.*/early: not writable \(No space left on device\)$"):
        train_and_evaluate(CFG, tiny_disk / "early")
    assert not (tiny_disk / "early" / "config.json").exists()
    filler.unlink()

    workdir = tiny_disk / "run"
    proc = train_proc(CFG.replace(steps=10**6, eval_every=10**6), workdir)
    wait_for(lambda: any(s >= 20 for s in saved_steps(workdir)), proc)
    filler = fill(tiny_disk)  # the next checkpoint (or metrics line) fails
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert error_lines(stderr) == [
        f"error: no space left on device under {workdir}; what was written before is intact: free some space "
        "and rerun the same command (a training run resumes from its last checkpoint)"
    ]
    filler.unlink()
    done = max(saved_steps(workdir))
    resumed = train_and_evaluate(CFG.replace(steps=done + 20, eval_every=10**6), workdir)
    assert resumed["finished"] and resumed["steps_done"] == done + 20


def test_a_full_disk_mid_run_is_a_disk_full_error_naming_the_workdir(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: ENOSPC simulated in-process, on the metrics log."""

    def full(path, records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "append_jsonl", full)
    with pytest.raises(io.DiskFullError) as e:
        train_and_evaluate(CFG, tmp_path)
    assert e.value.filename == str(tmp_path) and e.value.errno == errno.ENOSPC
    assert io.disk_full(ValueError("RESOURCE_EXHAUSTED: ... Failed to write 186 bytes: No space left on device"))

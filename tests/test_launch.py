"""benchmarks.tables on launchers (benchmarks/local_workers.py, slurm.py): local workers, a Slurm job array
without a cluster, --status, and TensorBoard event files. Every point is a tiny smoke-preset point;
subprocesses compile at XLA optimisation level 0 (the numbers are compared between
launchers, which use the same flags)."""

import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import launch, slurm
from benchmarks.point_status import PointStatus, point_status
from benchmarks.presets import PRESETS
from experiments import io
from experiments.checkpoint import saved_steps
from experiments.config import ConfigError
from experiments.grid import PointKey, point_dir
from experiments.lock import held_by, workdir_lock
from experiments.tensorboard import tag
from tests.helpers import ROOT, logged_step, tensorboard_scalars

SMOKE = ["--table=adding", "--preset=smoke"]
GRID = PRESETS["smoke"]["adding"]
POINTS = [f"{c}_T{T}" for c in GRID.cells for T in GRID.seq_lens]


CACHE: list[Path] = []  # JAX's persistent compilation cache, shared by this module's subprocesses


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Every process of these tests compiles the same few tiny programs: compiled once, loaded after."""
    CACHE.append(tmp_path_factory.mktemp("jax_cache"))
    yield
    CACHE.clear()


def env(**extra: str) -> dict[str, str]:
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    cache = {"JAX_COMPILATION_CACHE_DIR": str(CACHE[0]), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags, **cache, **extra}


def tables(*args: str, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.tables", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def table_lines(md: Path) -> list[str]:
    """The report without the lines that name the command and the wall time."""
    return [line for line in md.read_text().splitlines() if not line.startswith(("Command:", "Wall time:"))]


def finals(results_dir: Path, point: str) -> list[dict]:
    return [s["final"] for s in io.read_json(results_dir / "adding" / point / "results.json")["seeds"]]


def keys_of(workdir: Path) -> list[tuple[int, int]]:
    return [(r["step"], r["seed"]) for r in io.read_jsonl(workdir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def inline_smoke(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("inline")
    code, out, err = finish(tables(*SMOKE, f"--results_dir={results}"))
    assert code == 0, err[-3000:]
    return results


@pytest.mark.slow
def test_two_local_sweeps_at_once_train_every_point_once_and_match_inline(inline_smoke, tmp_path):
    """Two `--launcher=local --workers=2` sweeps started together on one results dir: every point trained by
    exactly one worker, in one process from step 0, no duplicate metrics record; then the table (rendered
    by a third launch, which starts no worker) equals the inline one, and so do results.json numbers."""
    args = (*SMOKE, f"--results_dir={tmp_path}", "--launcher=local", "--workers=2")
    first, second = tables(*args), tables(*args)
    runs = [finish(first), finish(second)]
    for code, _, err in runs:
        assert code == 0, err[-3000:]
    outputs = "\n".join(out for _, out, _ in runs)
    for point in POINTS:
        assert outputs.count(f"  {point}: trained: steps 0->20") == 1, outputs  # one worker trained it
        workdir = tmp_path / "adding" / point
        keys = keys_of(workdir)
        assert len(keys) == len(set(keys)) == 3 * GRID.settings["num_seeds"]  # steps 0, 10, 20; no record twice
        results = io.read_json(workdir / "results.json")
        assert results["resumed_from"] == 0 and results["steps_done"] == 20 and results["finished"]
        assert finals(tmp_path, point) == finals(inline_smoke, point)  # the same numbers as inline

    code, out, err = finish(tables(*args))
    assert code == 0, err[-3000:]
    assert out.count(": skipped: finished:") == len(POINTS) and "trained" not in out
    assert table_lines(tmp_path / "adding" / "adding.md") == table_lines(inline_smoke / "adding" / "adding.md")
    assert (tmp_path / "adding" / "adding.csv").read_text() == (inline_smoke / "adding" / "adding.csv").read_text()

    # TensorBoard: one run per seed beside metrics.jsonl, the same scalars at the same (logging) steps
    workdir = tmp_path / "adding" / POINTS[0]
    for seed in range(GRID.settings["num_seeds"]):
        scalars = tensorboard_scalars(workdir / "tb" / f"seed_{seed}")
        records = [r for r in io.read_jsonl(workdir / "metrics.jsonl") if r["seed"] == seed]
        labels = ("step", "seed", "learning_rate")  # what a record is of, not scalars (a sweep names lr_<rate>/)
        expected = {tag(k) for r in records for k, v in r.items() if k not in labels and v is not None}
        assert set(scalars) == expected >= {"train/loss", "eval/loss", "eval/ratio", "grad/norm", "train/diverged"}
        assert [s for s, _ in scalars["eval/loss"]] == [r["step"] for r in records] == [0, 10, 20]
        assert [v for _, v in scalars["eval/loss"]] == pytest.approx([r["eval_loss"] for r in records], rel=1e-6)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_worker_resumes_on_relaunch_and_a_preempted_one_is_requeued(tmp_path):
    """SIGKILL to a worker mid-point: the sweep reports it, --status says interrupted, and the same command
    resumes the point from its checkpoint. Then USR2 (Slurm's warning before a time limit or preemption)
    to the resumed worker: it saves a checkpoint, submitit calls PointJob.checkpoint and requeues it, and
    the requeued job resumes from that checkpoint and finishes."""
    args = (*SMOKE, "--cells=rnn", "--seq_lens=6", "--steps=1500", "--hidden_size=64", "--batch_size=64")
    args = (*args, f"--results_dir={tmp_path}", "--launcher=local", "--workers=1")
    workdir = tmp_path / "adding" / "rnn_T6"

    proc = tables(*args)
    wait_until(lambda: logged_step(workdir) >= 250, proc)
    os.kill(held_by(workdir), signal.SIGKILL)  # the worker: the process holding the point's lock
    code, out, err = finish(proc)
    assert code == 1 and "rnn_T6: failed: the worker ended without a result" in out, (out, err)
    assert err.strip().splitlines()[-1].startswith("error: 1 of 1 grid points failed: rnn_T6")
    killed_at = max(saved_steps(workdir))
    assert killed_at >= 200 and not (workdir / "results.json").exists()
    config = launch_grid().points()[PointKey("rnn", 6)]
    status = point_status("adding", config, workdir)
    assert status == PointStatus("interrupted", f"interrupted at step {killed_at}/1500; a relaunch resumes it")

    proc = tables(*args)
    wait_until(lambda: logged_step(workdir) >= killed_at + 250 and held_by(workdir), proc)
    preempted_pid = held_by(workdir)
    os.kill(preempted_pid, signal.SIGUSR2)
    code, out, err = finish(proc)
    assert code == 0 and "rnn_T6: trained: steps" in out, (out, err)
    results = io.read_json(workdir / "results.json")
    assert results["finished"] and results["steps_done"] == 1500 and results["stopped_by"] is None
    assert results["resumed_from"] > killed_at + 200  # the requeued job resumed from the preemption checkpoint
    logs = "".join(p.read_text() for p in (workdir.parent / launch.JOBS_FOLDER).glob("*_log.*"))
    assert f"resuming {workdir} from step {killed_at}" in logs
    assert f"resuming {workdir} from step {results['resumed_from']}" in logs
    assert "Calling checkpoint method" in logs and "Requeued job" in logs
    keys = keys_of(workdir)
    assert sorted(keys) == sorted(set(keys)) and {s for s, _ in keys} == set(range(0, 1501, 10))

    # three runs of the command, each with its own event file: each run's restart marker hides what the one
    # before logged after its checkpoint, so TensorBoard shows every logging step once
    assert len(list((workdir / "tb" / "seed_0").glob("events.out.tfevents.*"))) == 3
    steps = [step for step, _ in tensorboard_scalars(workdir / "tb" / "seed_0")["eval/loss"]]
    assert steps == list(range(0, 1501, 10))


def launch_grid():
    return GRID.with_fields(cell="rnn", seq_len=6, steps=1500, hidden_size=64, batch_size=64)


@pytest.mark.slow
def test_status_lines_for_finished_running_failed_and_not_started_points(inline_smoke, tmp_path):
    adding = tmp_path / "adding"
    adding.mkdir()
    subprocess.run(["cp", "-r", str(inline_smoke / "adding" / "rnn_T6"), str(adding)], check=True)  # finished
    running = adding / "rnn_T12"  # trained up to step 10 of 20 by a process that holds the lock: this one
    running.mkdir()
    config = GRID.points()[PointKey("rnn", 12)]
    io.write_json(running / "config.json", config.to_dict())
    io.append_jsonl(running / "metrics.jsonl", [{"step": s, "seed": 0, "steps_per_s": 4.0} for s in (0, 10)])
    failed = GRID.points()[PointKey("gru", 6)]
    job = launch.PointJob("adding", failed.replace(cell="nosuchcell").to_dict(), str(adding / "gru_T6"))
    with pytest.raises(ConfigError):
        job()  # the job fails: error.txt in its workdir, first line the error
    assert (adding / "gru_T6" / "error.txt").read_text().startswith("ConfigError: --cell: unknown cell 'nosuchcell'")
    with workdir_lock(running):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.tables", *SMOKE, f"--results_dir={tmp_path}", "--status"],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in proc.stdout.splitlines()[1:-1]}
    assert lines["rnn_T6"].startswith("finished: 0.3") and "solved 0/2" in lines["rnn_T6"]
    assert lines["rnn_T12"].startswith("running: step 10/20 (logged ") and ", 4 steps/s, ETA " in lines["rnn_T12"]
    assert lines["rnn_T12"].endswith(f"(pid {os.getpid()})")
    assert lines["gru_T6"].startswith("failed: ConfigError: --cell: unknown cell 'nosuchcell'")
    assert lines["gru_T12"] == "not started"
    assert proc.stdout.splitlines()[-1] == "1 finished, 1 running, 1 failed, 1 not started"
    assert not (adding / "gru_T12").exists()  # --status creates nothing


def fake_slurm(bin_dir: Path) -> None:
    """`sbatch` that answers as Slurm does (job ids 4242, 4243, ...) and keeps each script it was given; `squeue`
    that lists what the test writes to bin/queue; `srun` that drops its own options and runs the command."""
    bin_dir.mkdir()
    scripts = {
        "sbatch": f"""#!/bin/sh
n=$(cat {bin_dir}/count 2>/dev/null || echo 0)
echo $((n + 1)) > {bin_dir}/count
cp "$1" {bin_dir}/submitted_$n.sh
echo "Submitted batch job $((4242 + n))"
""",
        "squeue": f"#!/bin/sh\ncat {bin_dir}/queue 2>/dev/null\n",
        "srun": '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = --unbuffered ] && shift || shift 2; done\n'
        'exec "$@"\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)


@pytest.mark.slow
def test_the_slurm_launcher_submits_one_job_array_with_the_options_given(tmp_path):
    """The whole command against an `sbatch` on PATH that records its script (no cluster here): one array of
    the grid's size, partition, GPUs, time, parallelism and the passthrough options, the GPU memory policy;
    each array element's pickle is a PointJob of its point, whose checkpoint() is the same job again. A rerun
    submits only the points that Slurm no longer holds (squeue) and that have not finished."""
    bin_dir, results = tmp_path / "bin", tmp_path / "results"
    fake_slurm(bin_dir)
    cmd = [sys.executable, "-m", "benchmarks.tables", *SMOKE, f"--results_dir={results}", "--launcher=slurm"]
    cmd += ["--slurm_partition=gpu", "--slurm_gpus_per_job=2", "--slurm_time=30", "--slurm_array_parallelism=3"]
    cmd += ["--slurm_additional=account=lab,qos=high,exclude=node1,node2,cpus-per-task=8,exclusive="]
    slurm_env = env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 4 grid points as Slurm job array 4242:" in proc.stdout
    for i, point in enumerate(POINTS):
        assert f"  {point}: job 4242_{i}" in proc.stdout
    assert (
        "--status" in proc.stdout and "0 of 4 grid points finished, 0 running, 0 queued, 4 submitted now" in proc.stdout
    )
    sbatch = (bin_dir / "submitted_0.sh").read_text().splitlines()
    options = {line.split()[1] for line in sbatch if line.startswith("#SBATCH")}
    assert {
        "--array=0-3%3",
        "--partition=gpu",
        "--gpus-per-node=2",
        "--time=30",
        "--account=lab",
        "--qos=high",
        "--exclude=node1,node2",
        "--cpus-per-task=8",
        "--exclusive",
        "--signal=USR2@90",
        "--job-name=rnnlab-adding",
    } <= options
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}" in sbatch
    assert f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" in sbatch
    assert any(line.startswith("srun ") and "-m submitit.core._submit" in line for line in sbatch)
    assert io.read_json(results / "adding" / slurm.SLURM_JOBS) == {p: f"4242_{i}" for i, p in enumerate(POINTS)}

    for i, point in enumerate(POINTS):
        with open(results / "adding" / launch.JOBS_FOLDER / f"4242_{i}_submitted.pkl", "rb") as f:
            delayed = pickle.load(f)
        job = delayed.function
        assert isinstance(job, launch.PointJob) and Path(job.workdir) == (results / "adding" / point).absolute()
        cell, T = point.split("_T")
        assert job.config == GRID.points()[PointKey(cell, int(T))].to_dict()
        assert job.env_defaults == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} and job.env == {}
        again = job.checkpoint()
        assert again.function == job and again.function is not job and not again.args

    (bin_dir / "queue").write_text("4242_1 PENDING\n4242_2 RUNNING\n")  # 4242_0 and 4242_3 left the queue
    status = subprocess.run(
        [sys.executable, "-m", "benchmarks.tables", *SMOKE, f"--results_dir={results}", "--status"],
        cwd=ROOT,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = status.stdout.splitlines()
    assert lines[1:] == [
        "  rnn_T6   not started: submitted as Slurm job 4242_0, no longer queued",
        "  rnn_T12  queued: Slurm job 4242_1 PENDING",
        "  gru_T6   queued: Slurm job 4242_2 RUNNING",
        "  gru_T12  not started: submitted as Slurm job 4242_3, no longer queued",
        "2 not started, 2 queued",
    ], status.stdout
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "submitted 2 grid points as Slurm job array 4243:\n  rnn_T6: job 4243_0\n  gru_T12: job 4243_1" in proc.stdout
    )
    assert "0 of 4 grid points finished, 0 running, 2 queued, 2 submitted now" in proc.stdout
    assert "#SBATCH --array=0-1%2" in (bin_dir / "submitted_1.sh").read_text()

    # array element 4243_0 runs on a "node": the sbatch script itself, as Slurm would start it
    node = {
        "SLURM_ARRAY_JOB_ID": "4243",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_JOB_ID": "4243_0",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
    }
    job = subprocess.run(
        ["bash", str(bin_dir / "submitted_1.sh")],
        cwd=tmp_path,
        env={**slurm_env, **node},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert "adding point rnn_T6: " in job.stdout and "(XLA_PYTHON_CLIENT_PREALLOCATE=false)" in job.stdout
    results_json = io.read_json(results / "adding" / "rnn_T6" / "results.json")
    assert results_json["finished"] and results_json["execution"]["backend"] == "cpu"
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 1 grid point as Slurm job 4244:\n  gru_T12: job 4244\n" in proc.stdout  # no array of one
    assert "1 of 4 grid points finished, 0 running, 2 queued, 1 submitted now" in proc.stdout
    table = (results / "adding" / "adding.md").read_text()  # rendered from the finished point, the rest marked
    assert "| rnn | 0.303 ± 0.091<br>solved 0/2 | - (queued: Slurm job 4242_1 PENDING) |" in table
    assert "| gru | - (queued: Slurm job 4242_2 RUNNING) | - (not started: submitted as Slurm job 4244, no" in table


def test_memory_policy_per_job_and_sbatch_option_parsing(tmp_path):
    assert launch.memory_policy("local", 1) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert launch.memory_policy("local", 4) == {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225",
    }
    configs = {PointKey("rnn", 6): GRID.points()[PointKey("rnn", 6)]}
    (job,) = launch.make_jobs("adding", configs, tmp_path, "local", 3).values()
    assert job.env_defaults["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.3"
    assert job.env == {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}  # not submitit's ""
    assert job.workdir == str(point_dir(tmp_path / "adding", PointKey("rnn", 6)).absolute())
    parsed = slurm.parse_additional("mem=32G,nodelist=a,b,requeue=")
    assert parsed == {"mem": "32G", "nodelist": "a,b", "requeue": True}
    for bad in ("partition=x", "time=10", "array=0-3", "=x", "x", "exclusive=,a"):
        with pytest.raises(ConfigError, match="--slurm_additional"):
            slurm.parse_additional(bad)


@pytest.mark.slow
def test_bad_launcher_flags_are_one_line_errors_before_anything_runs(one_line_errors, tmp_path):
    out = f"--results_dir={tmp_path}/r"
    one_line_errors(
        [
            ("benchmarks.tables", [*SMOKE, out, "--launcher=cluster"], "--launcher='cluster': must be one of inline"),
            ("benchmarks.tables", [*SMOKE, out, "--workers=2"], "--workers: applies to --launcher=local only"),
            ("benchmarks.tables", [*SMOKE, out, "--launcher=local", "--workers=0"], "--workers=0: must be an integer"),
            ("benchmarks.tables", [*SMOKE, out, "--launcher=slurm"], "--launcher=slurm: no Slurm here"),
        ]
    )
    assert not (tmp_path / "r").exists()

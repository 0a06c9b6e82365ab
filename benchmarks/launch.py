"""Grid points of `benchmarks.tables` as jobs: parallel worker processes here, or a Slurm job array.

    python -m benchmarks.tables --table=adding --preset=quick --launcher=local --workers=2
    python -m benchmarks.tables --table=adding --preset=paper --launcher=slurm --slurm_partition=gpu
    python -m benchmarks.tables --table=adding --preset=paper --status

Both launchers go through submitit (`LocalExecutor`, `SlurmExecutor`), so the code path the tests
run here is the one that runs on a cluster. A job is one grid point: `PointJob`, a picklable
callable that runs `experiments.sweep.run_point` on the point's workdir, i.e. the ordinary
`train_and_evaluate` (or the gradients table's measurement) of that workdir. So a job is resumable,
skips a finished point, and skips a point another process holds (the workdir lock of
`experiments.lock`): launching a sweep twice, or while part of it runs, trains every point once.

Preemption and time limits: Slurm sends USR2 (submitit's `--signal=USR2@90`); the job turns it into
the SIGTERM that `train_and_evaluate` already handles (stop before the next step, save a
checkpoint, write results.json), then hands over to submitit, which calls `PointJob.checkpoint`
(the same job again) and requeues it: the requeued job resumes from that checkpoint.

GPU memory: several jobs may share one GPU (local workers; Slurm jobs packed on a node). JAX
preallocates 75% of a GPU per process by default, so each job gets, in its environment before
JAX starts, `XLA_PYTHON_CLIENT_PREALLOCATE=false` (allocate as needed) and, for N local workers,
`XLA_PYTHON_CLIENT_MEM_FRACTION=0.9/N` (a cap per worker). A value the user set wins.

Nothing here starts a JAX backend at import (JAX reads those variables when its backend starts):
unpickling a job imports this module, and the job sets its environment before its first computation.
"""

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from experiments import io
from experiments.config import ConfigError
from experiments.lock import held_by
from experiments.sweep import ERROR_FILE, PointKey, exit_stopped, point_dir, read_dict, record_error

LAUNCHERS = ("inline", "local", "slurm")
JOBS_FOLDER = ".submitit"  # under <results_dir>/<table>/: submitit's pickles and each job's stdout/stderr
SLURM_JOBS = "slurm_jobs.json"  # under <results_dir>/<table>/: the Slurm job id of each submitted point
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # submitit's LocalExecutor stops a job after 2 minutes by default
MEMORY_VARS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")
# sbatch options that a flag of ours, or submitit itself, writes: not accepted in --slurm_additional
SLURM_OWN = {
    "partition": "--slurm_partition",
    "time": "--slurm_time",
    "gpus_per_node": "--slurm_gpus_per_job",
    "gpus": "--slurm_gpus_per_job",
    "array": "--slurm_array_parallelism (submitit writes --array)",
    "output": "submitit (it writes each job's log path)",
    "error": "submitit (it writes each job's log path)",
    "open_mode": "submitit",
    "signal": "submitit (USR2 before the time limit, for the checkpoint)",
}


def memory_policy(launcher: str, workers: int = 1) -> dict[str, str]:
    """The GPU allocation variables each job of `launcher` gets (unless its environment already sets them)."""
    policy = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if launcher == "local" and workers > 1:
        policy["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / workers:.3g}"
    return policy


@dataclasses.dataclass
class PointJob:
    """One grid point as a job: `run_point` of its workdir. Picklable (submitit pickles it with its module
    path); `checkpoint` is submitit's requeue hook."""

    table: str
    config: dict[str, Any]
    workdir: str
    env_defaults: dict[str, str] = dataclasses.field(default_factory=dict)  # set unless already set
    env: dict[str, str | None] = dataclasses.field(default_factory=dict)  # set (None: unset) in any case

    @property
    def name(self) -> str:
        return Path(self.workdir).name

    def __call__(self) -> dict[str, Any]:
        if Path(self.workdir).is_dir() and (holder := held_by(self.workdir)) is not None:  # before importing JAX
            message = f"being trained by another process (pid {holder or '?'})"
            print(f"{self.name}: skipped: {message}", flush=True)
            return {"point": self.name, "job_id": _job_id(), "outcome": "busy", "message": message}
        for key, value in self.env.items():  # before JAX starts in this process
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for key, value in self.env_defaults.items():
            os.environ.setdefault(key, value)
        from absl import logging

        from experiments import compile_cache
        from experiments.train import StopSignal  # JAX is imported here, after the environment is set

        compile_cache.enable()  # the sweep's choice, from RNNLAB_COMPILATION_CACHE

        logging.set_verbosity(logging.INFO)  # training's progress lines, in the job's log
        policy = " ".join(f"{k}={os.environ[k]}" for k in MEMORY_VARS if k in os.environ)
        print(f"{self.table} point {self.name}: {self.workdir} ({policy or 'JAX default GPU memory'})", flush=True)

        usr_signal, preempted = _preemption_signal(), []
        previous = signal.getsignal(usr_signal)

        def on_preemption(signum: int, frame: Any) -> None:
            preempted.append((signum, frame))
            signal.raise_signal(signal.SIGTERM)  # training's own stop: save a checkpoint, return

        signal.signal(usr_signal, on_preemption)
        try:
            with StopSignal() as stop:  # a SIGTERM before training starts: train nothing
                summary = self._run(stop)
        finally:
            signal.signal(usr_signal, previous)
        if preempted and callable(previous):  # submitit's handler: checkpoint() and requeue, then exit
            previous(*preempted[0])
        return summary

    def _run(self, stop: Any) -> dict[str, Any]:
        from experiments.config import Config
        from experiments.sweep import run_point

        workdir = Path(self.workdir)
        summary = {"point": self.name, "job_id": _job_id()}
        if stop.received is not None:
            name = signal.Signals(stop.received).name
            return {**summary, "outcome": "interrupted", "message": f"{name} before it began; a relaunch starts it"}
        try:
            point = run_point(measure(self.table), Config.from_dict(self.config), workdir)
        except Exception as e:
            record_error(workdir, e)
            raise
        if "busy" in point:
            return {**summary, "outcome": "busy", "message": point["busy"]}
        (workdir / ERROR_FILE).unlink(missing_ok=True)
        results = point.get("results", {})
        if "stopped_by" not in point:  # finished before this job, or by another process while it started
            return {**summary, "outcome": "skipped", "message": "finished earlier"}
        outcome = "interrupted" if point["stopped_by"] else "trained"
        summary.update(outcome=outcome, steps_done=results.get("steps_done"), resumed_from=results.get("resumed_from"))
        if self.table == "gradients":
            summary["message"] = "measured"
        else:
            summary["message"] = f"steps {results.get('resumed_from')}->{results.get('steps_done')}" + (
                f" ({point['stopped_by']}; a relaunch resumes it)" if point["stopped_by"] else ""
            )
        return summary

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Submitit calls this on preemption or at the time limit: requeue the same job. The state is the
        workdir's own checkpoint, saved by the job when the signal stopped training."""
        import submitit

        return submitit.helpers.DelayedSubmission(PointJob(**dataclasses.asdict(self)), *args, **kwargs)


def _job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def _preemption_signal() -> signal.Signals:
    """The signal submitit sends before a time limit or preemption (USR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)


def make_jobs(table: str, configs: dict, results_dir: Path, launcher: str, workers: int = 1) -> dict[Any, PointJob]:
    env: dict[str, str | None] = {}
    if launcher == "local":  # LocalExecutor sets CUDA_VISIBLE_DEVICES="" (no GPU) unless told; keep ours
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    policy = memory_policy(launcher, workers)
    return {
        key: PointJob(table, config.to_dict(), str(point_dir(results_dir / table, key).absolute()), policy, env)
        for key, config in configs.items()
    }


# ---------------------------------------------------------------- local: submitit's LocalExecutor


def run_local(table: str, configs: dict, results_dir: Path, workers: int, poll_s: float = 0.2) -> dict[Any, dict]:
    """Every grid point as a job of submitit's LocalExecutor, at most `workers` at once; returns
    {key: summary}, a failed job's summary being {"outcome": "failed", "message": its error's first line}.

    SIGTERM/SIGINT: every running worker gets SIGTERM (it saves a checkpoint, writes results.json with
    its timing, and stops), no new one starts, and the sweep exits 128+signal in one line, as the
    inline sweep does; each stopped point is "interrupted" for --status and resumes on a relaunch.
    The workers run in their own session (`_own_session`): a Ctrl-C in the terminal, which signals
    the whole foreground process group, reaches this process only, so submitit's controllers do not
    die of it (a KeyboardInterrupt each) and kill their workers before they have saved."""
    import submitit

    from experiments.train import StopSignal

    folder = results_dir.absolute() / table / JOBS_FOLDER
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    jobs = make_jobs(table, configs, results_dir, "local", workers)
    pending, running, done = [], {}, {}
    for key, job in jobs.items():  # no worker for a point that is finished or that another process trains
        status = point_status(table, configs[key], Path(job.workdir))
        if status.state in ("finished", "running"):
            outcome = "skipped" if status.state == "finished" else "busy"
            done[key] = {"point": job.name, "job_id": None, "outcome": outcome, "message": status.line}
            print(f"  {job.name}: {outcome}: {status.line}", flush=True)
        else:
            pending.append((key, job))
    # longest first (steps x length x layers x members): the short points fill the workers' last minutes
    pending.sort(key=lambda kj: -relative_cost(configs[kj[0]]))
    with StopSignal() as stop:
        while pending or running:
            while pending and len(running) < workers and stop.received is None:
                key, job = pending.pop(0)
                with _own_session():
                    running[key] = executor.submit(job)
            for key in [k for k, j in running.items() if j.done()]:
                done[key] = _local_summary(jobs[key], running.pop(key))
                print(f"  {jobs[key].name}: {done[key]['outcome']}: {done[key]['message']}", flush=True)
            if stop.received is not None and (running or pending):
                for job in running.values():
                    if job._process is not None and job._process.poll() is None:
                        job._process.send_signal(signal.SIGTERM)  # the controller forwards it to the worker
                pending = []
                while any(not j.done() for j in running.values()):
                    time.sleep(poll_s)
                continue
            time.sleep(poll_s if running else 0)
    if stop.received is not None:
        finished = sum(s["outcome"] in ("trained", "skipped") for s in done.values())
        exit_stopped(stop.received, "the workers stopped (each saving a checkpoint)", finished, len(configs), table)
    return done


def relative_cost(config: Any) -> float:
    """A point's training work in step-cell units, steps x T x layers x (seeds x rates)^(1/2): only to order
    points (the members of one program cost less than as many programs)."""
    rates = config.learning_rate if isinstance(config.learning_rate, list | tuple) else (config.learning_rate,)
    return config.steps * config.seq_len * config.num_layers * (config.num_seeds * len(rates)) ** 0.5


@contextlib.contextmanager
def _own_session() -> Any:
    """Within it, submitit's LocalExecutor starts its controller process (and so the worker under it) in a new
    session (`start_new_session`), outside the terminal's foreground process group."""
    import submitit.local.local as local

    class NewSession:
        def __getattr__(self, name: str) -> Any:
            return getattr(subprocess, name)

        @staticmethod
        def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 - subprocess's name
            return subprocess.Popen(*args, **kwargs, start_new_session=True)

    original = local.subprocess
    local.subprocess = NewSession()
    try:
        yield
    finally:
        local.subprocess = original


def _local_summary(point: PointJob, job: Any) -> dict[str, Any]:
    try:
        return job.result()
    except Exception as e:  # the job raised (error.txt has it), or its worker died (killed, out of memory)
        error = Path(point.workdir) / ERROR_FILE
        if error.exists():
            message = _first_line(error)
        else:  # SIGKILL, the out-of-memory killer: nothing was written (the controller's exit code is its own)
            message = f"the worker ended without a result (killed?); its log: {job.paths.stderr}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"point": point.name, "job_id": job.job_id, "outcome": "failed", "message": message, "detail": first,
                "log": str(job.paths.stderr)}  # fmt: skip


# ---------------------------------------------------------------- slurm: submitit's SlurmExecutor


SCHEDULER_TIMEOUT_S = 60  # default of --slurm_timeout: the longest any sbatch or squeue call may take


class SchedulerError(RuntimeError):
    """A Slurm command failed, hung or answered what we cannot read; the message is one line with its own words."""


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 120
    array_parallelism: int = 256
    additional: dict[str, str | bool] = dataclasses.field(default_factory=dict)
    timeout_s: float = SCHEDULER_TIMEOUT_S


def parse_additional(value: str | None) -> dict[str, str | bool]:
    """`--slurm_additional=key=value,...`: other sbatch options (`--key=value`; `-` or `_` in keys). A part
    without `=` continues the previous value (`exclude=node1,node2`); `key=` is a switch (`exclusive=`)."""
    if value is None or not value.strip():
        return {}
    if bad := [c for c in value if ord(c) < 32 or ord(c) == 127]:
        raise ConfigError(
            f"--slurm_additional={value!r}: holds a control character ({bad[0]!r}); each option is one line of the "
            "sbatch script, where a newline would end it and turn the rest into commands"
        )
    options: dict[str, str | bool] = {}
    last = None
    for part in value.split(","):
        key, eq, val = part.strip().partition("=")
        if not eq:
            if last is None or options[last] is True or not key:
                raise ConfigError(
                    f"--slurm_additional={value!r}: must be key=value,... (sbatch options without --; key= for a "
                    "switch such as exclusive=)"
                )
            options[last] = f"{options[last]},{key}"  # exclude=node1,node2
            continue
        name = key.lstrip("-").replace("-", "_")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ConfigError(f"--slurm_additional={value!r}: {key!r} is not an sbatch option name")
        if name in SLURM_OWN:
            raise ConfigError(f"--slurm_additional={value!r}: {key} is set by {SLURM_OWN[name]}")
        options[name] = val if val else True
        last = name
    return options


def slurm_available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("srun") is not None


def slurm_executor(
    folder: Path, options: SlurmOptions, job_name: str, root: Path | None = None, python: str | None = None
) -> Any:
    """submitit's SlurmExecutor for one table's jobs: partition, GPUs, time, array parallelism, the extra
    sbatch options, and setup lines that make the repo importable (`root`, default this repository) and set
    the GPU memory policy; jobs run `python` (default this interpreter)."""
    import submitit

    root = root or Path(__file__).resolve().parents[1]
    # every path the script names is quoted: a repository or interpreter under "My Projects/" runs as any other
    executor = submitit.SlurmExecutor(folder=folder, python=shlex.quote(python or sys.executable))
    setup = [f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    setup += [f"export {k}=${{{k}:-{v}}}" for k, v in memory_policy("slurm").items()]
    parameters: dict[str, Any] = {
        "job_name": job_name,
        "time": options.time_min,
        "array_parallelism": options.array_parallelism,
        "setup": setup,
        "additional_parameters": dict(options.additional),
    }
    if options.gpus_per_job:
        parameters["gpus_per_node"] = options.gpus_per_job
    if options.partition:
        parameters["partition"] = options.partition
    executor.update_parameters(**parameters)
    return executor


def submit_slurm(table: str, configs: dict, results_dir: Path, options: SlurmOptions) -> dict[Any, str]:
    """Submit every point of `configs` as one Slurm job array; returns {key: job id} and records the ids
    in `<results_dir>/<table>/slurm_jobs.json` (for --status)."""
    folder = results_dir.absolute() / table
    executor = slurm_executor(folder / JOBS_FOLDER, options, f"rnnlab-{table}")
    jobs = make_jobs(table, configs, results_dir, "slurm")
    submitted = _submit_array(executor, list(jobs.values()), options.timeout_s)
    ids = {key: job.job_id for key, job in zip(jobs, submitted, strict=True)}
    recorded = _read_object(folder / SLURM_JOBS)
    recorded.update({jobs[key].name: job_id for key, job_id in ids.items()})
    io.write_json(folder / SLURM_JOBS, recorded)
    return ids


# Runs a scheduler command (argv[2:]) for at most argv[1] seconds: its own process group, killed whole at the
# limit (exit 124). Everything it printed goes to stdout, so that submitit (which prints a failed command's stderr
# itself) leaves the one line of the error to us.
_TIMED_CALL = """
import os, signal, subprocess, sys
try:
    proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
except OSError as e:
    print(f"cannot run {sys.argv[2]}: {e.strerror}"); sys.exit(127)
try:
    out, _ = proc.communicate(timeout=float(sys.argv[1]))
except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    print(f"{sys.argv[2]} did not answer within {sys.argv[1]} s"); sys.exit(124)
sys.stdout.write(out.decode(errors="replace")); sys.exit(proc.returncode)
"""


def timed_command(command: list[str], timeout_s: float) -> list[str]:
    """`command` run for at most `timeout_s` seconds (`_TIMED_CALL`): exit 124 at the limit, its output on stdout."""
    return [sys.executable, "-c", _TIMED_CALL, f"{timeout_s:g}", *command]


@contextlib.contextmanager
def _sbatch_within(timeout_s: float) -> Iterator[None]:
    """While inside, submitit's SlurmExecutor runs sbatch through `timed_command`. The class, not one executor:
    submitit submits a job array through a SlurmExecutor of its own making (a copy of ours)."""
    from submitit.slurm.slurm import SlurmExecutor

    plain = SlurmExecutor._make_submission_command

    def timed(self: Any, path: Path) -> list[str]:
        return timed_command(plain(self, path), timeout_s)

    SlurmExecutor._make_submission_command = timed
    try:
        yield
    finally:
        SlurmExecutor._make_submission_command = plain


def _submit_array(executor: Any, jobs: list[PointJob], timeout_s: float) -> list[Any]:
    """`executor.submit_array(jobs)` with sbatch bounded by `timeout_s`; SchedulerError, one line quoting sbatch,
    when it fails, hangs, or answers without a job id."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        with _sbatch_within(timeout_s):
            return executor.submit_array(jobs)
    except FailedJobError as e:
        cause = e.__cause__
        code = getattr(cause, "returncode", None)
        said = _one_line(getattr(cause, "output", None) or str(e)) or "no message"
        if code == 124:
            raise SchedulerError(
                f"--launcher=slurm: {said} (--slurm_timeout={timeout_s:g}); the job array may or may not have been "
                "queued: look with squeue before submitting again"
            ) from None
        raise SchedulerError(f"--launcher=slurm: sbatch refused the job array (exit {code}): {said}") from None
    except FailedSubmissionError as e:
        output = re.search(r'sbatch output "(.*)"', str(e), re.S)
        said = _one_line(output[1] if output else str(e)) or "nothing"
        raise SchedulerError(
            f"--launcher=slurm: sbatch answered {said!r}, which names no job id; the job array may have been "
            "queued: look with squeue before submitting again"
        ) from None


def _one_line(text: str | bytes) -> str:
    """A command's output as one line: its non-empty lines joined with ' / ', at most 400 characters."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    joined = " / ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return joined if len(joined) <= 400 else joined[:397] + "..."


def _read_object(path: Path) -> dict:
    """A JSON object from `path`; {} when there is none (missing, damaged, or not a regular file)."""
    return read_dict(path) or {}


# ---------------------------------------------------------------- --status


@dataclasses.dataclass(frozen=True)
class PointStatus:
    state: str  # finished | running | queued | unknown | failed | interrupted | other settings | damaged | not started
    line: str  # what --status prints after the point's name


def point_status(
    table: str, config: Any, workdir: Path, now: float | None = None, queue: "SlurmQueue | None" = None
) -> PointStatus:
    """What a grid point is doing, from its files and its lock (read only: the lock is probed, shared,
    for an instant), and `queue`, what squeue said of the recorded Slurm jobs (`slurm_queue`)."""
    from experiments.schema import DamagedError
    from experiments.sweep import finished, load_point, point_entry, task_of
    from experiments.train import NotExtendableError, check_resumable, steps_done

    now = time.time() if now is None else now
    holder = held_by(workdir) if workdir.is_dir() else None
    if holder is not None:
        return PointStatus("running", _running(table, config, workdir, holder, now))
    if workdir.is_dir() and finished(measure(table), config, workdir):
        task = task_of(config)  # the sweep's own task: nothing named in the point's files is imported
        try:
            point = load_point(measure(table), workdir, task)
        except DamagedError as e:
            return PointStatus("damaged", f"damaged: {e.short}")
        if table == "gradients":
            return PointStatus("finished", "finished")
        return PointStatus("finished", f"finished: {point_entry(point, task).replace('<br>', ', ')}")
    job = _read_object(workdir.parent / SLURM_JOBS).get(workdir.name)
    if queue and job in queue.states:  # submitted, not started yet (or starting): submitting again would queue it twice
        return PointStatus("queued", f"queued: Slurm job {job} {queue.states[job]}")
    if queue and isinstance(job, str) and (why := queue.unknown_reason(job)):  # it may be queued: never resubmitted
        return PointStatus("unknown", f"submitted as Slurm job {job}, queue state unknown: {why}")
    if workdir.exists() or workdir.is_symlink():
        if not workdir.is_dir():
            return PointStatus("damaged", "damaged: a file where the point's folder goes")
    else:
        return PointStatus("not started", "not started" + _slurm_job(job, queue))
    try:
        check_resumable(config, workdir)
    except DamagedError as e:
        return PointStatus("damaged", f"damaged: {e.short}")
    except NotExtendableError as e:
        return PointStatus("other settings", f"refused: {str(e).split(': ', 1)[-1]}")
    except ConfigError as e:
        return PointStatus("other settings", f"holds a run with other settings: {str(e).split(': ', 1)[-1]}")
    error = workdir / ERROR_FILE
    if error.exists() or error.is_symlink():
        return PointStatus("failed", f"failed: {_first_line(error)} (see {error})")
    stopped = (_read_object(workdir / "results.json").get("stopped_by") or None) if table != "gradients" else None
    if table != "gradients" and ((step := steps_done(workdir)) or stopped):
        by = f" by {stopped}" if stopped else ""
        return PointStatus("interrupted", f"interrupted{by} at step {step}/{config.steps}; a relaunch resumes it")
    return PointStatus("not started", "not started" + _slurm_job(job, queue))


def _first_line(error: Path) -> str:
    """The first line of an error.txt (its error), whatever the file holds."""
    from experiments.schema import DamagedError, read_text

    try:
        text = read_text(error, errors="replace")  # an error message in another encoding is still shown
    except DamagedError as e:  # a folder, a link, a FIFO, ...
        return f"(unreadable {error.name}: {e.why})"
    except OSError as e:
        return f"(unreadable {error.name}: {e.strerror})"
    return " ".join((text.strip().splitlines() or ["(empty or unreadable error.txt)"])[0].split())[:300]


def _running(table: str, config: Any, workdir: Path, holder: int, now: float) -> str:
    pid = f"pid {holder}" if holder else "pid ?"
    if table == "gradients":
        return f"running: measuring ({pid})"
    from experiments.schema import DamagedError, check_metrics_record, read_records

    metrics = workdir / "metrics.jsonl"
    try:
        records = read_records(metrics, check_metrics_record)
    except (OSError, DamagedError) as e:
        return f"running, but its {metrics.name} is damaged ({getattr(e, 'why', e)}) ({pid})"
    step = max((r["step"] for r in records), default=None)
    if not step:
        return f"running: compiling, no training step logged yet ({pid})"
    rates = [r["steps_per_s"] for r in records if r["step"] == step and r.get("steps_per_s")]
    rate = rates[0] if rates else None
    since = max(0.0, now - metrics.stat().st_mtime)
    if rate:
        eta = max(0.0, (config.steps - step) / rate - since)
        speed = f"{rate:.3g} steps/s, ETA {_duration(eta)}"
    else:
        speed = "steps/s -, ETA -"
    return f"running: step {step}/{config.steps} (logged {_duration(since)} ago), {speed} ({pid})"


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.1f}m" if seconds >= 90 else f"{seconds:.0f}s"


def _slurm_job(job: str | None, queue: "SlurmQueue | None") -> str:
    if not job:
        return ""
    return f": submitted as Slurm job {job}{'' if queue is None else ', no longer queued'}"


@dataclasses.dataclass(frozen=True)
class SlurmQueue:
    """What squeue said of the recorded jobs: `states`, {job id: state} of the jobs Slurm still holds, and
    `unknown`, {array id: why} of the arrays whose state squeue did not give (missing, failed or hung)."""

    states: dict[str, str] = dataclasses.field(default_factory=dict)
    unknown: dict[str, str] = dataclasses.field(default_factory=dict)

    def unknown_reason(self, job: str) -> str | None:
        return self.unknown.get(job.split("_")[0])


def slurm_queue(job_ids: list[str], timeout_s: float = SCHEDULER_TIMEOUT_S) -> SlurmQueue | None:
    """The jobs among `job_ids` (array elements `A_i`) that Slurm still holds (pending, running, ...), by `squeue`,
    one call per array, each bounded by `timeout_s`; None when no job was recorded.

    squeue's "Invalid job id" means that array has left the queue (Slurm forgot it). Any other failure, a
    hang, output that is not `job state` lines, or no squeue at all leaves the array's state unknown: never
    read as "no longer queued", which would submit its points a second time."""
    if not job_ids:
        return None
    arrays = sorted({str(job).split("_")[0] for job in job_ids})
    if shutil.which("squeue") is None:
        return SlurmQueue(unknown=dict.fromkeys(arrays, "squeue is not on PATH"))
    queue = SlurmQueue()
    for array in arrays:
        command = ["squeue", "--noheader", "--array", "--format=%i %T", f"--jobs={array}"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, errors="replace")
        except subprocess.TimeoutExpired:
            queue.unknown[array] = f"squeue did not answer within {timeout_s:g} s (--slurm_timeout)"
            continue
        except OSError as e:
            queue.unknown[array] = f"cannot run squeue: {e.strerror or e}"
            continue
        if proc.returncode:
            said = _one_line(proc.stderr or proc.stdout)
            if "invalid job id" not in said.lower():
                queue.unknown[array] = f"squeue failed (exit {proc.returncode}): {said or 'no message'}"
            continue
        lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
        if any(len(parts) != 2 for parts in lines):
            queue.unknown[array] = f"squeue answered what is not 'job state' lines: {_one_line(proc.stdout)}"
            continue
        queue.states.update(dict(lines))
    return queue


def status_points(
    table: str, configs: dict[PointKey, Any], results_dir: Path, timeout_s: float = SCHEDULER_TIMEOUT_S
) -> dict[PointKey, PointStatus]:
    queue = slurm_queue(list(_read_object(results_dir / table / SLURM_JOBS).values()), timeout_s)
    return {key: point_status(table, c, point_dir(results_dir / table, key), queue=queue) for key, c in configs.items()}


def measure(table: str) -> str:
    """What a table's points do: the "gradients" table measures at initialisation, any other trains."""
    return "gradients" if table == "gradients" else "train"

"""`--launcher=local`: a table's grid points as jobs of submitit's `LocalExecutor`, `--workers` at once.

python -m benchmarks.tables --table=adding --preset=quick --launcher=local --workers=2
"""

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.launch import JOBS_FOLDER, PointJob, make_jobs
from benchmarks.point_status import first_line, point_status
from experiments.sweep import ERROR_FILE, exit_stopped

LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # submitit's LocalExecutor stops a job after 2 minutes by default


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

    from experiments.trainer import StopSignal

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
            message = first_line(error)
        else:  # SIGKILL, the out-of-memory killer: nothing was written (the controller's exit code is its own)
            message = f"the worker ended without a result (killed?); its log: {job.paths.stderr}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {
            "point": point.name,
            "job_id": job.job_id,
            "outcome": "failed",
            "message": message,
            "detail": first,
            "log": str(job.paths.stderr),
        }

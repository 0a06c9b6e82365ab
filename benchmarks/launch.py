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

Here: a grid point as a job (`PointJob`) and each job's environment. The local launcher is
`benchmarks.local_workers`, the Slurm one `benchmarks.slurm`, and what --status says of a point
`benchmarks.point_status`.

Nothing here starts a JAX backend at import (JAX reads those variables when its backend starts):
unpickling a job imports this module, and the job sets its environment before its first computation.
"""

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

from experiments.grid import point_dir
from experiments.lock import held_by
from experiments.sweep import ERROR_FILE, record_error

LAUNCHERS = ("inline", "local", "slurm")
JOBS_FOLDER = ".submitit"  # under <results_dir>/<table>/: submitit's pickles and each job's stdout/stderr
MEMORY_VARS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def measure(table: str) -> str:
    """What a table's points do: the "gradients" table measures at initialisation, any other trains."""
    return "gradients" if table == "gradients" else "train"


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
        from experiments.trainer import StopSignal  # JAX is imported here, after the environment is set

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
    """A `PointJob` for each point of `configs` (key -> Config), with `launcher`'s environment."""
    env: dict[str, str | None] = {}
    if launcher == "local":  # LocalExecutor sets CUDA_VISIBLE_DEVICES="" (no GPU) unless told; keep ours
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    policy = memory_policy(launcher, workers)
    return {
        key: PointJob(table, config.to_dict(), str(point_dir(results_dir / table, key).absolute()), policy, env)
        for key, config in configs.items()
    }

"""`--launcher=slurm`: a table's grid points as one Slurm job array (submitit's `SlurmExecutor`), and what
squeue says of the jobs recorded; every sbatch and squeue call is bounded by `--slurm_timeout`.

    python -m benchmarks.tables --table=adding --preset=paper --launcher=slurm --slurm_partition=gpu
"""

import contextlib
import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.launch import JOBS_FOLDER, PointJob, make_jobs, memory_policy
from experiments import io
from experiments.config import ConfigError
from experiments.sweep import read_dict

SLURM_JOBS = "slurm_jobs.json"  # under <results_dir>/<table>/: the Slurm job id of each submitted point
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
    recorded = read_dict(folder / SLURM_JOBS) or {}
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
        said = one_line(getattr(cause, "output", None) or str(e)) or "no message"
        if code == 124:
            raise SchedulerError(
                f"--launcher=slurm: {said} (--slurm_timeout={timeout_s:g}); the job array may or may not have been "
                "queued: look with squeue before submitting again"
            ) from None
        raise SchedulerError(f"--launcher=slurm: sbatch refused the job array (exit {code}): {said}") from None
    except FailedSubmissionError as e:
        output = re.search(r'sbatch output "(.*)"', str(e), re.S)
        said = one_line(output[1] if output else str(e)) or "nothing"
        raise SchedulerError(
            f"--launcher=slurm: sbatch answered {said!r}, which names no job id; the job array may have been "
            "queued: look with squeue before submitting again"
        ) from None


def one_line(text: str | bytes) -> str:
    """A command's output as one line: its non-empty lines joined with ' / ', at most 400 characters."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    joined = " / ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return joined if len(joined) <= 400 else joined[:397] + "..."


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
            said = one_line(proc.stderr or proc.stdout)
            if "invalid job id" not in said.lower():
                queue.unknown[array] = f"squeue failed (exit {proc.returncode}): {said or 'no message'}"
            continue
        lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
        if any(len(parts) != 2 for parts in lines):
            queue.unknown[array] = f"squeue answered what is not 'job state' lines: {one_line(proc.stdout)}"
            continue
        queue.states.update(dict(lines))
    return queue

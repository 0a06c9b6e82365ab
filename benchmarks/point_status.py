"""What a grid point is doing, for `--status`, `--render_only` and the launchers: finished, running (step,
steps/s, ETA), queued, interrupted, failed (its error), damaged, not started; read from its files, its lock
and squeue, never changing them.
"""

import dataclasses
import time
from pathlib import Path
from typing import Any

from benchmarks.launch import measure
from benchmarks.slurm import SCHEDULER_TIMEOUT_S, SLURM_JOBS, SlurmQueue, slurm_queue
from experiments.config import ConfigError
from experiments.grid import PointKey, point_dir
from experiments.lock import held_by
from experiments.sweep import ERROR_FILE, read_dict


@dataclasses.dataclass(frozen=True)
class PointStatus:
    state: str  # finished | running | queued | unknown | failed | interrupted | other settings | damaged | not started
    line: str  # what --status prints after the point's name


def point_status(
    table: str, config: Any, workdir: Path, now: float | None = None, queue: SlurmQueue | None = None
) -> PointStatus:
    """What a grid point is doing, from its files and its lock (read only: the lock is probed, shared,
    for an instant), and `queue`, what squeue said of the recorded Slurm jobs (`slurm_queue`)."""
    from experiments.grid import task_of
    from experiments.resume import NotExtendableError, check_resumable, steps_done
    from experiments.schema import DamagedError
    from experiments.sweep import finished, load_point
    from experiments.sweep_report import point_entry

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
    job = (read_dict(workdir.parent / SLURM_JOBS) or {}).get(workdir.name)
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
        return PointStatus("failed", f"failed: {first_line(error)} (see {error})")
    stopped = ((read_dict(workdir / "results.json") or {}).get("stopped_by") or None) if table != "gradients" else None
    if table != "gradients" and ((step := steps_done(workdir)) or stopped):
        by = f" by {stopped}" if stopped else ""
        return PointStatus("interrupted", f"interrupted{by} at step {step}/{config.steps}; a relaunch resumes it")
    return PointStatus("not started", "not started" + _slurm_job(job, queue))


def first_line(error: Path) -> str:
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


def _slurm_job(job: str | None, queue: SlurmQueue | None) -> str:
    if not job:
        return ""
    return f": submitted as Slurm job {job}{'' if queue is None else ', no longer queued'}"


def status_points(
    table: str, configs: dict[PointKey, Any], results_dir: Path, timeout_s: float = SCHEDULER_TIMEOUT_S
) -> dict[PointKey, PointStatus]:
    """`point_status` of every point of `configs`, with one squeue call per recorded job array."""
    queue = slurm_queue(list((read_dict(results_dir / table / SLURM_JOBS) or {}).values()), timeout_s)
    return {key: point_status(table, c, point_dir(results_dir / table, key), queue=queue) for key, c in configs.items()}

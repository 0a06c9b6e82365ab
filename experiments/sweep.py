"""Running a sweep: every grid point (`experiments.grid`) checked before the first one trains, then trained (or
measured) point by point, and read back.

Each grid point is a workdir `<out_dir>/<row>_T<T>/`: a finished one is skipped, an unfinished one resumes, so a
sweep killed midway loses nothing. `experiments.sweep_report` renders the table from the points read back;
`benchmarks.tables` (presets, launchers) and `experiments.compare` (one length) are these modules with a command
line.
"""

import contextlib
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from experiments import formats, io, schema
from experiments.config import Config, ConfigError, check_workdir
from experiments.grid import PointKey, point_dir, task_of
from experiments.lock import WorkdirLockedError, workdir_lock
from experiments.validation import validate_cells
from plugins import SignalExit
from tasks import Task

ERROR_FILE = "error.txt"  # a point's error, first line then traceback (for --status)


def check_points(
    points: dict[PointKey, Config],
    out_dir: str | Path,
    measure: str,
    read_only: bool = False,
    flag: str = "results_dir",
    own_flags: Mapping[str, str] | None = None,
) -> Path:
    """Every point before the first one trains: its config (an error names --cells or --seq_lens), its
    folder, and a run already there with other settings (refused, as `experiments.train` would). Returns
    `out_dir` (the --`flag`), created once every point is valid; `read_only` (--status) creates and refuses nothing.

    Errors name the tool's flags: --`flag` for the folder, and a Config field by its flag when `own_flags`
    ({field: the tool's flag for it}; None: every field is a flag of its name) has one, else as the sweep's
    setting."""
    cells = list(dict.fromkeys(c.cell for c in points.values()))
    for key, config in points.items():
        try:
            validate_cells(config, [config.cell], listed=cells, memory=not read_only)
        except ConfigError as e:  # name a flag the sweep's tools have: --seq_lens, not --seq_len or --diag_every
            if e.field in ("seq_len", "diag_every") and e.shown is not None and e.shown.isdigit():
                raise e.relabel(f"--seq_lens (T={key.seq_len})") from None
            raise
    if len({k.dirname for k in points}) < len(points):
        raise ConfigError(f"--cells: two rows share a folder name (':' '.' ',' become '_' in {out_dir})")
    if read_only:
        if not str(out_dir).strip() or Path(out_dir).is_file():
            raise ConfigError(f"--{flag}={str(out_dir)!r}: must name a folder")
        return Path(out_dir)
    from experiments.resume import check_layout, check_resumable

    out_dir = check_workdir(out_dir, flag)
    for key, config in points.items():
        workdir = point_dir(out_dir, key)
        if (workdir.exists() or workdir.is_symlink()) and not workdir.is_dir():
            raise ConfigError(f"--{flag}={out_dir}: {workdir} is a file where a grid point's folder goes; move it away")
        if measure == "gradients":
            check_layout(config, workdir, flag=flag, gradients=True)
        else:
            check_resumable(config, workdir, flag=flag, field_name=_field_namer(own_flags))
    return out_dir


def _field_namer(own_flags: Mapping[str, str] | None) -> Callable[[str], str]:
    """How an error names a Config field in a sweep: by the tool's flag for it (--steps, --cells), else as a
    setting of the sweep (`eval_every (set by the sweep, not a flag)`)."""

    def name(field: str) -> str:
        if own_flags is None or field in own_flags:
            return f"--{field if own_flags is None else own_flags[field]}"
        return f"{field} (set by the sweep, not a flag)"

    return name


@contextlib.contextmanager
def exit_on_signal(doing: str) -> Iterator[None]:
    """SIGTERM/SIGINT while `doing` (checking or reading points, before a sweep installs its own stop): one line on
    stderr, exit code 128 + signal. What was being written is intact (every write is atomic)."""

    def stop(signum: int, frame: Any) -> NoReturn:
        signal.signal(signum, signal.SIG_IGN)  # a second one while exiting changes nothing
        print(f"error: {signal.Signals(signum).name} received while {doing}; rerun the same command", file=sys.stderr)
        raise SignalExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_point(measure: str, config: Config, workdir: Path) -> dict[str, Any]:
    """Train (or measure, for "gradients") one grid point unless it already finished.

    A point another process holds (`experiments.lock`) is skipped, saying so: it comes back as
    {"busy": message} and the table marks it. A point stopped by a signal comes back with its
    results ("stopped_by" set) for the sweep to stop.
    """
    from experiments.trainer import train_and_evaluate

    if finished(measure, config, workdir):
        try:
            point = load_point(measure, workdir, task_of(config))
        except schema.DamagedError as e:
            print(f"  {workdir.name}: finished earlier, skipped: damaged: {e.short}", flush=True)
            return {"busy": f"damaged: {e.short}"}
        print(f"  {workdir.name}: finished earlier, skipped", flush=True)
        return point
    t0, stopped_by, trained = time.perf_counter(), None, None
    try:
        if measure == "gradients":
            _measure_gradients(config, workdir)
        else:
            results = train_and_evaluate(config, workdir)
            stopped_by, trained = results["stopped_by"], results["session_steps"]
    except WorkdirLockedError as e:
        pid = e.pid or "?"
        print(f"  {workdir.name}: skipped: {workdir} is being trained by another process (pid {pid})", flush=True)
        return {"busy": f"being trained by another process (pid {pid})"}
    if trained == 0 and not stopped_by:  # another process finished it between the check above and the lock
        print(f"  {workdir.name}: finished by another process meanwhile, skipped", flush=True)
        return load_point(measure, workdir, task_of(config))
    print(f"  {workdir.name}: {time.perf_counter() - t0:.0f}s", flush=True)
    return {**load_point(measure, workdir, task_of(config)), "stopped_by": stopped_by}


def _measure_gradients(config: Config, workdir: Path) -> None:
    from experiments.diagnostics import TrainingRecorder
    from experiments.experiment import Experiment

    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(workdir, "results_dir"):
        exp = Experiment(config)
        params = exp.compiled_init()(*exp.member_inputs()).params
        io.write_json(workdir / "config.json", formats.stamp(config.to_dict()))
        TrainingRecorder(exp, workdir, jacobian_points_count=8)(0, params)


def finished(measure: str, config: Config, workdir: Path) -> bool:
    """Whether `workdir` holds this config's finished point (a damaged file means unfinished: `load_point`
    and `experiments.resume.check_resumable` say what is wrong with it)."""
    done = workdir / ("diagnostics.jsonl" if measure == "gradients" else "results.json")
    saved = read_dict(workdir / "config.json")
    if saved is None or not done.is_file() or _config_of(saved) != config:
        return False
    if measure == "gradients":
        return True
    try:
        return schema.read_results(done)["steps_done"] >= config.steps
    except (OSError, schema.DamagedError):
        return False


def _config_of(saved: dict) -> Config | None:
    """The Config a config.json holds; None when it does not hold one (a field of the wrong type)."""
    try:
        return Config.from_dict(schema.check_config(saved))
    except (TypeError, ValueError):
        return None


def read_dict(path: Path) -> dict | None:
    """A JSON object from `path`; None if it is missing, damaged or not an object (or not a regular file)."""
    try:
        value = json.loads(schema.read_text(path))
    except (OSError, ValueError, RecursionError):  # schema.DamagedError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def load_point(measure: str, workdir: Path, task: Task | None = None) -> dict[str, Any]:
    """A point's files, checked (`experiments.schema`; `task`: the metrics its results must hold, from the
    sweep's own config): its results and metrics records (trained points) and its gradient diagnostics at
    initialisation (step 0) and at the last step recorded after it. `schema.DamagedError` if a file is damaged.

    Diagnostics recorded from a later step only (a run resumed with --diag_every turned on) have no "init"."""
    diag = schema.read_records(workdir / "diagnostics.jsonl", schema.check_diagnostics_record)
    last = max((r["step"] for r in diag), default=0)
    point = {
        "diag_init": [r for r in diag if r["step"] == 0],
        "diag_end": [r for r in diag if r["step"] == last and last > 0],
    }
    if measure != "gradients":
        metrics = (task.headline, *task.table_metrics) if task else ()
        point["results"] = schema.read_results(workdir / "results.json", metrics)
        point["metrics"] = schema.read_records(
            workdir / "metrics.jsonl", lambda r: schema.check_metrics_record(r, metrics[:1])
        )
        if not point["metrics"]:
            raise schema.DamagedError(workdir / "metrics.jsonl", "no records")
    return point


def run_inline(measure: str, points: dict[PointKey, Config], out_dir: Path, what: str) -> dict[PointKey, dict]:
    """Every point in turn, in this process. SIGTERM/SIGINT stop the whole sweep, whether they arrive during a
    point (which saves its checkpoint) or between points: one line on stderr, exit code 128+signal, and no
    table is written, so a part-trained point is never published. The same command resumes."""
    from experiments.trainer import StopSignal

    loaded = {}
    with StopSignal() as stop:
        for key, config in points.items():
            if stop.received is None:
                workdir = point_dir(out_dir, key)
                try:
                    loaded[key] = run_point(measure, config, workdir)
                except Exception as e:  # for --status; the traceback goes on as before
                    record_error(workdir, e)
                    raise
                if loaded[key].get("stopped_by"):
                    stop.received = signal.Signals[loaded[key]["stopped_by"]].value
            if stop.received is not None:
                done = sum(not p.get("stopped_by") and "busy" not in p for p in loaded.values())
                exit_stopped(stop.received, "the sweep stopped", done, len(points), what)
    return loaded


def record_error(workdir: Path, error: BaseException) -> None:
    """`error.txt` in the workdir: the error in one line, then the traceback (for --status)."""
    first = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {first}\n\n" + "".join(traceback.format_exception(error))
    with contextlib.suppress(OSError):  # a full disk: the job's log still has it
        io.atomic_write(workdir / ERROR_FILE, lambda f: f.write(text))


def exit_stopped(signum: int, what: str, finished: int, total: int, table: str) -> NoReturn:
    """One line saying a sweep stopped on a signal and how to resume it; exit 128 + signal."""
    print(
        f"error: {signal.Signals(signum).name} received: {what} with {finished} of {total} grid points done; "
        f"{table}.md was not written; rerun the same command to resume",
        file=sys.stderr,
    )
    sys.exit(128 + signum)

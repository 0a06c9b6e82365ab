"""The training loop: `train_and_evaluate(config, workdir)` trains every member of a config and writes its files.

Writes to the workdir: config.json, metrics.jsonl (one record per member per logging step),
checkpoints/ and results.json (`experiments.results`); resumes a workdir that holds the same run
(`experiments.resume`). The compiled functions it drives are `experiments.experiment.Experiment`'s.
A sweep also evaluates every member on the validation split (`valid_*` in metrics.jsonl).
"""

import contextlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import compile_cache, formats, io
from experiments.checkpoint import Checkpoints
from experiments.config import Config, check_workdir, num_members
from experiments.experiment import SEEDS, Experiment, TrainState, reset_meters
from experiments.lock import workdir_lock
from experiments.results import (
    best_learning_rate,
    duration,
    execution,
    per_rate,
    run_results,
    summary_line,
    summed_timing,
    training_spans,
)
from experiments.resume import check_resumable, previous_results, restore_latest
from experiments.tensorboard import TensorBoardLog
from experiments.validation import validate


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (installed for the whole
    run, so a signal during validation, restore or compilation stops it before the next step)."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_and_evaluate(config: Config, workdir: str | Path) -> dict[str, Any]:
    """Train `config.num_seeds` seeds of one (cell, task, T) together; write and return results.

    Writes to `workdir`: config.json, metrics.jsonl (one record per seed per logging step),
    checkpoints/ and results.json. An existing workdir with the same config resumes from
    its latest checkpoint that restores; SIGTERM/SIGINT (any time) save a checkpoint and return
    early. The workdir is locked for the call (`experiments.lock`): a second process gets a
    `WorkdirLocked` ConfigError. Every check is made before anything but the lock is written.
    A full disk raises `io.DiskFullError` naming the workdir.
    """
    with StopSignal() as stop_signal:
        parts = validate(config)
        workdir = check_workdir(workdir)
        with workdir_lock(workdir):
            check_resumable(config, workdir)
            try:
                io.write_json(workdir / "config.json", formats.stamp(config.to_dict()))
                exp = Experiment(config, parts)
                with exp.precision():
                    return _train(exp, workdir, stop_signal)
            except Exception as e:
                if io.disk_full(e):
                    raise io.DiskFullError(workdir) from e
                raise


def _train(exp: Experiment, workdir: Path, stop_signal: StopSignal) -> dict[str, Any]:
    mesh = exp.mesh()
    c = exp.config
    what = f"{c.cell}/{c.task} T={c.seq_len}"
    logging.info("%s: compiling the initialisation, training step and evaluation (%s)", what, _cache_note())
    compiling = (time.perf_counter(), compile_cache.counts())
    state = exp.compiled_init(mesh)(*exp.member_inputs())
    previous = previous_results(workdir)
    checkpoints = Checkpoints(workdir)
    tb = TensorBoardLog(workdir, sweep=exp.sweep) if exp.config.tensorboard else None
    try:
        return _train_from(exp, workdir, mesh, state, checkpoints, stop_signal, previous, tb, compiling)
    finally:
        checkpoints.close()
        if tb:
            tb.close()


def _cache_note() -> str:
    folder = os.environ.get(compile_cache.ENV)
    if folder is None or folder == "off":
        return "no persistent compilation cache"
    return f"programs compiled by an earlier run are read from {folder}"


def _train_from(
    exp: Experiment,
    workdir: Path,
    mesh: Any,
    state: TrainState,
    checkpoints: Checkpoints,
    stop_signal: "StopSignal",
    previous: dict,
    tb: TensorBoardLog | None = None,
    compiling: tuple[float, dict[str, int]] | None = None,
) -> dict:
    """The training loop from the state restored (or `state`); `compiling`: (perf_counter, compile_cache.counts())
    when compilation began. The step, evaluation and meter reset are compiled ahead of time, before the first
    step, so their compile time is reported once and the first interval's steps/s (and ETA) time training only."""
    config = exp.config
    compiling = compiling or (time.perf_counter(), compile_cache.counts())
    start, metrics_path = 0, workdir / "metrics.jsonl"
    if restored := restore_latest(checkpoints, workdir, state):
        start, state = restored
        logging.info("resuming %s from step %d", workdir, start)
    if tb:
        tb.start(start)  # each step once in TensorBoard too: what earlier processes logged after `start` goes
    io.write_jsonl(metrics_path, [r for r in io.read_jsonl(metrics_path) if start and r["step"] <= start])

    per_device = num_members(config) // mesh.size
    eval_sets = {prefix: exp.eval_set(split, per_device) for prefix, split in exp.eval_splits().items()}
    step_fn = exp.compiled_step(mesh).lower(state).compile()
    seeds = NamedSharding(mesh, P(SEEDS))  # every leaf of the state, as the step takes it (compiled for it)
    reset_fn = jax.jit(reset_meters, donate_argnums=0, out_shardings=seeds).lower(state).compile()
    eval_jit, eval_fns = exp.compiled_eval(mesh), {}
    for prefix, s in eval_sets.items():  # one program per shape of held-out set
        shapes = tuple((a.shape, a.dtype) for a in jax.tree.leaves(s))
        eval_fns[prefix] = eval_fns.get(shapes) or eval_jit.lower(state.params, s).compile()
        eval_fns[shapes] = eval_fns[prefix]

    def evaluate(state: TrainState) -> dict[str, Any]:
        return {prefix: eval_fns[prefix](state.params, s) for prefix, s in eval_sets.items()}

    compile_s = time.perf_counter() - compiling[0]
    what = f"{config.cell}/{config.task} T={config.seq_len}"
    logging.info("%s: compiled in %.1fs%s", what, compile_s, _cache_use(compiling[1]))
    diagnostics = _diagnostics_recorder(exp, workdir, config)

    history = io.read_jsonl(metrics_path)
    t_start = compiling[0]  # the session's wall time includes compiling
    if start == 0:
        history += _log(exp, workdir, 0, state, evaluate(state), float("nan"), tb=tb)
        if diagnostics:
            diagnostics(0, state.params)
    step, last_log, stop = start, start, None
    train_time, timed_steps, t_interval = 0.0, 0, time.perf_counter()
    diverged_at = np.asarray(state.diverged_at)
    if start and (diverged_at >= 0).all():
        logging.warning("every seed diverged by step %d: nothing left to train", start)
    while step < config.steps and not (diverged_at >= 0).all() and stop_signal.received is None:
        state = step_fn(state)
        step += 1
        if step % config.eval_every == 0 or step == config.steps:
            diverged_at = np.asarray(state.diverged_at)  # the one host sync of the interval
            elapsed = time.perf_counter() - t_interval
            steps_per_s = (step - last_log) / elapsed
            if last_log > start:  # the first interval includes compilation
                train_time, timed_steps = train_time + elapsed, timed_steps + step - last_log
            history += _log(exp, workdir, step, state, evaluate(state), steps_per_s, tb=tb)
            state, last_log = reset_fn(state), step
            if diagnostics and step % config.diag_every == 0:
                diagnostics(step, state.params)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoints.save(step, state)
            if (diverged_at >= 0).all():
                logging.warning("every seed diverged; stopping at step %d", step)
            t_interval = time.perf_counter()
        elif config.checkpoint_every and step % config.checkpoint_every == 0:
            t_save = time.perf_counter()  # mid-interval: the meters so far are part of the state
            checkpoints.save(step, state)
            t_interval += time.perf_counter() - t_save  # not counted as training time
    if stop_signal.received is not None:
        stop = signal.Signals(stop_signal.received).name
        logging.warning("%s received: saving a checkpoint at step %d and stopping", stop, step)
    if not any(r["step"] == step for r in history):  # stopped between logging steps: evaluate here,
        # for results.json only; metrics.jsonl keeps the logging schedule (a resumed run appends to it)
        history += _log(exp, workdir, step, state, evaluate(state), float("nan"), write=False)
    checkpoints.save(step, state)
    wall = time.perf_counter() - t_start
    timing = summed_timing(previous, start, step, wall, train_time, timed_steps)
    results = run_results(exp, state, history, step, timing, stop)
    results["execution"] = execution(exp, mesh, eval_chunk=eval_sets["eval"][0].shape[1])
    # the step the last process that trained started from (0: from scratch); a process that trained nothing
    # (a rerun of a finished run) keeps it, as it keeps the timing; session_steps: what this process trained
    results["resumed_from"] = start if step > start or "resumed_from" not in previous else previous["resumed_from"]
    results["session_steps"] = step - start
    if (sessions := training_spans(previous, start, step, results, wall)) is not None:
        results["sessions"] = sessions
    results = formats.stamp(results)
    io.write_json(workdir / "results.json", results)
    logging.info("%s", summary_line(exp, results, workdir, compile_s, wall))
    return results


def _cache_use(before: dict[str, int]) -> str:
    """How many of the programs compiled since `before` the persistent compilation cache served."""
    now = compile_cache.counts()
    hits, misses = now["hits"] - before["hits"], now["misses"] - before["misses"]
    if not hits + misses:
        return ""
    return f" ({hits} of {hits + misses} programs read from the compilation cache)"


def _diagnostics_recorder(exp: Experiment, workdir: Path, config: Config):
    """Gradient diagnostics during training, when `diag_every > 0` (see experiments.diagnostics)."""
    if not config.diag_every:
        return None
    from experiments.diagnostics import TrainingRecorder

    return TrainingRecorder(exp, workdir)


def _log(
    exp: Experiment,
    workdir: Path,
    step: int,
    state: TrainState,
    evals: dict,
    steps_per_s: float,
    write: bool = True,
    tb: TensorBoardLog | None = None,
) -> list[dict]:
    """Append (if `write`) one metrics.jsonl record per member, and the same scalars to TensorBoard (`tb`), and
    print a progress line; returns the records.

    `evals`: {prefix: metrics of every member} (`Experiment.eval_splits`): record keys `eval_<k>` (test split)
    and, in a sweep, `valid_<k>`. Each record names its member: "seed" and "learning_rate".
    """
    meters, evals = jax.device_get((state._replace(params=None, opt_state=None), evals))
    count = np.maximum(meters.count, 1)
    records = []
    for i, (seed, rate) in enumerate(exp.members):
        record = {
            "step": step,
            "seed": seed,
            "learning_rate": rate,
            "train_loss": float(meters.loss_sum[i] / count[i]) if meters.count[i] else None,
            "grad_norm": float(meters.grad_norm_sum[i] / count[i]) if meters.count[i] else None,
            "grad_norm_max": float(meters.grad_norm_max[i]) if meters.count[i] else None,
            "clipped_fraction": float(meters.clipped[i] / count[i]) if meters.count[i] else None,
            "diverged": bool(meters.diverged_at[i] >= 0),
            "steps_per_s": None if math.isnan(steps_per_s) else round(steps_per_s, 2),
            **{f"{prefix}_{k}": float(v[i]) for prefix, metrics in evals.items() for k, v in metrics.items()},
        }
        records.append(record)
    if write:
        io.append_jsonl(workdir / "metrics.jsonl", records)
        if tb:
            tb.write(records)
    cfg, shown, at = exp.config, records, ""
    if exp.sweep:  # the rate that is best on the validation split so far, and its seeds
        best = best_learning_rate(exp.learning_rates, *per_rate(exp, records, f"valid_{exp.task.headline}"))
        shown, at = (
            [r for r in records if r["learning_rate"] == best],
            f" at lr {best:g} (best of {len(exp.learning_rates)} on valid)",
        )

    def mean(key: str) -> float:
        return np.mean([r[key] for r in shown if r[key] is not None] or [np.nan])

    parts = [
        f"{cfg.cell}/{cfg.task} T={cfg.seq_len} step {step}/{cfg.steps}" + (" (before training)" if not step else "")
    ]
    if not math.isnan(train := mean("train_loss")):
        parts.append(f"train {train:.4g}")
    parts.append(f"eval {exp.task.metric_name} {mean('eval_loss'):.4g} ({mean('eval_ratio'):.3g} x baseline){at}")
    if not math.isnan(grad := mean("grad_norm")):
        parts.append(f"|g| {grad:.3g}")
    if steps_per_s and not math.isnan(steps_per_s):  # step 0 (and a stop before any step) has no speed yet
        parts.append(f"{steps_per_s:.1f} steps/s | ETA {duration((cfg.steps - step) / steps_per_s)}")
    logging.info("%s", " | ".join(parts))
    return records

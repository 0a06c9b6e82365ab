"""results.json of a training run: final metrics per member, the best learning rate, timing and provenance.

A sweep over learning rates (`--learning_rate=a,b,c`) reports each rate and the one with the lowest mean
validation metric (`best_learning_rate`); the top-level "mean", "std" and "solved_fraction" are that rate's.
"""

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from experiments import formats
from experiments.config import num_members
from experiments.experiment import Experiment, TrainState


def summary_line(exp: Experiment, results: dict[str, Any], workdir: Path, compile_s: float, wall: float) -> str:
    """The run's last line: final headline metric against the baseline, solved fraction and median step,
    steps and wall time (compile apart), and where the results are."""
    c, task = exp.config, exp.task
    seeds = [s for s in results["seeds"] if s["learning_rate"] == results["best_learning_rate"]]
    loss = float(np.mean([s["final"]["loss"] for s in seeds]))
    solved = [s["solved_at_step"] for s in seeds if s["solved"]]
    at = f" (median step {int(np.median(solved))})" if solved else ""
    rate = f" at lr {results['best_learning_rate']:g}" if exp.sweep else ""
    ended = f"stopped by {results['stopped_by']}" if results["stopped_by"] else "done"
    steps = f"{results['steps_done']}/{c.steps} steps" if results["stopped_by"] else f"{results['steps_done']} steps"
    resume = "; rerun the same command to resume" if results["stopped_by"] else ""
    return (
        f"{ended}: {c.cell}/{c.task} T={c.seq_len}: test {task.metric_name} {loss:.4g} "
        f"({loss / task.baseline:.3g} x baseline {task.baseline:.4g}){rate}, solved {len(solved)}/{len(seeds)}{at}; "
        f"{steps} in {duration(wall)} (compile {duration(compile_s)}); results: {workdir / 'results.json'}{resume}"
    )


def training_spans(previous: dict, start: int, step: int, results: dict, wall_time: float) -> list[dict] | None:
    """Where each session of the run trained: its steps [from, to], wall time, machine and versions (a point
    may start on a lent GPU and end on a CPU). A session that trained nothing keeps the list as it was (None:
    results that predate it); a run resumed from such results gets one entry for everything before."""
    if start and step == start and previous.get("steps_done") == step:
        return previous.get("sessions")
    ex = results["execution"]
    this = {"steps": [start, step], "wall_time_s": round(wall_time, 2), "versions": results["versions"]}
    this.update({k: ex[k] for k in ("backend", "device_kind", "cpu_count")})
    if not start:
        return [this]
    if "sessions" in previous:
        return [*previous["sessions"], this]
    if not previous:  # resumed from a checkpoint whose session wrote no results.json (killed): its time is unknown
        return [this]
    before = {"steps": [0, start], "wall_time_s": previous.get("wall_time_s", 0)}  # all sessions before, summed
    before.update({k: previous.get("execution", {}).get(k) for k in ("backend", "device_kind", "cpu_count")})
    return [{**before, "versions": previous.get("versions", {})}, this]


def summed_timing(previous: dict, start: int, step: int, wall_time: float, train_time: float, timed_steps: int) -> dict:
    """Wall and training time summed over the sessions of a run: a resumed one adds the previous
    results.json's; a session that trained nothing (a rerun of a finished run) keeps them as they were."""
    keys = ("wall_time_s", "train_time_s", "timed_steps", "steps_per_s")
    if start and step == start and previous.get("steps_done") == step:
        return {k: previous.get(k) for k in keys}

    def number(v: Any) -> float:
        return v if isinstance(v, int | float) and not isinstance(v, bool) else 0

    before = {k: number(previous.get(k)) for k in keys[:3]} if start else dict.fromkeys(keys[:3], 0)
    total_train, total_steps = before["train_time_s"] + train_time, before["timed_steps"] + timed_steps
    return {
        "wall_time_s": round(before["wall_time_s"] + wall_time, 2),
        "train_time_s": round(total_train, 3),
        "timed_steps": total_steps,
        "steps_per_s": round(total_steps / total_train, 2) if total_train else None,
    }


def best_learning_rate(rates: Sequence[float], valid: np.ndarray, diverged: np.ndarray) -> float:
    """The rate whose seeds have the lowest mean of `valid`, a lower-is-better metric on the validation split.

    valid, diverged: (R, S), row r the seeds of `rates[r]`. A non-finite mean counts as the worst; ties go to
    the smaller rate; a rate whose seeds all diverged is chosen only when every rate's did. Never reads the
    test split: choosing on it would make the reported test numbers optimistic.
    """
    valid, diverged = np.asarray(valid, np.float64), np.asarray(diverged, bool)
    with np.errstate(invalid="ignore"):
        means = valid.mean(axis=1)
    score = np.where(np.isfinite(means), means, np.inf)
    dead = diverged.all(axis=1) & ~diverged.all()
    return rates[min(range(len(rates)), key=lambda r: (bool(dead[r]), score[r], rates[r]))]


def per_rate(exp: Experiment, members: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """`key` of each member and whether it diverged, as (R, S) arrays; `members` in member order (metrics.jsonl
    records, or the "seeds" of results.json, which keep "diverged_at_step")."""
    R, S = len(exp.learning_rates), exp.config.num_seeds
    values = [m[key] if m.get(key) is not None else np.nan for m in members]
    diverged = [m["diverged"] if "diverged" in m else m["diverged_at_step"] is not None for m in members]
    return np.asarray(values, np.float64).reshape(R, S), np.asarray(diverged, bool).reshape(R, S)


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds / 60:.1f}m" if seconds >= 90 else f"{seconds:.0f}s"


def run_results(
    exp: Experiment, state: TrainState, history: list[dict], step: int, timing: dict, stop: str | None
) -> dict[str, Any]:
    """results.json: final metrics per member, with first solved step and divergence, and summaries.

    "seeds": one entry per member (seed x learning rate, in member order): "seed", "learning_rate",
    "final" (test split metrics), "final_valid" (validation split; sweeps only), "solved",
    "solved_at_step", "diverged_at_step" (solved and divergence from the test metrics).
    "learning_rates": the R rates; "by_learning_rate": per rate, in that order, "learning_rate", "mean" and
    "std" of the final test metrics over its seeds, "mean_valid" (sweeps only), "solved_fraction",
    "diverged_fraction". "best_learning_rate": the rate (`best_learning_rate`: lowest mean validation
    `task.headline`); with one rate, that rate. The top-level "mean", "std" and "solved_fraction" are
    the best rate's, so a reader that knows no sweeps reads each run at its best rate.
    """
    task, cfg = exp.task, exp.config
    index = {member: m for m, member in enumerate(exp.members)}

    def member(record: dict) -> int:
        return index[record["seed"], formats.record_learning_rate(record, exp.learning_rates[0])]

    last = {member(r): r for r in history if r["step"] == step}
    diverged_at = np.asarray(state.diverged_at)
    per_seed = []
    for i, (seed, rate) in enumerate(exp.members):
        evals = _evals(last[i])
        solved_steps = [r["step"] for r in history if member(r) == i and task.solved(_evals(r))]
        per_seed.append(
            {
                "seed": seed,
                "learning_rate": rate,
                "final": evals,
                **({"final_valid": _evals(last[i], "valid_")} if exp.sweep else {}),
                "solved": task.solved(evals),
                "solved_at_step": solved_steps[0] if solved_steps else None,
                "diverged_at_step": int(diverged_at[i]) if diverged_at[i] >= 0 else None,
            }
        )
    S, rate_rows = cfg.num_seeds, []
    for r, rate in enumerate(exp.learning_rates):
        group = per_seed[r * S : (r + 1) * S]
        finals = {k: [s["final"][k] for s in group] for k in group[0]["final"]}
        entry = {
            "learning_rate": rate,
            "mean": {k: float(np.mean(v)) for k, v in finals.items()},
            "std": {k: float(np.std(v)) for k, v in finals.items()},
        }
        if exp.sweep:
            entry["mean_valid"] = {
                k: float(np.mean([s["final_valid"][k] for s in group])) for k in group[0]["final_valid"]
            }
        entry["solved_fraction"] = float(np.mean([s["solved"] for s in group]))
        entry["diverged_fraction"] = float(np.mean([s["diverged_at_step"] is not None for s in group]))
        rate_rows.append(entry)
    if exp.sweep:
        valid = [{"valid": s["final_valid"][task.headline], **s} for s in per_seed]
        best = best_learning_rate(exp.learning_rates, *per_rate(exp, valid, "valid"))
    else:
        best = exp.learning_rates[0]
    chosen = rate_rows[exp.learning_rates.index(best)]
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()},  # as JSON reads back
        "task": cfg.task,
        "cell": cfg.cell,
        "seq_len": cfg.seq_len,
        "metric": task.metric_name,
        "baseline": task.baseline,
        "steps_done": step,
        "finished": step >= cfg.steps or bool((diverged_at >= 0).all()),  # all steps, or every seed diverged
        "stopped_by": stop,
        **timing,
        "seeds": per_seed,
        "mean": chosen["mean"],
        "std": chosen["std"],
        "solved_fraction": chosen["solved_fraction"],
        "learning_rates": list(exp.learning_rates),
        "best_learning_rate": best,
        "by_learning_rate": rate_rows,
        "versions": package_versions(),
    }


def execution(exp: Experiment, mesh: Mesh, eval_chunk: int) -> dict[str, Any]:
    """How the run executed: backend, devices, and the policies resolved for them. "members": runs trained in
    the one program (seeds x learning rates); "seeds_per_device": members per device; "eval_chunk": held-out
    test sequences evaluated at once."""
    device = mesh.devices.flat[0]
    per_device = num_members(exp.config) // mesh.size
    return {
        "backend": device.platform,
        "device_kind": device.device_kind,
        "cpu_count": os.cpu_count(),
        "num_devices": mesh.size,
        "members": num_members(exp.config),
        "seeds_per_device": per_device,
        "seed_chunk": exp.seed_chunk(per_device),
        "eval_chunk": eval_chunk,
        "sequence_path": "sequence" if exp.model.uses_sequence else "step",
        "unroll": exp.model.scan_unroll,
        "matmul_precision": exp.config.matmul_precision,
    }


def _evals(record: dict, prefix: str = "eval_") -> dict:
    """The metrics of one split in a metrics.jsonl record: "eval_" the test split, "valid_" the validation split."""
    return {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix)}


def package_versions() -> dict[str, str]:
    """Versions of Python and the numerical stack, recorded with every result."""
    import flax

    versions = {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__}
    return {**versions, "optax": optax.__version__}

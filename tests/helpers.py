"""What several test files share: the repository root, readers of a run's outputs, and their CLI runs."""

from pathlib import Path
from typing import Any

import pytest

from experiments import io

ROOT = Path(__file__).resolve().parents[1]


def metrics_without_timing(workdir: Path) -> list[dict]:
    """Every metrics.jsonl record without its timing (`steps_per_s`): what two runs of the same work share."""
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in io.read_jsonl(workdir / "metrics.jsonl")]


def eval_records(workdir: Path) -> list[dict]:
    """The evaluation fields of each metrics.jsonl record, with its step and seed."""
    return [
        {k: v for k, v in r.items() if k.startswith("eval_") or k in ("step", "seed")}
        for r in io.read_jsonl(workdir / "metrics.jsonl")
    ]


def logged_step(workdir: Path) -> int:
    """The last step in metrics.jsonl (-1 before the first record)."""
    return max((r["step"] for r in io.read_jsonl(workdir / "metrics.jsonl")), default=-1)


def final_params(workdir: Path, config: Any) -> Any:
    """The parameters of the latest checkpoint in `workdir`, one leading axis over the run's members."""
    import jax

    from experiments.checkpoint import Checkpoints
    from experiments.experiment import Experiment
    from experiments.resume import restore_latest

    exp = Experiment(config)
    checkpoints = Checkpoints(workdir)
    _, state = restore_latest(checkpoints, workdir, jax.eval_shape(exp.init_states, *exp.member_inputs()))
    checkpoints.close()
    return state.params


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for one run folder, {tag: [(step, value), ...]} in step order, read by
    TensorBoard's own reader (what a restart marker hides is not there). Skips the test without TensorBoard."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()[event_accumulator.SCALARS]
    }

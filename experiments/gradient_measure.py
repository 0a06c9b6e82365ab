"""Gradient diagnostics of whole runs on one fixed batch: cells at initialisation, or trained runs' members.

A `Spec` is one run to measure (a validated Config and its source: "init" or a trained workdir);
`measure_specs` measures every member of each on the same batch of the same task and returns one `Run`
per member. The measurements themselves are `experiments.diagnostics`; the table, files and plots
that report them are `experiments.gradient_report`.
"""

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import diagnostics as diag
from experiments import formats, io
from experiments.config import Config, ConfigError, members
from experiments.validation import validate


@dataclasses.dataclass
class Spec:
    """One run to measure, fully validated: `source` is "init" or a trained workdir."""

    config: Config
    source: str


@dataclasses.dataclass
class Run:
    """One measured (spec, member): `arrays` is one `diagnose` output without the member axis.

    `learning_rate`: the member's rate in a trained run; None at initialisation (no rate has acted)."""

    label: str
    spec: Spec
    seed: int
    step: int
    arrays: dict[str, np.ndarray]
    summary: dict[str, Any]
    training: dict[str, Any] | None = None
    learning_rate: float | None = None


def check_settings(
    batch: int, horizon_fraction: float, jacobian_points: int, jacobian_examples: int, power_iters: int
) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 65_536:
        raise ConfigError(f"--batch={batch!r}: must be an integer in [1, 65536]")
    if not (isinstance(horizon_fraction, int | float) and 0 < horizon_fraction < 1):
        raise ConfigError(f"--horizon_fraction={horizon_fraction!r}: must be a number in (0, 1)")
    if not 0 <= jacobian_points <= 64:
        raise ConfigError(f"--jacobian_points={jacobian_points!r}: must be an integer in [0, 64]")
    if not 1 <= jacobian_examples <= batch:
        raise ConfigError(f"--jacobian_examples={jacobian_examples!r}: must be an integer in [1, --batch={batch}]")
    if not 1 <= power_iters <= 10_000:
        raise ConfigError(f"--power_iters={power_iters!r}: must be an integer in [1, 10000]")


def trained_spec(workdir: str, batch: int | None = None) -> Spec:
    """A trained run's saved config, validated (for a diagnostics batch of `batch`), with a checkpoint
    to load; ConfigError otherwise."""
    path = Path(workdir)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--from_workdirs: {workdir} has no config.json (not a workdir of experiments.train)")
    try:
        saved = io.read_json(path / "config.json")
        if not isinstance(saved, dict):
            raise ValueError(f"holds a JSON {type(saved).__name__}, not an object")
        config = Config.from_dict(saved)
        validate(config, diagnostics_batch=batch)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"--from_workdirs: {workdir}/config.json: {e}") from None
    ckpt = path / "checkpoints"
    if not ckpt.is_dir() or not any(p.name.isdigit() for p in ckpt.iterdir()):
        raise ConfigError(f"--from_workdirs: {workdir} has no checkpoint in {ckpt}")
    return Spec(config, str(path))


def check_same_task(specs: list[Spec]) -> None:
    """All runs must read sequences of one task and length (one batch, one time axis in the plots)."""
    kinds = {(s.config.task, s.config.seq_len) for s in specs}
    if len(kinds) > 1:
        listed = "; ".join(f"{s.source}: --task={s.config.task} --seq_len={s.config.seq_len}" for s in specs)
        raise ConfigError(f"--from_workdirs: runs must share --task and --seq_len to be compared; got {listed}")


def spec_members(spec: Spec) -> list[tuple[int, float | None]]:
    """(seed, learning rate) along the leading axis of `load_params`: a trained run's members
    (`config.members`), or at init each seed once with rate None (no rate has acted yet)."""
    if spec.source == "init":
        return [(spec.config.seed + i, None) for i in range(spec.config.num_seeds)]
    return members(spec.config)


def load_params(spec: Spec) -> tuple[Any, int]:
    """Parameters with a leading member axis (`spec_members`), and the training step they are from (0 at init)."""
    from experiments.experiment import Experiment
    from experiments.resume import restore_latest

    exp = Experiment(spec.config)
    if spec.source == "init":
        seeds = jnp.arange(spec.config.seed, spec.config.seed + spec.config.num_seeds)
        return exp.compiled_init()(seeds).params, 0
    from experiments.checkpoint import Checkpoints

    checkpoints = Checkpoints(spec.source)
    like = jax.eval_shape(exp.init_states, *exp.member_inputs())
    try:  # the newest checkpoint that restores (a damaged one: one warning line, then the one before)
        restored = restore_latest(checkpoints, Path(spec.source), like, "from_workdirs", quarantine=False)
    finally:
        checkpoints.close()
    if restored is None:
        raise ConfigError(f"--from_workdirs: {spec.source} has no checkpoint (not trained yet?)")
    step, state = restored
    return state.params, int(step)


def _label(spec: Spec, seed: int, step: int, used: set[str], learning_rate: float | None = None) -> str:
    c = spec.config
    label = c.cell.rpartition(":")[2] + (f"({c.cell_options})" if c.cell_options else "")  # pkg.mod:Class -> Class
    label += f" s{seed}" if c.num_seeds > 1 else ""
    label += f" lr{learning_rate:g}" if learning_rate is not None and isinstance(c.learning_rate, tuple) else ""
    label += f" @{step}" if spec.source != "init" else ""
    if label in used:
        label += f" [{Path(spec.source).name}]"
    while label in used:
        label += "'"
    used.add(label)
    return label


def training_record(workdir: str, seed: int, learning_rate: float | None = None) -> dict[str, Any] | None:
    """Pre-clip gradient norms per logging step of one member from metrics.jsonl, and their summaries
    (`learning_rate`: the member's, in a sweep; records from before sweeps have none and match any)."""
    records = [r for r in io.read_jsonl(Path(workdir) / "metrics.jsonl") if r.get("seed") == seed]
    if learning_rate is not None:
        records = [r for r in records if formats.record_learning_rate(r, learning_rate) == learning_rate]
    records = [r for r in records if r.get("grad_norm") is not None]
    if not records:
        return None
    steps = [r["step"] for r in records]
    clipped = [r["clipped_fraction"] for r in records]
    return {
        "steps": steps,
        "grad_norm": [r["grad_norm"] for r in records],
        "grad_norm_max": [r["grad_norm_max"] for r in records],
        "clipped_fraction": clipped,
        "last_grad_norm": records[-1]["grad_norm"],
        "max_grad_norm": max(r["grad_norm_max"] for r in records),
        "clipped_fraction_mean": float(np.mean(clipped)),  # over logging intervals
    }


def measure_specs(
    specs: list[Spec],
    batch: int,
    horizon_fraction: float,
    jacobian_points: int,
    jacobian_examples: int = 4,
    power_iters: int = 20,
) -> tuple[list[Run], np.ndarray]:
    """Measure every spec (every seed) on one fixed batch; returns the runs and the Jacobian t's."""
    from experiments.experiment import Experiment

    runs, used = [], set()
    ts = None
    for spec in specs:
        exp = Experiment(spec.config)
        inputs, targets = exp.task.sample(jax.random.PRNGKey(diag.DIAG_SEED), batch)
        ts = diag.jacobian_points(int(inputs.shape[1]), jacobian_points)
        params, step = load_params(spec)
        fn = diag.make_diagnose_fn(exp.model, exp.task, True, jacobian_examples, power_iters)
        out = jax.device_get(fn(params, inputs, targets, jnp.asarray(ts)))
        for i, (seed, rate) in enumerate(spec_members(spec)):
            arrays = {k: np.asarray(v[i]) for k, v in out.items()}
            training = None if spec.source == "init" else training_record(spec.source, seed, rate)
            summary = diag.summarize_arrays(arrays, horizon_fraction)
            label = _label(spec, seed, step, used, rate)
            runs.append(Run(label, spec, seed, step, arrays, summary, training, rate))
    return runs, ts

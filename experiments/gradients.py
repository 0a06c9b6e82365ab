"""Gradient diagnostics of cells, at initialisation or from trained runs: a Markdown table and plots.

    python -m experiments.gradients --cells=rnn,lstm,gru --task=adding --seq_len=200 --workdir=DIR
    python -m experiments.gradients --from_workdirs=runs/lstm,runs/gru --workdir=DIR

Each cell of --cells is measured at initialisation (parameters of seeds --seed .. as
`experiments.train` would start them; training flags, `config.TRAINING_FIELDS` such as --learning_rate
or --steps, play no part there and are refused); each run of --from_workdirs at its latest checkpoint,
with its own saved config, every member (seed, and learning rate in a sweep) of it: with
--from_workdirs alone, a flag of the config (--hidden_size, --seq_len, ...) would be ignored, and is
refused. All runs share one task and length and one fixed batch of --batch sequences. Index convention, measurements and
summaries: `experiments.diagnostics`.

Writes to --workdir: gradients.json (summaries per run), gradients.npz (the per-step arrays),
grad_norms.png, input_sensitivity.png, jacobian_sigma.png and, for trained runs,
heatmap_<cell>.png (from the run's diagnostics.npz, when it trained with --diag_every) and
train_grad_norm.png (from its metrics.jsonl).
"""

import dataclasses
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import diagnostics as diag
from experiments import io
from experiments.config import TRAINING_FIELDS, Config, ConfigError, check_workdir, members
from experiments.report import fmt, markdown_table
from experiments.validation import validate, validate_cells

INDEX_CONVENTION = (
    "Position i = 0..T-1 of a per-step array is step t = i + 1: carry gradient ||dL/dh_i|| (h_i = carry after "
    "i steps, entering step i+1; h_0 = initial carry), input gradient ||dL/dx_{i+1}||. L = sum of per-example "
    "losses on a fixed batch; norms per example, then batch mean / std / 10-50-90% quantiles."
)


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


# ---------------------------------------------------------------------------- validation


def _check_settings(
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


# ---------------------------------------------------------------------------- measuring


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
        records = [r for r in records if r.get("learning_rate", learning_rate) == learning_rate]
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


# ---------------------------------------------------------------------------- table and files


def markdown_tables(runs: list[Run], length: int, horizon_fraction: float) -> str:
    """The headline table (whole carry) and, for multi-leaf carries, one row per leaf."""
    trained = any(r.training for r in runs)
    headers = ["run", "loss", "‖dL/dh_0‖", f"‖dL/dh_{length - 1}‖", "first/last", "decay (log10/step)"]
    headers += [f"horizon (≥{horizon_fraction:g}·max)", "‖dL/dx_1‖/‖dL/dx_T‖", "σmax(dh_T/dh_0)"]
    headers += ["train ‖g‖ (last)", "clipped frac"] if trained else []
    rows = []
    for r in runs:
        s, c = r.summary, r.summary["carry"]
        row = [r.label, s["loss"], c["first"], c["last"], c["ratio_first_last"], c["decay_rate"]]
        row += [c["horizon"], s["input"]["ratio_first_last"], s["jacobian_sigma_first"]]
        if trained:
            t = r.training or {}
            row += [t.get("last_grad_norm"), t.get("clipped_fraction_mean")]
        rows.append(row)
    text = markdown_table(headers, [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows])
    leaf_rows = [
        [r.label, name, leaf["first"], leaf["last"], leaf["ratio_first_last"], leaf["decay_rate"], leaf["horizon"]]
        for r in runs
        if len(r.summary["leaves"]) > 1
        for name, leaf in r.summary["leaves"].items()
    ]
    if leaf_rows:
        leaf_headers = ["run", "carry leaf", "‖dL/dh_0‖", f"‖dL/dh_{length - 1}‖", "first/last", "decay", "horizon"]
        leaf_rows = [[c if isinstance(c, str) else fmt(c) for c in r] for r in leaf_rows]
        text += "\n\n" + markdown_table(leaf_headers, leaf_rows)
    note = (
        f"\nT = {length} steps; ‖dL/dh_i‖: batch-mean norm of the gradient w.r.t. the carry entering step i+1 "
        f"(h_0 = initial carry), whole carry; decay: fitted slope of log10 ‖dL/dh_i‖ per step (> 0: vanishing "
        f"going back); horizon: steps back from the last over which the norm stays ≥ {horizon_fraction:g} × max."
    )
    return text + "\n" + note


def save_results(runs: list[Run], ts: np.ndarray, workdir: Path, horizon_fraction: float, batch: int) -> None:
    """gradients.json (summaries) and gradients.npz (arrays), atomically.

    npz: "labels" (N,), "t" (T,) = 1..T, "jacobian_t" (K,), and every array common to all runs
    stacked as (N, ...) (carry_grad_*, input_grad_*, jacobian_sigma*, loss); per-leaf arrays as
    f"run{n}/carry_grad_mean:{leaf}".
    """
    length = int(runs[0].arrays["carry_grad_mean"].shape[0])
    cfg = runs[0].spec.config
    doc = {
        "task": cfg.task,
        "seq_len": cfg.seq_len,
        "length": length,
        "batch": batch,
        "horizon_fraction": horizon_fraction,
        "index_convention": INDEX_CONVENTION,
        "jacobian_t": [int(t) for t in ts],
        "runs": [
            {
                "label": r.label,
                "cell": r.spec.config.cell,
                "cell_options": r.spec.config.cell_options,
                "hidden_size": r.spec.config.hidden_size,
                "source": r.spec.source,
                "step": r.step,
                "seed": r.seed,
                "learning_rate": r.learning_rate,
                **r.summary,
                "training": r.training,
            }
            for r in runs
        ],
    }
    io.write_json(workdir / "gradients.json", diag.to_json_safe(doc))
    common = set.intersection(*(set(r.arrays) for r in runs))
    arrays = {k: np.stack([r.arrays[k] for r in runs]) for k in sorted(common) if ":" not in k}
    for n, r in enumerate(runs):
        arrays.update({f"run{n}/{k}": v for k, v in r.arrays.items() if ":" in k})
    arrays.update(labels=np.array([r.label for r in runs]), t=np.arange(1, length + 1), jacobian_t=np.asarray(ts))
    diag.write_npz(workdir / "gradients.npz", arrays)


def write_plots(runs: list[Run], ts: np.ndarray, workdir: Path) -> list[Path]:
    from experiments import plots

    cfg = runs[0].spec.config
    length = int(runs[0].arrays["carry_grad_mean"].shape[0])
    t = np.arange(1, length + 1)
    when = "trained" if all(r.spec.source != "init" for r in runs) else "at initialisation"
    when = "mixed" if any(r.spec.source != "init" for r in runs) and when != "trained" else when
    sizes = sorted({r.spec.config.hidden_size for r in runs})
    context = f"{cfg.task}, T={length}, H={','.join(map(str, sizes))}, {when}"
    band = "mean over the batch, band 10-90%"
    written = [workdir / n for n in ("grad_norms.png", "input_sensitivity.png", "jacobian_sigma.png")]

    def curves(key: str, horizon_of: str) -> list[dict[str, Any]]:
        return [
            {
                "label": f"{r.label} (horizon {r.summary[horizon_of]['horizon']})",
                "x": t,
                "y": r.arrays[f"{key}_mean"],
                "lo": r.arrays[f"{key}_q10"],
                "hi": r.arrays[f"{key}_q90"],
            }
            for r in runs
        ]

    plots.plot_step_curves(
        curves("carry_grad", "carry"), written[0], title=f"Hidden-state gradient norms ({context})",
        ylabel=r"$\|\partial L / \partial h_{t-1}\|$ (whole carry)",
        xlabel="time step t  (gradient w.r.t. the carry entering step t)",
        note=f"{band}; loss at the end of the sequence" if cfg.task == "adding" else band,
    )  # fmt: skip
    plots.plot_step_curves(
        curves("input_grad", "input"), written[1], title=f"Input sensitivity ({context})",
        ylabel=r"$\|\partial L / \partial x_t\|$", xlabel="time step t", note=band,
    )  # fmt: skip
    jac = [
        {"label": r.label, "distance": length - ts, "sigma": r.arrays["jacobian_sigma"],
         "std": r.arrays["jacobian_sigma_std"]}
        for r in runs
    ]  # fmt: skip
    plots.plot_jacobian_sigma(jac, written[2], title=f"Largest singular value of dh_T/dh_t ({context})")

    trained = [r for r in runs if r.spec.source != "init"]
    heatmaps: set[str] = set()
    for source in dict.fromkeys(r.spec.source for r in trained):
        spec = next(r.spec for r in trained if r.spec.source == source)
        hist = Path(source) / "diagnostics.npz"
        if not hist.exists():
            print(f"note: {source} has no diagnostics.npz (trained without --diag_every): no heatmap")
            continue
        with np.load(hist) as z:
            steps, values, t_hist = z["steps"], z["carry_grad_mean"], z["t"]
            rates = z["learning_rates"] if "learning_rates" in z.files else None
        at_rate = ""
        if rates is not None and len(set(rates.tolist())) > 1:  # a sweep: the members of its best rate
            best = _best_learning_rate(source, float(rates[0]))
            values, at_rate = values[:, rates == best], f", lr {best:g} (best on valid)"
        with np.errstate(divide="ignore"):
            logmean = np.log10(values).mean(axis=1)  # geometric mean over seeds: (R, T)
        name = "heatmap_" + re.sub(r"[^A-Za-z0-9_.-]", "_", spec.config.cell)
        while name in heatmaps:
            name += "_" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).name)
        heatmaps.add(name)
        seeds = (f", geometric mean of {values.shape[1]} seeds" if values.shape[1] > 1 else "") + at_rate
        plots.plot_heatmap(
            steps, t_hist, 10.0**logmean, workdir / f"{name}.png",
            title=rf"$\log_{{10}} \|\partial L/\partial h_{{t-1}}\|$ in training: {spec.config.cell} ({source}{seeds})",
            xlabel="time step t  (gradient w.r.t. the carry entering step t)", cbar_label="log10 batch-mean norm",
        )  # fmt: skip
        written.append(workdir / f"{name}.png")
    with_training = [r for r in trained if r.training]
    if with_training:
        runs_tr = [{"label": r.label, "clip_norm": r.spec.config.clip_norm, **r.training} for r in with_training]
        plots.plot_training_grad_norm(runs_tr, workdir / "train_grad_norm.png", title="Gradient norm during training")
        written.append(workdir / "train_grad_norm.png")
    return written


def _best_learning_rate(workdir: str, default: float) -> float:
    """results.json's best_learning_rate of a trained sweep; `default` while it has none (not finished)."""
    try:
        best = io.read_json(Path(workdir) / "results.json").get("best_learning_rate")
    except (OSError, ValueError, AttributeError):
        best = None
    return float(best) if isinstance(best, int | float) else default


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str]) -> None:
    from experiments.flags import FLAGS, config_from_flags, list_flag

    _check_settings(
        FLAGS.batch, FLAGS.horizon_fraction, FLAGS.jacobian_points, FLAGS.jacobian_examples, FLAGS.power_iters
    )
    from_workdirs = list_flag(FLAGS.from_workdirs, "from_workdirs") if FLAGS.from_workdirs.strip() else []
    check_ignored_flags(bool(from_workdirs), FLAGS["cells"].present, FLAGS)
    specs = []
    if FLAGS["cells"].present or not from_workdirs:
        configs = validate_cells(config_from_flags(), list_flag(FLAGS.cells, "cells"), diagnostics_batch=FLAGS.batch)
        specs += [Spec(config, "init") for config in configs.values()]
    specs += [trained_spec(w, FLAGS.batch) for w in from_workdirs]
    check_same_task(specs)
    workdir = check_workdir(FLAGS.workdir)

    runs, ts = measure_specs(specs, FLAGS.batch, FLAGS.horizon_fraction, FLAGS.jacobian_points,
                             FLAGS.jacobian_examples, FLAGS.power_iters)  # fmt: skip
    length = int(runs[0].arrays["carry_grad_mean"].shape[0])
    print(markdown_tables(runs, length, FLAGS.horizon_fraction))
    save_results(runs, ts, workdir, FLAGS.horizon_fraction, FLAGS.batch)
    written = write_plots(runs, ts, workdir)
    print(f"\nwrote {workdir}/gradients.json, gradients.npz, " + ", ".join(p.name for p in written))


def check_ignored_flags(from_workdirs: bool, cells: bool, flag_values: Any) -> None:
    """Refuse a flag this invocation would ignore: a config flag with --from_workdirs alone (each run is measured
    with its own saved config), and a training flag (`TRAINING_FIELDS`) when cells are measured at initialisation
    (no step is taken)."""
    given = [f.name for f in dataclasses.fields(Config) if f.name in flag_values and flag_values[f.name].present]
    if from_workdirs and not cells and given:
        raise ConfigError(
            f"--{given[0]}: ignored with --from_workdirs (each run is measured with the config it was trained with); "
            "drop it, or add --cells to measure cells at initialisation with it"
        )
    if training := [name for name in given if name in TRAINING_FIELDS]:
        hint = "; the diagnostics batch is --batch" if training[0] == "batch_size" else ""
        raise ConfigError(
            f"--{training[0]}: does not apply to a measurement at initialisation (no training step is taken){hint}"
        )


def define_flags() -> None:
    from absl import flags

    from experiments.flags import define_config_flags

    define_config_flags(exclude=("cell",))
    flags.DEFINE_string(
        "cells", "rnn,lstm,gru", "Cells to measure at initialisation (comma list; names or pkg.mod:Class)."
    )
    flags.DEFINE_string("from_workdirs", "", "Trained workdirs to measure at their latest checkpoint (comma list).")
    flags.DEFINE_string("workdir", "runs/gradients", "Output folder for the table's data and the plots.")
    flags.DEFINE_integer("batch", 64, "Sequences in the fixed diagnostics batch.")
    flags.DEFINE_float("horizon_fraction", diag.HORIZON_FRACTION, "Horizon: steps the norm stays >= this x its max.")
    flags.DEFINE_integer("jacobian_points", 16, "Carries h_t (log-spaced in T - t) for sigma_max(dh_T/dh_t); 0 = off.")
    flags.DEFINE_integer("jacobian_examples", 4, "Sequences sigma_max(dh_T/dh_t) is averaged over.")
    flags.DEFINE_integer("power_iters", 20, "Power iterations per sigma_max.")


FLAG_GROUPS = {
    "diagnostics": ("from_workdirs", "batch", "horizon_fraction", "jacobian_points", "jacobian_examples", "power_iters")
}

if __name__ == "__main__":
    from experiments.flags import run

    define_flags()
    run(main, groups=FLAG_GROUPS)

"""What a gradient measurement reports (`experiments.gradient_measure`): a Markdown table, gradients.json/.npz, plots.

Files written to the output folder: gradients.json (summaries per run, with `INDEX_CONVENTION`),
gradients.npz (the per-step arrays), grad_norms.png, input_sensitivity.png, jacobian_sigma.png and, for
trained runs, heatmap_<cell>.png (from the run's diagnostics.npz) and train_grad_norm.png (from its
metrics.jsonl).
"""

import re
from pathlib import Path
from typing import Any

import numpy as np

from experiments import diagnostics as diag
from experiments import formats, io
from experiments.gradient_measure import Run
from experiments.report import fmt, markdown_table

INDEX_CONVENTION = (
    "Position i = 0..T-1 of a per-step array is step t = i + 1: carry gradient ||dL/dh_i|| (h_i = carry after "
    "i steps, entering step i+1; h_0 = initial carry), input gradient ||dL/dx_{i+1}||. L = sum of per-example "
    "losses on a fixed batch; norms per example, then batch mean / std / 10-50-90% quantiles."
)


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
    io.write_json(workdir / "gradients.json", formats.stamp(diag.to_json_safe(doc)))
    common = set.intersection(*(set(r.arrays) for r in runs))
    arrays = {k: np.stack([r.arrays[k] for r in runs]) for k in sorted(common) if ":" not in k}
    for n, r in enumerate(runs):
        arrays.update({f"run{n}/{k}": v for k, v in r.arrays.items() if ":" in k})
    arrays.update(labels=np.array([r.label for r in runs]), t=np.arange(1, length + 1), jacobian_t=np.asarray(ts))
    diag.write_npz(workdir / "gradients.npz", arrays)


def write_plots(runs: list[Run], ts: np.ndarray, workdir: Path) -> list[Path]:
    """The plots of `runs` in `workdir` (see the module's docstring); returns the files written."""
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
        curves("carry_grad", "carry"),
        written[0],
        title=f"Hidden-state gradient norms ({context})",
        ylabel=r"$\|\partial L / \partial h_{t-1}\|$ (whole carry)",
        xlabel="time step t  (gradient w.r.t. the carry entering step t)",
        note=f"{band}; loss at the end of the sequence" if cfg.task == "adding" else band,
    )
    plots.plot_step_curves(
        curves("input_grad", "input"),
        written[1],
        title=f"Input sensitivity ({context})",
        ylabel=r"$\|\partial L / \partial x_t\|$",
        xlabel="time step t",
        note=band,
    )
    jac = [
        {
            "label": r.label,
            "distance": length - ts,
            "sigma": r.arrays["jacobian_sigma"],
            "std": r.arrays["jacobian_sigma_std"],
        }
        for r in runs
    ]
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
            rates = formats.npz_learning_rates(z)
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
            steps,
            t_hist,
            10.0**logmean,
            workdir / f"{name}.png",
            title=rf"$\log_{{10}} \|\partial L/\partial h_{{t-1}}\|$ in training: {spec.config.cell} ({source}{seeds})",
            xlabel="time step t  (gradient w.r.t. the carry entering step t)",
            cbar_label="log10 batch-mean norm",
        )
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

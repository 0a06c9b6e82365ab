"""PNG figures of runs (matplotlib, Agg backend: no display needed).

Every figure draws whatever it is given: a series with no points is left out, values a log axis cannot show
(zero, negative, NaN, inf) are gaps, and an axis with no positive finite value at all stays linear and says
so (a task whose baseline is 0, every seed diverged, no Jacobian points), instead of failing to render."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.io import atomic_write  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | Path) -> None:
    """Write `fig` as PNG atomically and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"), mode="wb")
    plt.close(fig)


def _log_scale(ax: Any, which: str, *arrays: Any) -> None:
    """A log scale on axis `which` ("x" or "y") when some value of `arrays` is finite and > 0; otherwise the axis
    stays linear and the figure says there was nothing to draw on a log scale."""
    values = [np.ravel(np.asarray(a, np.float64)) for a in arrays]
    if any(np.any(np.isfinite(v) & (v > 0)) for v in values):
        getattr(ax, f"set_{which}scale")("log")
    else:
        ax.text(
            0.5,
            0.5,
            "no positive finite values to draw",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.35",
        )


def _finite_positive(x: float) -> bool:
    return x is not None and np.isfinite(x) and x > 0


def plot_learning_curves(
    curves: Mapping[str, tuple[Sequence[int], np.ndarray]],
    baseline: float,
    metric_name: str,
    path: str | Path,
    title: str = "",
) -> None:
    """Held-out metric against training step, one line per label, the memoryless baseline dashed.

    `curves[label] = (steps, values)` with values (n_steps,) or (n_steps, n_seeds); several
    seeds are drawn as their mean with a min-max band. Log y axis.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = []
    for label, (steps, values) in curves.items():
        values = np.asarray(values, dtype=float)
        if len(steps) == 0 or values.size == 0:
            continue  # a curve with no points (a damaged or empty log)
        values = values.reshape(len(steps), -1)
        (line,) = ax.plot(steps, _positive(values.mean(axis=1)), label=label, lw=1.8)
        if values.shape[1] > 1:
            ax.fill_between(
                steps, _positive(values.min(axis=1)), _positive(values.max(axis=1)), color=line.get_color(), alpha=0.2
            )
        drawn.append(values)
    if _finite_positive(baseline):
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"baseline {baseline:.4g}")
        drawn.append(np.asarray([baseline]))
    _log_scale(ax, "y", *drawn)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"held-out {metric_name}")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    save_figure(fig, path)


# ---------------------------------------------------------------- gradient diagnostics


def _positive(y: Any) -> np.ndarray:
    """NaN where y <= 0 or non-finite, so a log axis leaves a gap instead of failing."""
    y = np.asarray(y, np.float64)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def plot_step_curves(
    curves: Sequence[dict[str, Any]],
    path: str | Path,
    title: str,
    ylabel: str,
    xlabel: str = "time step t",
    note: str | None = None,
) -> None:
    """Per-time-step curves on a log y axis, one line per entry, with an optional shaded band.

    Each curve: {"label": str, "x": (T,), "y": (T,), optional "lo", "hi": (T,) band edges}.
    `note` is printed in the lower right corner (e.g. the index convention).
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        ax.plot(c["x"], _positive(c["y"]), color=color, lw=1.6, label=c["label"])
        if c.get("lo") is not None and c.get("hi") is not None:
            ax.fill_between(c["x"], _positive(c["lo"]), _positive(c["hi"]), color=color, alpha=0.18, lw=0)
    _log_scale(ax, "y", *(c["y"] for c in curves))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    if note:
        ax.text(0.99, 0.01, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
    save_figure(fig, path)


def plot_jacobian_sigma(curves: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    """sigma_max(dh_T/dh_t) against the number of steps T - t, log-log, one line per entry.

    Each curve: {"label": str, "distance": (K,) = T - t, "sigma": (K,), optional "std": (K,)}.
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        d, s = _positive(c["distance"]), _positive(c["sigma"])
        ax.plot(d, s, "o-", color=color, ms=3.5, lw=1.6, label=c["label"])
        if c.get("std") is not None and len(d):
            std = np.asarray(c["std"], np.float64)
            ax.fill_between(d, _positive(s - std), _positive(s + std), color=color, alpha=0.18, lw=0)
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    drawn = [(_positive(c["distance"]), _positive(c["sigma"])) for c in curves]
    drawn = [(d[np.isfinite(d) & np.isfinite(s)], s[np.isfinite(d) & np.isfinite(s)]) for d, s in drawn]
    _log_scale(ax, "x", *(d for d, _ in drawn))  # a log axis only where some point has both coordinates
    _log_scale(ax, "y", *(s for _, s in drawn))
    ax.set_xlabel("steps T - t between the carries")
    ax.set_ylabel(r"$\sigma_{\max}(\partial h_T / \partial h_t)$")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    save_figure(fig, path)


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; the outer cells as wide as their neighbours)."""
    c = np.asarray(centers, np.float64)
    if c.size < 2:
        return np.array([c[0] - 0.5, c[0] + 0.5]) if c.size else np.array([0.0, 1.0])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def plot_heatmap(
    steps: Any, t: Any, values: Any, path: str | Path, title: str, xlabel: str = "time step t", cbar_label: str = ""
) -> None:
    """A (training step x time step) image of log10 `values` (R, T); rows = `steps` (R,), columns = `t` (T,)."""
    values = np.asarray(values, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.where(values > 0, np.log10(values), np.nan)
    steps, t = np.asarray(steps), np.asarray(t)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    if logv.size and logv.shape == (steps.size, t.size):
        # cells are centred on their own training step and time step, so uneven spacing stays honest
        t_edges, step_edges = _edges(t), _edges(steps)
        mesh = ax.pcolormesh(t_edges, step_edges, logv, shading="flat", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label=cbar_label)
    else:
        ax.text(0.5, 0.5, "nothing recorded", transform=ax.transAxes, ha="center", va="center", color="0.35")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training step")
    ax.set_title(title)
    save_figure(fig, path)


def plot_training_grad_norm(runs: Sequence[dict[str, Any]], path: str | Path, title: str) -> None:
    """Pre-clip global gradient norm per logging step (mean and max over the interval) and clipped fraction.

    Each run: {"label", "steps" (N,), "grad_norm" (N,), "grad_norm_max" (N,), "clipped_fraction" (N,),
    optional "clip_norm" (float, drawn as a dashed line when > 0)}.
    """
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        ax.plot(r["steps"], _positive(r["grad_norm"]), color=color, lw=1.6, label=f"{r['label']} mean")
        ax.plot(r["steps"], _positive(r["grad_norm_max"]), color=color, lw=0.9, ls=":", label=f"{r['label']} max")
        ax2.plot(r["steps"], np.asarray(r["clipped_fraction"], np.float64), color=color, lw=1.4, label=r["label"])
        if r.get("clip_norm"):
            ax.axhline(r["clip_norm"], color=color, lw=0.8, ls="--", label=f"{r['label']} clip_norm")
    _log_scale(ax, "y", *(r["grad_norm"] for r in runs), *(r["grad_norm_max"] for r in runs))
    ax.set_ylabel("pre-clip global grad norm")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_ylabel("clipped fraction")
    ax2.set_xlabel("training step")
    ax2.grid(True, alpha=0.3)
    save_figure(fig, path)


def plot_metric_vs_length(
    seq_lens: Sequence[int],
    finals: Mapping[str, Sequence[Sequence[float]]],
    baseline: float,
    metric_name: str,
    path: str | Path,
    title: str = "",
) -> None:
    """Final metric against T, one line per cell: mean over seeds with min-max error bars, log-log.

    `finals[cell][j]` holds the per-seed values at `seq_lens[j]`.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    means = []
    for cell, per_len in finals.items():
        values = [_positive(v) for v in per_len]  # what a log axis can show; the rest are gaps
        shown = [v[np.isfinite(v)] for v in values]
        mean = np.array([v.mean() if v.size else np.nan for v in shown])
        err = np.array([[m - v.min(), v.max() - m] if v.size else [0.0, 0.0] for m, v in zip(mean, shown, strict=True)])
        ax.errorbar(seq_lens, mean, yerr=err.reshape(-1, 2).T, marker="o", capsize=3, label=cell)
        means.append(mean)
    if _finite_positive(baseline):
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"baseline {baseline:.3g}")
        means.append(np.asarray([baseline]))
    ax.set_xscale("log")
    _log_scale(ax, "y", *means)
    ax.set_xticks(list(seq_lens), [str(T) for T in seq_lens])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    save_figure(fig, path)

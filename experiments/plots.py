"""PNG figures of runs (matplotlib, Agg backend: no display needed)."""

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.io import atomic_write  # noqa: E402


def save_figure(fig: "plt.Figure", path: str | Path) -> None:
    """Write `fig` as PNG atomically and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"), mode="wb")
    plt.close(fig)


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
    for label, (steps, values) in curves.items():
        values = np.asarray(values, dtype=float).reshape(len(steps), -1)
        (line,) = ax.plot(steps, values.mean(axis=1), label=label, lw=1.8)
        if values.shape[1] > 1:
            ax.fill_between(steps, values.min(axis=1), values.max(axis=1), color=line.get_color(), alpha=0.2)
    ax.axhline(baseline, color="k", ls="--", lw=1, label=f"baseline {baseline:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"held-out {metric_name}")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)

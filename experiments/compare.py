"""The main job: train several cells on one task and put them side by side.

    python -m experiments.compare                     # rnn, lstm, gru on adding, T=100
    python -m experiments.compare --cells=lstm,gru --task=copy --seq_len=50 --steps=3000

Trains each cell with `train_and_evaluate` into `<workdir>/<cell>/`, prints a Markdown
table (final held-out metric, baseline, ratio, solved, steps/s) and writes
`<workdir>/comparison.md` and `<workdir>/learning_curves.png`.
"""

import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags

from experiments import io
from experiments.config import Config, ConfigError, check_workdir, validate_cells
from experiments.flags import FLAGS, config_from_flags, define_config_flags, list_flag, run
from experiments.report import fmt, markdown_table, mean_std
from experiments.train import StopSignal, check_resumable, train_and_evaluate

DEFAULTS = Config(task="adding", seq_len=100, hidden_size=64, batch_size=50, steps=2000, eval_every=100)


def compare(config: Config, cells: list[str], workdir: str | Path) -> str:
    """Train `cells` under `config`; return the Markdown table (also written to the workdir)."""
    configs = validate_cells(config, cells)  # every cell, and its saved run if any, before the first one trains
    if len({_dirname(cell) for cell in cells}) < len(cells):
        raise ConfigError(f"--cells={','.join(cells)}: two entries share a folder name ({_DIRNAME_RULE})")
    workdir = check_workdir(workdir)
    for cell, c in configs.items():
        check_resumable(c, check_workdir(workdir / _dirname(cell)))
    results = {}
    with StopSignal() as stop:  # a signal stops every cell, not just the one training (then no table)
        for cell, c in configs.items():
            results[cell] = train_and_evaluate(c, workdir / _dirname(cell))
            if name := results[cell]["stopped_by"] or (stop.received and signal.Signals(stop.received).name):
                print(f"error: {name} received: stopped at cell {cell}; comparison.md was not written; rerun the "
                      "same command to resume", file=sys.stderr)  # fmt: skip
                sys.exit(128 + signal.Signals[name].value)
    table = comparison_table(results)
    io.atomic_write(workdir / "comparison.md", lambda f: f.write(table + "\n"))
    first = next(iter(results.values()))
    curves = {}
    for cell in cells:
        records = io.read_jsonl(workdir / _dirname(cell) / "metrics.jsonl")
        steps = sorted({r["step"] for r in records})
        values = np.array([[r["eval_loss"] for r in records if r["step"] == s] for s in steps])
        curves[cell] = (steps, values)
    from experiments.plots import plot_learning_curves  # matplotlib: imported only once there is something to plot

    title = f"{config.task}, T={config.seq_len}, hidden {config.hidden_size}, {config.optimizer} {config.learning_rate}"
    plot_learning_curves(curves, first["baseline"], first["metric"], workdir / "learning_curves.png", title)
    return table


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per cell: final held-out metric (mean ± std over seeds), baseline, ratio, ..."""
    first = next(iter(results.values()))
    extra = sorted(k for k in first["mean"] if k not in ("loss", "ratio"))
    headers = ["cell", "T", f"final {first['metric']}", "baseline", "ratio", *extra, "solved", "steps/s"]
    rows = []
    for cell, r in results.items():
        finals = [s["final"] for s in r["seeds"]]
        rows.append([
            cell, r["seq_len"], mean_std([f["loss"] for f in finals]), fmt(r["baseline"]),
            mean_std([f["ratio"] for f in finals]), *(mean_std([f[k] for f in finals]) for k in extra),
            f"{sum(s['solved'] for s in r['seeds'])}/{len(finals)}", fmt(r["steps_per_s"]),
        ])  # fmt: skip
    return markdown_table(headers, rows)


_DIRNAME_RULE = "a cell's folder is its name with ':' and '.' replaced by '_'"


def _dirname(cell: str) -> str:
    return cell.replace(":", "_").replace(".", "_")


def main(argv: list[str]) -> None:
    cells = list_flag(FLAGS.cells, "cells")
    print(compare(config_from_flags(), cells, FLAGS.workdir))
    print(f"\nwrote {Path(FLAGS.workdir) / 'comparison.md'} and {Path(FLAGS.workdir) / 'learning_curves.png'}")


if __name__ == "__main__":
    define_config_flags(DEFAULTS, exclude=("cell",))
    flags.DEFINE_string("cells", "rnn,lstm,gru", "Comma-separated cells: registered names or package.module:Class.")
    flags.DEFINE_string("workdir", "runs/compare", "Output folder (one subfolder per cell; reruns resume).")
    run(main)

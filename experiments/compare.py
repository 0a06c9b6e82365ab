"""The main job: train several cells on one task and put them side by side.

    python -m experiments.compare                     # rnn, lstm, gru on adding, T=100
    python -m experiments.compare --cells=lstm,gru --task=copy --seq_len=50 --steps=3000

The one-length case of a sweep (`experiments.sweep`, the code behind `benchmarks.tables`): each cell
trains with `train_and_evaluate` into `<workdir>/<cell>_T<T>/` (a rerun resumes or skips it), and
`<workdir>/comparison.md` (final held-out metrics as the task declares them, solved fraction),
`comparison.csv` and `comparison_curves_T<T>.png` are written by the same report code as the tables.
"""

import dataclasses
import shlex
import sys
import time
from pathlib import Path

from absl import flags

from experiments.config import Config
from experiments.flags import FLAGS, config_from_flags, define_config_flags, list_flag, run
from experiments.grid import Sweep
from experiments.sweep import check_points, exit_on_signal, run_inline
from experiments.sweep_report import write_report

DEFAULTS = Config(task="adding", seq_len=100, hidden_size=64, batch_size=50, steps=2000, eval_every=100)
NAME = "comparison"
OWN_FIELDS = {f.name: f.name for f in dataclasses.fields(Config)} | {"cell": "cells"}  # the flags of each field


def comparison_sweep(config: Config, cells: list[str]) -> Sweep:
    """`config` for each of `cells`, at its one length: a sweep with one column."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("cell", "seq_len")}
    return Sweep(settings=settings, grid={"cell": tuple(cells), "seq_len": (config.seq_len,)}, diagnostics=False)


def compare(config: Config, cells: list[str], workdir: str | Path) -> str:
    """Train `cells` under `config`; return the Markdown report (also written to the workdir)."""
    sweep = comparison_sweep(config, cells)
    points = sweep.points()
    with exit_on_signal("checking the cells; nothing was trained"):
        workdir = check_points(points, workdir, sweep.measure, flag="workdir", own_flags=OWN_FIELDS)
    t0 = time.perf_counter()
    loaded = run_inline(sweep.measure, points, workdir, NAME)
    command = "python -m experiments.compare " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return write_report(workdir, NAME, sweep, loaded, command, time.perf_counter() - t0)


def main(argv: list[str]) -> None:
    cells = list_flag(FLAGS.cells, "cells")
    print(compare(config_from_flags(), cells, FLAGS.workdir))
    print(f"wrote {Path(FLAGS.workdir) / (NAME + '.md')}, {NAME}.csv and {NAME}_curves_T{FLAGS.seq_len}.png")


if __name__ == "__main__":
    define_config_flags(DEFAULTS, exclude=("cell",))
    flags.DEFINE_string("cells", "rnn,lstm,gru", "Comma-separated cells: registered names or package.module:Class.")
    flags.DEFINE_string("workdir", "runs/compare", "Output folder (one subfolder per cell; reruns resume).")
    run(main)

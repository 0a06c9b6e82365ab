"""Peak memory and step time of training with and without `--remat`, side by side in one run.

    python -m benchmarks.memory                    # adding, T=5000, H=128, B=50, lstm/gru/rnn
    python -m benchmarks.memory --preset=quick     # seconds; what the test runs

Each configuration trains for a few steps in its own `python -m experiments.train` process;
its peak RSS comes from `os.wait4` (the child's own `ru_maxrss`), its step time from the
run's `results.json` (compilation excluded). The estimate column is what
`experiments.config` uses to refuse runs that cannot fit (`SequenceModel.activation_bytes`).
"""

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import flags

from experiments import io
from experiments.build import build
from experiments.config import Config, ConfigError, check_out_file
from experiments.flags import list_flag, run
from experiments.report import fmt, markdown_table
from experiments.validation import validate_cells

PRESETS = {
    "full": dict(seq_len=5000, hidden_size=128, batch_size=50, steps=6),
    "quick": dict(seq_len=200, hidden_size=16, batch_size=8, steps=4),
}
FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_enum("preset", "full", list(PRESETS), "Problem size.")
    flags.DEFINE_string("cells", "lstm,gru,rnn", "Cells to measure (comma-separated names or package.module:Class).")
    flags.DEFINE_integer("remat", 0, "Chunk length with remat, in [1, T-1]; 0 = sqrt(T).")
    flags.DEFINE_string("out", None, "Also write the table to this Markdown file.")


def configs_from_flags() -> tuple[dict, int, dict[str, dict[int, Config]]]:
    """The preset, the remat chunk k and, per cell, the validated config of each child run (remat off and k).

    Everything the children will do is checked here, before the first one starts.
    """
    preset = PRESETS[FLAGS.preset]
    T = preset["seq_len"]
    if not 0 <= FLAGS.remat < T:
        raise ConfigError(f"--remat={FLAGS.remat}: must be an integer in [0, {T - 1}] (T of --preset={FLAGS.preset})")
    k = FLAGS.remat or math.isqrt(T)
    if FLAGS.out is not None:
        check_out_file(FLAGS.out)
    cells = list_flag(FLAGS.cells, "cells")
    base = Config(task="adding", eval_every=2, eval_size=10, checkpoint_every=0, **preset)
    configs = {remat: validate_cells(base.replace(remat=remat), cells) for remat in (0, k)}
    return preset, k, {cell: {remat: configs[remat][cell] for remat in (0, k)} for cell in cells}


def measure(config: Config, workdir: Path) -> dict:
    """Train a few steps in a child process; return its peak RSS and steps/s."""
    flags_ = [f"--{k}={v}" for k, v in config.to_dict().items() if v != ""]
    args = [sys.executable, "-m", "experiments.train", *flags_, f"--workdir={workdir}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read()
    if status != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{stderr[-2000:]}")
    results = io.read_json(workdir / "results.json")
    return {"peak_rss_gib": usage.ru_maxrss / 2**20, "steps_per_s": results["steps_per_s"]}


def main(argv: list[str]) -> None:
    preset, k, configs = configs_from_flags()
    T = preset["seq_len"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell, by_remat in configs.items():
            measured = {}
            for remat, config in by_remat.items():
                task, _, model, _ = build(config)
                estimate = model.activation_bytes(config.batch_size, task.length, task.input_size) / 2**30
                m = measure(config, Path(tmp) / f"{len(rows)}_{remat}")
                measured[remat] = m
                rows.append([cell, remat or "off", fmt(estimate), fmt(m["peak_rss_gib"]), fmt(1 / m["steps_per_s"])])
            rows[-1].append(fmt(measured[0]["peak_rss_gib"] / measured[k]["peak_rss_gib"]))
            rows[-1].append(fmt(measured[0]["steps_per_s"] / measured[k]["steps_per_s"]))
            rows[-2] += ["", ""]
    headers = ["cell", "remat", "activations estimate GiB", "peak RSS GiB", "s/step", "RSS off/remat", "time remat/off"]
    title = f"adding T={T}, hidden {preset['hidden_size']}, batch {preset['batch_size']}, remat chunk {k}"
    table = f"{title}\n\n{markdown_table(headers, rows)}"
    print(table)
    if FLAGS.out:
        io.atomic_write(FLAGS.out, lambda f: f.write(table + "\n"))


if __name__ == "__main__":
    define_flags()
    run(main, groups={"what to measure": ("preset", "cells", "remat"), "output": ("out",)})

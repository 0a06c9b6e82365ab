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
train_grad_norm.png (from its metrics.jsonl). The command line of `experiments.gradient_measure`
(what is measured) and `experiments.gradient_report` (what is written).
"""

import dataclasses
from typing import Any

from absl import flags

from experiments import diagnostics as diag
from experiments.config import TRAINING_FIELDS, Config, ConfigError, check_workdir
from experiments.flags import FLAGS, config_from_flags, define_config_flags, list_flag, run
from experiments.gradient_measure import Spec, check_same_task, check_settings, measure_specs, trained_spec
from experiments.gradient_report import markdown_tables, save_results, write_plots
from experiments.validation import validate_cells

FLAG_GROUPS = {
    "diagnostics": ("from_workdirs", "batch", "horizon_fraction", "jacobian_points", "jacobian_examples", "power_iters")
}


def main(argv: list[str]) -> None:
    check_settings(
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

    runs, ts = measure_specs(
        specs, FLAGS.batch, FLAGS.horizon_fraction, FLAGS.jacobian_points, FLAGS.jacobian_examples, FLAGS.power_iters
    )
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


if __name__ == "__main__":
    define_flags()
    run(main, groups=FLAG_GROUPS)

"""Train one cell on one task: every seed (and learning rate) in one program, resuming an existing workdir.

    python -m experiments.train --cell=lstm --task=adding --seq_len=100 --workdir=runs/x

The command line of `experiments.trainer.train_and_evaluate`: one flag per Config field (`experiments.flags`),
and --workdir. Exits 128 + the signal's number when SIGTERM/SIGINT stopped the run (rerun to resume).
"""

import signal
import sys

from absl import flags

from experiments.flags import FLAGS, config_from_flags, define_config_flags, run
from experiments.trainer import train_and_evaluate


def main(argv: list[str]) -> None:
    results = train_and_evaluate(config_from_flags(), FLAGS.workdir)
    if results["stopped_by"]:
        sys.exit(128 + signal.Signals[results["stopped_by"]].value)


if __name__ == "__main__":
    define_config_flags()
    flags.DEFINE_string("workdir", "runs/train", "Output folder; an existing one with the same flags resumes.")
    run(main)

"""TensorBoard event files beside metrics.jsonl: one run per seed, `<workdir>/tb/seed_<s>/`, and in a
learning-rate sweep one per member, `<workdir>/tb/lr_<rate>/seed_<s>/`.

    tensorboard --logdir runs/x/tb          # or --logdir results/quick/adding for a whole table

`experiments.train` hands `TensorBoardLog.write` the host-side records it appends to
metrics.jsonl, at the logging steps only (no extra host sync): every numeric field becomes a scalar,
its tag grouped by what it measures so TensorBoard folds each group (`tag`): `train/loss`,
`train/diverged` (0/1), `train/steps_per_s`; `eval/<metric>` (the test split: `eval/loss`,
`eval/ratio`, ...), `valid/<metric>` in a learning-rate sweep; `grad/norm`, `grad/norm_max`,
`grad/clipped_fraction`. Not `learning_rate`, which the folder names; `null` fields are skipped. The events
are written with tensorboardX's `SummaryWriter` (`add_scalar`), flushed at each logging step and by its
writer thread at least once a second (`FLUSH_SECS`), and on close.

Each process that trains a run writes a new event file per member, and `TensorBoardLog.start` tells it
the step it trains from. Its first event is TensorBoard's restart marker (`SummaryWriter(purge_step=...)`,
a `SessionLog.START` event) at the first step it logs anew: TensorBoard hides every event that earlier
processes logged at that step or later (all of them, for a rerun from step 0), as metrics.jsonl is cut
back. So after any number of kills and reruns TensorBoard shows each logging step once, and the files
earlier processes wrote are kept as they are: nothing logged is lost, and nothing here reads event files.

tensorboardX is imported on first use, with PyTorch hidden from it: its package imports PyTorch when
that is installed (1.1 s here) for tensor types this module never passes it.
"""

import os
import sys
import time
from pathlib import Path
from typing import Any

FOLDER = "tb"
# metrics.jsonl field -> TensorBoard tag, for the fields without a split prefix (eval_<k> -> eval/<k>, valid_<k> ...)
TAGS = {
    "train_loss": "train/loss",
    "diverged": "train/diverged",
    "steps_per_s": "train/steps_per_s",
    "grad_norm": "grad/norm",
    "grad_norm_max": "grad/norm_max",
    "clipped_fraction": "grad/clipped_fraction",
}
SPLITS = ("eval", "valid", "train")


def tag(field: str) -> str:
    """The TensorBoard tag of a metrics.jsonl field: `train_loss` -> `train/loss`, `eval_accuracy` ->
    `eval/accuracy`, `grad_norm` -> `grad/norm`; a field of no group keeps its name."""
    if field in TAGS:
        return TAGS[field]
    prefix, _, rest = field.partition("_")
    return f"{prefix}/{rest}" if prefix in SPLITS and rest else field


FLUSH_SECS = 1  # the writer thread's flush interval, beside the flush at each logging step


def _summary_writer() -> type:
    """tensorboardX's `SummaryWriter` class (imported once, without PyTorch)."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError: tensorboardX falls back to numpy
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


def seed_dir(workdir: str | Path, seed: int, learning_rate: float | None = None) -> Path:
    """The event folder of one member: tb/seed_<s>, or tb/lr_<rate>/seed_<s> in a sweep (`learning_rate` given;
    the rate as Python writes it, e.g. lr_0.0003, so distinct rates get distinct folders)."""
    sweep = f"lr_{float(learning_rate)!r}" if learning_rate is not None else ""
    return Path(workdir) / FOLDER / sweep / f"seed_{seed}"


class TensorBoardLog:
    """Per-member event files of one training process, opened on first write; `sweep`: folders per rate too."""

    def __init__(self, workdir: str | Path, sweep: bool = False):
        self.workdir = Path(workdir)
        self.sweep = sweep
        self._purge_step = 0  # the first step this process logs anew: what was logged there and later is hidden
        self._writers: dict[tuple[int, float | None], Any] = {}  # (seed, rate) -> tensorboardX SummaryWriter

    def start(self, step: int) -> None:
        """This process trains from `step` (0: from scratch, logging step 0 again): TensorBoard is to hide
        what earlier processes logged after `step` (from 0: all of it). Call it before the first `write`."""
        self._purge_step = step + 1 if step else 0

    def _writer(self, seed: int, learning_rate: float | None) -> Any:
        key = (seed, learning_rate)
        if key not in self._writers:
            folder = seed_dir(self.workdir, seed, learning_rate)
            folder.mkdir(parents=True, exist_ok=True)
            # time in ns: two processes within one second (a quick resume) get two files, in order
            self._writers[key] = _summary_writer()(
                str(folder),
                purge_step=self._purge_step,
                flush_secs=FLUSH_SECS,
                filename_suffix=f".{time.time_ns()}.{os.getpid()}",
            )
        return self._writers[key]

    def write(self, records: list[dict]) -> None:
        """One scalar per numeric field of each metrics.jsonl record (tagged by `tag`), at its step, per member."""
        now = time.time()
        for record in records:
            writer = self._writer(record["seed"], record.get("learning_rate") if self.sweep else None)
            for key, value in record.items():
                if key in ("step", "seed", "learning_rate") or value is None or not isinstance(value, int | float):
                    continue
                writer.add_scalar(tag(key), float(value), record["step"], walltime=now)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

"""TensorBoard event files beside metrics.jsonl: one run per seed, `<workdir>/tb/seed_<s>/`, and in a
learning-rate sweep one per member, `<workdir>/tb/lr_<rate>/seed_<s>/`.

    tensorboard --logdir runs/x/tb          # or --logdir results/quick/adding for a whole table

`experiments.train` hands `TensorBoardLog.write` the host-side records it appends to
metrics.jsonl, at the logging steps only (no extra host sync): every numeric field becomes a scalar,
its tag grouped by what it measures so TensorBoard folds each group (`tag`): `train/loss`,
`train/diverged` (0/1), `train/steps_per_s`; `eval/<metric>` (the test split: `eval/loss`,
`eval/ratio`, ...), `valid/<metric>` in a learning-rate sweep; `grad/norm`, `grad/norm_max`,
`grad/clipped_fraction`. Not `learning_rate`, which the folder names; `null` fields are skipped. The events
are written with tensorboardX's own event writer (`EventsWriter`, `summary.scalar`),
synchronously: no background thread or queue per seed,
and each logging step is flushed (and fsynced) before training goes on, so a killed run loses
nothing it logged.

Each process that trains a run writes a new event file per member. Before it logs anything,
`TensorBoardLog.start` removes what earlier processes logged after the step it trains from (all of it, for a
rerun from step 0), as metrics.jsonl is cut back: after any number of kills and reruns each step appears once, for
TensorBoard and for any reader of the files. The events kept are rewritten into the oldest event file
(atomically), and the others are removed; a kill in between leaves copies that the next start removes.

tensorboardX is imported on first use, with PyTorch hidden from it: its package imports PyTorch when
that is installed (1.1 s here) for tensor types this module never passes it.
"""

import os
import sys
import time
import types
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


_TBX: list[types.SimpleNamespace] = []


def _tbx() -> types.SimpleNamespace:
    """tensorboardX's event writer, Event protobufs and scalar summary (imported once)."""
    if _TBX:
        return _TBX[0]
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError: tensorboardX falls back to numpy
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.summary import scalar
    finally:
        if hide:
            del sys.modules["torch"]
    _TBX.append(types.SimpleNamespace(EventsWriter=EventsWriter, Event=Event, SessionLog=SessionLog, scalar=scalar))
    return _TBX[0]


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
        self._writers: dict[tuple[int, float | None], Any] = {}  # (seed, rate) -> tensorboardX EventsWriter

    def start(self, step: int) -> None:
        """This process trains from `step` (0: from scratch, logging step 0 again): remove the events earlier
        processes logged after `step` (from 0: all of them), and any logged twice, in every run folder."""
        folder = self.workdir / FOLDER
        if folder.is_dir():
            for run in sorted({p.parent for p in _event_files(folder, "**/")}):
                keep_until(run, step if step else -1)

    def _writer(self, seed: int, learning_rate: float | None) -> Any:
        key = (seed, learning_rate)
        if key not in self._writers:
            tbx = _tbx()
            folder = seed_dir(self.workdir, seed, learning_rate)
            folder.mkdir(parents=True, exist_ok=True)
            # time in ns: two processes within one second (a quick resume) get two files, in order
            writer = tbx.EventsWriter(str(folder / "events"), f".{time.time_ns()}.{os.getpid()}")
            self._writers[key] = writer
        return self._writers[key]

    def write(self, records: list[dict]) -> None:
        """One scalar per numeric field of each metrics.jsonl record (tagged by `tag`), at its step, per member."""
        now, tbx = time.time(), _tbx()
        for record in records:
            writer = self._writer(record["seed"], record.get("learning_rate") if self.sweep else None)
            for key, value in record.items():
                if key in ("step", "seed", "learning_rate") or value is None or not isinstance(value, int | float):
                    continue
                summary = tbx.scalar(tag(key), float(value))
                writer.write_event(tbx.Event(wall_time=now, step=record["step"], summary=summary))
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _records(path: Path) -> list[tuple[bytes, Any]]:
    """(the record's bytes, its Event) of each whole record of an event file, in order.

    The TFRecord framing: length (8 bytes), its crc (4), the Event proto, its crc (4). A torn last record
    (a killed writer) ends the file, and so does one that does not parse."""
    import struct

    from google.protobuf.message import DecodeError

    Event = _tbx().Event
    data, offset, found = path.read_bytes(), 0, []
    while offset + 12 <= len(data):
        (length,) = struct.unpack("Q", data[offset : offset + 8])
        start, end = offset + 12, offset + 12 + length
        if end + 4 > len(data):
            break
        try:
            event = Event.FromString(data[start:end])
        except DecodeError:
            break
        found.append((data[offset : end + 4], event))
        offset = end + 4
    return found


def _event_files(folder: Path, under: str = "") -> list[Path]:
    """The event files in `folder` (`under="**/"`: and below it), in name order: regular files only, never a
    link (whose target is not the run's) nor anything else that bears the name."""
    return sorted(p for p in folder.glob(f"{under}events.out.tfevents.*") if p.is_file() and not p.is_symlink())


def keep_until(folder: str | Path, last: int) -> None:
    """Keep, of the scalars in one run folder's event files, those at steps <= `last`, each (tag, step) once
    (the first logged): rewrite them into the oldest file, whole records copied as they are, and remove the
    other files. Nothing is rewritten when nothing is to be removed."""
    from experiments import io

    paths = _event_files(Path(folder))
    files = [_records(p) for p in paths]
    kept, seen, header = [], set(), None
    for records in files:
        for raw, event in records:
            if event.HasField("file_version"):
                header = header or raw
                continue
            keys = {(v.tag, event.step) for v in event.summary.value}
            if event.step <= last and keys and not keys & seen:
                kept.append(raw)
                seen |= keys
    if len(paths) <= 1 and sum(len(r) for r in files) == len(kept) + (header is not None):
        return  # one file, nothing after `last`, nothing twice
    if kept:
        io.atomic_write(paths[0], lambda f: f.write(b"".join([header or b"", *kept])), mode="wb")
    for path in paths[1:] if kept else paths:
        path.unlink(missing_ok=True)


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of one run folder, as {tag: [(step, value), ...]} in file order (a torn
    last record, from a killed writer, ends its file)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in _event_files(Path(folder)):
        for _, event in _records(path):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(value.simple_value)))
    return scalars

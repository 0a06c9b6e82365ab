"""TensorBoard event files beside metrics.jsonl: one run per seed, `<workdir>/tb/seed_<s>/`, and in a
learning-rate sweep one per member, `<workdir>/tb/lr_<rate>/seed_<s>/`.

    tensorboard --logdir runs/x/tb          # or --logdir results/quick/adding for a whole table

`experiments.train` hands `TensorBoardLog.write` the host-side records it appends to
metrics.jsonl, at the logging steps only (no extra host sync): every numeric field becomes a scalar
with the same name (`train_loss`, `eval_loss`, `eval_ratio`, `grad_norm`, ..., `diverged` as 0/1,
`steps_per_s`; not `learning_rate`, which the folder names); `null` fields are skipped. The events
are written with tensorboardX's own event writer (`EventsWriter`, `summary.scalar`),
synchronously: no background thread or queue per seed,
and each logging step is flushed (and fsynced) before training goes on, so a killed run loses
nothing it logged.

A resumed run appends a new event file to each seed's folder, starting with the `purge_step`
marker tensorboardX's SummaryWriter writes: TensorBoard then hides the points an interrupted
process logged after the checkpoint the run resumed from, and which the resumed run logs again.
Readers that ignore that marker (`read_scalars` below keeps every event) see those steps twice.

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
        self.purge_step: int | None = None
        self._writers: dict[tuple[int, float | None], Any] = {}  # (seed, rate) -> tensorboardX EventsWriter

    def resume(self, step: int) -> None:
        """This process continues a run from `step`: events after it, logged by earlier processes, are orphans."""
        self.purge_step = step + 1 if step else None

    def _writer(self, seed: int, learning_rate: float | None) -> Any:
        key = (seed, learning_rate)
        if key not in self._writers:
            tbx = _tbx()
            folder = seed_dir(self.workdir, seed, learning_rate)
            folder.mkdir(parents=True, exist_ok=True)
            # time in ns: two processes within one second (a quick resume) get two files, in order
            writer = tbx.EventsWriter(str(folder / "events"), f".{time.time_ns()}.{os.getpid()}")
            if self.purge_step is not None:
                start = tbx.SessionLog(status=tbx.SessionLog.START)
                writer.write_event(tbx.Event(wall_time=time.time(), step=self.purge_step, session_log=start))
            self._writers[key] = writer
        return self._writers[key]

    def write(self, records: list[dict]) -> None:
        """One scalar per numeric field of each metrics.jsonl record, at the record's step, per member."""
        now, tbx = time.time(), _tbx()
        for record in records:
            writer = self._writer(record["seed"], record.get("learning_rate") if self.sweep else None)
            for key, value in record.items():
                if key in ("step", "seed", "learning_rate") or value is None or not isinstance(value, int | float):
                    continue
                summary = tbx.scalar(key, float(value))
                writer.write_event(tbx.Event(wall_time=now, step=record["step"], summary=summary))
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of one run folder, as {tag: [(step, value), ...]} in file order.

    Reads the TFRecord framing (length, crc, Event proto, crc) with tensorboardX's protobufs; a torn
    last record (a killed writer) ends that file."""
    import struct

    Event = _tbx().Event
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("Q", data[offset : offset + 8])
            start, end = offset + 12, offset + 12 + length
            if end + 4 > len(data):
                break
            event = Event.FromString(data[start:end])
            offset = end + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(value.simple_value)))
    return scalars

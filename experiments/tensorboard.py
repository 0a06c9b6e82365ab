"""TensorBoard event files beside metrics.jsonl: one run per seed, `<workdir>/tb/seed_<s>/`.

    tensorboard --logdir runs/x/tb          # or --logdir benchmarks/results/adding for a whole table

`experiments.train` hands `TensorBoardLog.write` the host-side records it appends to
metrics.jsonl, at the logging steps only (no extra host sync): every numeric field becomes a scalar
with the same name (`train_loss`, `eval_loss`, `eval_ratio`, `grad_norm`, ..., `diverged` as 0/1,
`steps_per_s`); `null` fields are skipped. The events are written with tensorboardX's own event
writer (`EventsWriter`, `summary.scalar`), synchronously: no background thread or queue per seed,
and each logging step is flushed (and fsynced) before training goes on, so a killed run loses
nothing it logged.

A resumed run appends a new event file to each seed's folder, starting with the `purge_step`
marker tensorboardX's SummaryWriter writes: TensorBoard then hides the points an interrupted
session logged after the checkpoint the run resumed from, and which the resumed run logs again.
Readers that ignore that marker (`read_scalars` below keeps every event) see those steps twice.
"""

import os
import time
from pathlib import Path

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar

FOLDER = "tb"


def seed_dir(workdir: str | Path, seed: int) -> Path:
    return Path(workdir) / FOLDER / f"seed_{seed}"


class TensorBoardLog:
    """Per-seed event files of one training session, opened on first write."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.purge_step: int | None = None
        self._writers: dict[int, EventsWriter] = {}

    def resume(self, step: int) -> None:
        """This session continues a run from `step`: events after it from earlier sessions are orphans."""
        self.purge_step = step + 1 if step else None

    def _writer(self, seed: int) -> EventsWriter:
        if seed not in self._writers:
            folder = seed_dir(self.workdir, seed)
            folder.mkdir(parents=True, exist_ok=True)
            # time in ns: two sessions within one second (a quick resume) get two files, in order
            writer = EventsWriter(str(folder / "events"), f".{time.time_ns()}.{os.getpid()}")
            if self.purge_step is not None:
                writer.write_event(
                    Event(wall_time=time.time(), step=self.purge_step, session_log=SessionLog(status=SessionLog.START))
                )
            self._writers[seed] = writer
        return self._writers[seed]

    def write(self, records: list[dict]) -> None:
        """One scalar per numeric field of each metrics.jsonl record, at the record's step, per seed."""
        now = time.time()
        for record in records:
            writer = self._writer(record["seed"])
            for key, value in record.items():
                if key in ("step", "seed") or value is None or not isinstance(value, int | float):
                    continue
                writer.write_event(Event(wall_time=now, step=record["step"], summary=scalar(key, float(value))))
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

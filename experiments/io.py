"""Files of a run: atomic writes (temp file + rename) and a kill-safe JSON-lines log."""

import errno
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new file `.<name>.<random>.tmp` in `folder`, opened for writing, with the permissions `open()` gives
    (0o666 less the process's umask, applied by the kernel: the umask is never read or changed here)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "w") -> None:
    """Write via `write(file)` to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=_to_builtin))


def read_text(path: str | Path) -> str:
    """The UTF-8 text of the regular file at `path` (a link to one is followed). A FIFO, device or socket is an
    OSError, never waited on: a reader of a folder someone else prepared does not hang on what stands there."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read().decode("utf-8")


def loads(text: str) -> Any:
    """json.loads, with JSON nested deeper than Python's recursion limit a ValueError too (not a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not JSON that can be read: nested too deeply") from None


def read_json(path: str | Path) -> Any:
    """The JSON value in the file at `path`: OSError if it cannot be read (or is not a regular file: `read_text`),
    ValueError if it is not JSON (or not UTF-8, or nested too deeply)."""
    return loads(read_text(path))


def append_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Append records, one per line, and fsync; a kill loses at most the line being written. A symbolic link at
    `path` is not followed (OSError): the log is a file of the run's own."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "a") as f:
        f.write("".join(json.dumps(r, sort_keys=True, default=_to_builtin) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All complete records; a torn last line (from kill -9) is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in read_text(path).splitlines():
        try:
            records.append(loads(line))
        except ValueError:  # json.JSONDecodeError is one
            continue
    return records


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Replace the whole file atomically."""
    atomic_write(path, lambda f: f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records)))


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")


class DiskFullError(OSError):
    """A write under `where` failed for lack of space (or quota); what was written before is intact."""

    def __init__(self, where: str | Path):
        super().__init__(errno.ENOSPC, "no space left on device", str(where))


def disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from, is a full disk or quota. orbax and tensorstore
    wrap the OSError in their own exceptions, sometimes keeping only its message."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        if any(m in str(e) for m in DISK_FULL_MESSAGES):
            return True
        e = e.__cause__ or e.__context__
    return False


def _to_builtin(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")

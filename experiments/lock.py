"""One process per workdir: an OS file lock on `<workdir>/.lock`, held for the whole run.

    with workdir_lock(workdir):
        ...  # train, write outputs

`fcntl.flock` on an open file: the kernel releases it when the file is closed, which happens
when the process exits however it exits (return, exception, SIGKILL, OOM kill), so a dead
process never leaves a stale lock behind. The file itself stays (it holds the last owner's
pid, for the message); its presence means nothing. A second process that asks for a held lock
gets `WorkdirLockedError` after a quarter of a second of retries (`held_by`, which `benchmarks.tables
--status` uses, probes a lock by taking it, shared, for an instant: a run starting at that instant
retries instead of taking its workdir for busy). Works on local filesystems; on NFS, flock is
emulated with fcntl byte-range locks by Linux >= 2.6.12, which a cluster launcher can rely on
only where the NFS server supports locking.

The lock file is opened without following a symbolic link (`O_NOFOLLOW`) and used only when it is a
regular file with no other name (one link): a link or hard link planted at `<workdir>/.lock` would
otherwise have the pid written into the file it points at. Such a lock is refused in one line.
"""

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from experiments.config import ConfigError

LOCK_NAME = ".lock"
RETRIES = 5  # tries, RETRY_S apart, before a held lock is reported as held
RETRY_S = 0.05


class WorkdirLockedError(ConfigError):
    """The workdir is being used by another process (one line naming it and the other pid)."""

    def __init__(self, workdir: Path, pid: int | None, flag: str = "workdir"):
        self.workdir, self.pid = workdir, pid
        super().__init__(f"--{flag}={workdir}: is being trained by another process (pid {pid or 'unknown'})")


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike, flag: str = "workdir") -> Iterator[None]:
    """Hold the exclusive lock of `workdir` (an existing folder) for the body; `WorkdirLockedError` if
    another process (or another open of the same lock in this process) holds it."""
    path = Path(workdir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise ConfigError(f"--{flag}={workdir}: cannot open its lock file {path} ({why}); move it away") from None
    try:
        if why := _not_own_file(fd):
            raise ConfigError(f"--{flag}={workdir}: refusing its lock file {path} ({why}); move it away")
        for attempt in range(RETRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if attempt == RETRIES - 1:
                    raise WorkdirLockedError(Path(workdir), _owner(fd), flag) from None
                time.sleep(RETRY_S)
        with contextlib.suppress(OSError):  # the pid is for the message only (a full disk may refuse it)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _not_own_file(fd: int) -> str | None:
    """Why the open lock file `fd` is not one the lock may write its pid into (None when it may)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    if info.st_nlink > 1:
        return f"it is a hard link: the file has {info.st_nlink} names"
    return None


def held_by(workdir: str | os.PathLike) -> int | None:
    """Whether a process holds `workdir`'s lock, without waiting: None if none does, else the holder's pid
    (0 while it has not written it yet). Takes the lock, shared, for an instant when it is free. A lock file
    that no run could hold (a link, a FIFO, ...) is held by none."""
    try:
        fd = os.open(Path(workdir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no lock file (nothing ever ran there), or a link: no run holds it
    try:
        if _not_own_file(fd):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            return _owner(fd) or 0
        return None
    finally:
        os.close(fd)  # releases the shared lock


def _owner(fd: int) -> int | None:
    """The pid the holder wrote (None while it has not yet written it)."""
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None

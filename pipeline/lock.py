"""One writer per output folder and per partition: an exclusive OS file lock (``flock``).

Why a kernel lock and not a marker file: the kernel releases a ``flock`` when its holder's last file
descriptor closes, which includes the holder being SIGKILLed, OOM-killed or losing its worker. So a
second writer is refused while the first one lives, and a dead holder never blocks a resume (there is
no stale marker to clear by hand).

The lock file holds one JSON line naming its holder (host, pid, flow run id, start time), so a refused
writer can say who is writing. The folder's lock lives in ``.medpref-progress/lock`` and each
partition's in its own ``part-*/lock``; a finished run removes ``.medpref-progress`` (and with it the
lock files), so a writer that waited re-checks that the file it locked is still the one at that path
(``acquire`` returns None when it is not, and the caller looks at the folder again).

``flock`` works on local file systems and on NFS (Linux emulates it with POSIX locks there); on a
file system without locks ``acquire`` fails with a one-line ``LockError``.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "lock"


class LockHeld(RuntimeError):
    """Another live process holds the lock; the message is one line naming it."""


class LockError(RuntimeError):
    """The lock could not be taken at all (no lock support, no permission); one line."""


def holder_info(what: str, flow_run_id: str | None = None) -> dict:
    """Who is taking the lock. ``flow_run_id`` defaults to the one a Prefect worker or ``serve`` puts in
    the environment of a flow-run process (this module does not import Prefect)."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "flow_run_id": flow_run_id or os.environ.get("PREFECT__FLOW_RUN_ID") or None, "what": what,
            "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def read_holder(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    text = f"host {holder.get('host', '?')} pid {holder.get('pid', '?')}"
    if holder.get("flow_run_id"):
        text += f" (flow run {holder['flow_run_id']})"
    if holder.get("since"):
        text += f" since {holder['since']}"
    return text


@dataclass
class FileLock:
    """A held lock; ``release``, dropping the last reference, or the holder's death frees it."""

    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __del__(self) -> None:  # like a file object: a lock nobody refers to any more is let go
        self.release()

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(path: str | Path, holder: dict, *, wait: bool = False, label: str = "") -> FileLock | None:
    """Take the exclusive lock at ``path`` (its folder is created). Without ``wait`` a held lock raises
    ``LockHeld`` at once; with it, this blocks until the holder ends. Returns None when the file was
    removed or replaced while it was being locked (a finished run removed it): look again."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise LockError(f"cannot create the lock {str(path)!r}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockHeld(f"{label or str(path.parent)!s} is being written by {describe(read_holder(path))}; "
                           "wait for it to end, or pass --wait-for-lock") from None
        raise LockError(f"cannot lock {str(path)!r}: {e.strerror or e}") from e
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    data = (json.dumps(holder, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return FileLock(path, fd)


def check_free(path: str | Path, *, label: str = "") -> None:
    """Raise ``LockHeld`` now if a live process holds the lock at ``path`` (creates nothing): lets a
    refused writer say so before it spends seconds scanning a manifest."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or unreadable): acquire() decides later
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockHeld(f"{label or str(Path(path).parent)!s} is being written by "
                           f"{describe(read_holder(Path(path)))}; wait for it to end, or pass --wait-for-lock") from None
    finally:
        os.close(fd)


# -- locks this process holds for the length of a run (the flow keeps its folder lock across tasks) ----
_HELD: dict[str, FileLock] = {}


def hold(lock: FileLock) -> None:
    _HELD[str(lock.path.resolve())] = lock


def held(path: str | Path) -> FileLock | None:
    lock = _HELD.get(str(Path(path).resolve()))
    return lock if lock is not None and lock.fd is not None else None


def release(path: str | Path) -> None:
    lock = _HELD.pop(str(Path(path).resolve()), None)
    if lock is not None:
        lock.release()

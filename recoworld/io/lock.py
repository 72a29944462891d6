"""Exclusive ownership of a run id: an OS lock on ``<root>/.<run_id>.lock``.

The lock is taken before anything of the run is written and held until the run finishes or is
aborted. It is an ``flock`` on the lock file, so the kernel releases it when its owner dies
however it dies (``SIGKILL`` included): a lock file left behind by a dead owner is simply taken
over. The file holds its owner (:class:`LockOwner`) so that a second writer of the same id is
told at once who holds it.

Forked processes share the lock (one open file description); only the owner releases it.
``flock`` is advisory and local to a machine for most network file systems: two drivers on two
hosts writing one shared folder are told apart only where the file system supports it.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from pathlib import Path

import msgspec

from recoworld.errors import RunError


class LockOwner(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds a run's lock (written into the lock file)."""

    pid: int
    host: str
    started: str
    """ISO 8601 time (UTC) the lock was taken."""


def lock_path(root: Path, run_id: str) -> Path:
    return Path(root) / f".{run_id}.lock"


class RunLock:
    """The held lock of one run id. Build it with :meth:`acquire`; :meth:`release` once."""

    def __init__(self, path: Path, file: object, owner: LockOwner) -> None:
        self.path, self._file, self.owner = path, file, owner

    @classmethod
    def acquire(cls, root: Path, run_id: str) -> RunLock:
        """Take the lock of ``run_id`` under ``root`` without waiting, or raise a one-line
        RunError naming the live owner's pid and host."""
        path = lock_path(root, run_id)
        for _ in range(8):  # the file can be unlinked by its owner between our open and flock
            f = open(path, "a+b", buffering=0)  # noqa: SIM115 - held for the run's lifetime
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(_read_owner(f))
                f.close()
                raise RunError(
                    f"run {run_id!r} is already being written by {holder} (lock {path}); "
                    "wait for it to finish or choose another --run-id"
                ) from None
            if _same_file(path, f):
                owner = LockOwner(
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                )
                os.ftruncate(f.fileno(), 0)
                os.pwrite(f.fileno(), msgspec.json.encode(owner) + b"\n", 0)
                return cls(path, f, owner)
            f.close()  # locked a file its owner had just removed: try the new one
        raise RunError(f"{path}: could not take the run's lock (it kept being replaced)")

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            if _same_file(self.path, f):
                self.path.unlink(
                    missing_ok=True
                )  # removed while held: no one can lock it meanwhile
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()


def _same_file(path: Path, f) -> bool:
    try:
        a, b = os.stat(path), os.fstat(f.fileno())
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_owner(f) -> LockOwner | None:
    try:
        return msgspec.json.decode(os.pread(f.fileno(), 4096, 0), type=LockOwner)
    except (OSError, msgspec.DecodeError):
        return None  # taken a moment ago, owner not written yet


def _describe(owner: LockOwner | None) -> str:
    if owner is None:
        return "another process (owner not yet recorded)"
    return f"pid {owner.pid} on host {owner.host} (since {owner.started})"

"""Ray's own processes die with the driver that started them.

An embedded cluster (``ray.init()`` without an address) is a tree of processes under the
driver: GCS, raylet, workers, and agents the raylet starts. When the driver is killed
(SIGKILL: no ``atexit``), most of them notice and exit, but some agents outlive it forever,
re-parented to init. This watchdog, a separate small process started by
:func:`actors.driver.connect`, notes the driver's descendants (pid and start time) every
``interval`` seconds while the driver lives; once it is gone, it waits ``grace`` seconds for an
orderly exit and kills whatever it noted that is still running (the start time guards against
pid reuse). Linux only (``/proc``); elsewhere nothing is started.

    python -m actors.watchdog DRIVER_PID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid``, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(rest[1]), int(rest[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (s := _stat(int(entry.name))) is not None:
            children.setdefault(s[0], []).append(int(entry.name))
            starts[int(entry.name)] = s[1]
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in out:
            out[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return out


def watch(driver: int, *, interval: float = 1.0, grace: float = 3.0) -> list[int]:
    """Note ``driver``'s descendants until it is gone; then kill those still running. Returns
    the pids killed."""
    me = os.getpid()
    seen: dict[int, int] = {}
    while _stat(driver) is not None:
        seen |= {p: t for p, t in descendants(driver).items() if p != me}
        time.sleep(interval)
    time.sleep(grace)
    killed = []
    for pid, start in seen.items():
        s = _stat(pid)
        if s is not None and s[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


def start(driver: int) -> subprocess.Popen | None:
    """Start the watchdog for ``driver`` (None where there is no ``/proc``). It runs in its own
    session, so a signal to the driver's process group does not stop it first."""
    if not (PROC / str(driver) / "stat").is_file():
        return None
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "actors.watchdog", str(driver)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))

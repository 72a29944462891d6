"""Ray's own processes die with a killed driver (actors/watchdog.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from actors.watchdog import _stat, descendants  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DRIVER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from actors.driver import connect
connect("local", num_cpus=1)
import ray
@ray.remote
class A:
    def ping(self):
        return os.getpid()
a = A.remote()
ray.get(a.ping.remote())
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the watchdog needs /proc")
def test_every_ray_process_of_an_embedded_cluster_dies_with_its_killed_driver() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "ready"
        time.sleep(2)  # the watchdog notes the tree every second
        tree = descendants(driver.pid)
        assert len(tree) >= 4  # GCS, raylet, the actor's worker, agents, the watchdog
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        deadline = time.monotonic() + 30
        alive = tree
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = {p: t for p, t in tree.items() if (s := _stat(p)) is not None and s[1] == t}
        names = []
        for p in alive:
            try:
                names.append(Path(f"/proc/{p}/cmdline").read_bytes()[:60])
            except OSError:
                pass
        assert not alive, f"still running 30 s after the driver was killed: {names}"
    finally:
        if driver.poll() is None:
            driver.kill()

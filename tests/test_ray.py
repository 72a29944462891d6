"""The study on a real local Ray cluster: same results as in-process, survives killed shards,
resumes after a dead driver or coordinator, and fails clearly on bad addresses or resources.

One embedded cluster (2 CPUs, on 127.0.0.1) serves every test of this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import polars as pl
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from actors.coordinator import NAMESPACE, pool_size, shard_actor_name  # noqa: E402
from actors.driver import connect, run_study_on_ray  # noqa: E402
from recoworld.config import RayConfig, decode_study  # noqa: E402
from recoworld.errors import RunError  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402
from recoworld.study.shard import MARKERS, SCRATCH  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

STUDY = """
name = "ray_test"
seed = 7
[world]
dataset = "synthetic"
synthetic_users = 300
synthetic_items = 300
embedding_dim = 8
[population]
size = {size}
segment_by = "activity"
[simulation]
sessions = 3
turns = 5
slate_size = 10
replicates = 2
[creator]
id = "c"
[[creator.items]]
title = "New thing"
tags = ["t0"]
[[arms]]
name = "control"
[[arms]]
name = "inject"
treatment = "inject"
position = 1
rate = 0.5
"""


def study(size: int, **ray_cfg: object):
    cfg = decode_study(STUDY.format(size=size))
    return msgspec.structs.replace(cfg, ray=RayConfig(**ray_cfg)) if ray_cfg else cfg


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def world():
    return load_world_for(study(10).world, 7)


def events(run: Path) -> pl.DataFrame:
    df = pl.read_parquet(run / "events" / "arm=*" / "*.parquet", hive_partitioning=True)
    return df.with_columns(
        pl.col(c).cast(pl.String)
        for c, t in df.schema.items()
        if isinstance(t, pl.Categorical | pl.Enum)
    ).sort("arm", "user", "session", "turn", "position")


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory) -> Path:
    """The undisturbed in-process run of 6,000 users (6 blocks)."""
    out = tmp_path_factory.mktemp("ref")
    return run_study(study(6000), world, run_id="ref", out_dir=out, workers=1).path


def test_the_same_events_and_summary_in_process_and_on_ray_with_1_2_4_shards(
    cluster, world, reference, tmp_path: Path
) -> None:
    ref_events = events(reference)
    ref_summary = pl.read_parquet(reference / "summary.parquet")
    for shards, planned in ((1, 2), (2, 2), (4, 4)):  # at least one shard per replicate
        res = run_study_on_ray(
            study(6000), world, run_id=f"s{shards}", out_dir=tmp_path, shards=shards
        )
        assert res.path == tmp_path / f"s{shards}"
        assert events(res.path).equals(ref_events), f"{shards} shards"
        assert pl.read_parquet(res.path / "summary.parquet").equals(ref_summary), f"{shards} shards"
        manifest = msgspec.json.decode((res.path / "manifest.json").read_bytes())
        assert manifest["shards"] == planned and manifest["events"] == ref_events.height
        assert manifest["replicates"] == 2
        # a handful of files per shard: one per table and arm
        assert len(list((res.path / "events").rglob("*.parquet"))) == 2 * planned
        assert not (res.path / SCRATCH).exists() and not (res.path / MARKERS).exists()


def _run_in_thread(fn, *args, **kwargs):
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _wait_for(cond, timeout: float = 120.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _shard_started(partial: Path, index: int) -> bool:
    scratch = partial / SCRATCH
    return scratch.is_dir() and any(
        p.name.startswith(f"shard-{index:05d}-") for p in scratch.iterdir()
    )


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_shard_actor_killed_mid_run_is_restarted_and_no_event_is_lost_or_doubled(
    cluster, world, reference, tmp_path: Path, how: str
) -> None:
    run_id = f"kill-{how.replace('.', '')}"
    partial = tmp_path / f".{run_id}.partial"
    t, box = _run_in_thread(
        run_study_on_ray, study(6000), world, run_id=run_id, out_dir=tmp_path, shards=2
    )
    _wait_for(lambda: _shard_started(partial, 0), what="shard 0 to start")
    assert not (partial / MARKERS / "shard-00000.done").exists()  # really mid-shard
    actor = ray.get_actor(shard_actor_name(run_id, 0), namespace=NAMESPACE)
    if how == "ray.kill":
        ray.kill(actor, no_restart=False)
    else:  # the shard actors' worker processes die
        pids = _shard_worker_pids()
        assert pids and not (partial / MARKERS).exists()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    t.join(300)
    assert "error" not in box, box.get("error")
    assert events(box["result"].path).equals(events(reference))
    assert pl.read_parquet(box["result"].path / "summary.parquet").equals(
        pl.read_parquet(reference / "summary.parquet")
    )


def _shard_worker_pids() -> list[int]:
    """Worker processes hosting a shard actor (Ray titles them ``ray::UserShardActor...``)."""
    import psutil

    found: list[int] = []
    _wait_for(
        lambda: bool(
            found.extend(
                p.pid
                for p in psutil.process_iter(["cmdline"])
                if "ray::UserShardActor" in " ".join(p.info["cmdline"] or [])
            )
            or found
        ),
        30,
        "shard worker processes",
    )
    return found


def test_a_run_whose_coordinator_dies_resumes_without_redoing_finished_shards(
    cluster, world, reference, tmp_path: Path
) -> None:
    run_id = "coord"
    partial = tmp_path / f".{run_id}.partial"
    t, box = _run_in_thread(
        run_study_on_ray, study(6000), world, run_id=run_id, out_dir=tmp_path, shards=4
    )
    _wait_for(lambda: (partial / MARKERS / "shard-00000.done").exists(), what="a finished shard")
    ray.kill(ray.get_actor(f"{run_id}/coordinator", namespace=NAMESPACE))
    t.join(120)
    assert "error" in box and not (tmp_path / run_id).exists()
    finished = {p.name: p.stat().st_mtime_ns for p in (partial / MARKERS).iterdir()}
    part0 = partial / "events" / "arm=control" / "part-00000.parquet"
    inode = part0.stat().st_ino
    res = run_study_on_ray(study(6000), world, run_id=run_id, out_dir=tmp_path, resume=True)
    assert (
        res.path / "events" / "arm=control" / "part-00000.parquet"
    ).stat().st_ino == inode  # not redone
    assert "shard-00000.done" in finished
    assert events(res.path).equals(events(reference))
    assert pl.read_parquet(res.path / "summary.parquet").equals(
        pl.read_parquet(reference / "summary.parquet")
    )


def test_a_run_whose_driver_is_killed_resumes_with_resume_run_id(
    cluster, reference, tmp_path: Path
) -> None:
    study_file = tmp_path / "study.toml"
    study_file.write_text(STUDY.format(size=6000) + "\n[ray]\nshards = 4\n")
    cmd = [
        sys.executable,
        "-m",
        "recoworld.cli",
        "run",
        str(study_file),
        "--out",
        str(tmp_path),
        "--quiet",
        "--ray",
        cluster,
    ]
    driver = subprocess.Popen(
        [*cmd, "--run-id", "drv"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    partial = tmp_path / ".drv.partial"
    try:
        _wait_for(
            lambda: (partial / MARKERS / "shard-00000.done").exists() or driver.poll() is not None,
            what="a finished shard",
        )
        assert driver.poll() is None, driver.stderr.read().decode()
        driver.kill()
    finally:
        driver.wait()
    part0 = partial / "events" / "arm=control" / "part-00000.parquet"
    inode = part0.stat().st_ino
    done = subprocess.run(
        [*cmd, "--resume", "drv"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "drv"
    assert (run / "events" / "arm=control" / "part-00000.parquet").stat().st_ino == inode
    assert events(run).equals(events(reference))
    assert pl.read_parquet(run / "summary.parquet").equals(
        pl.read_parquet(reference / "summary.parquet")
    )


def test_resume_needs_an_interrupted_run_of_the_same_study(cluster, world, tmp_path: Path) -> None:
    with pytest.raises(
        RunError,
        match=r"no interrupted run 'nothing' to resume \(expected its plan.json\); "
        r"run without --resume",
    ):
        run_study_on_ray(study(2000), world, run_id="nothing", out_dir=tmp_path, resume=True)
    partial = tmp_path / ".changed.partial"
    partial.mkdir()
    (partial / "plan.json").write_bytes(b"[]")
    (partial / "study.json").write_bytes(msgspec.json.encode(study(3000)))
    with pytest.raises(
        RunError,
        match=r"--resume needs the same study as the interrupted run; its study.json differs",
    ):
        run_study_on_ray(study(2000), world, run_id="changed", out_dir=tmp_path, resume=True)


def test_missing_resources_fail_within_the_placement_timeout_naming_them(
    cluster, world, tmp_path: Path
) -> None:
    cfg = study(2000, shard_resources={"recoworld_llm": 1.0}, placement_timeout_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(RunError) as e:
        run_study_on_ray(cfg, world, run_id="nores", out_dir=tmp_path, shards=2)
    assert time.monotonic() - t0 < 60
    msg = str(e.value)
    assert msg.startswith(
        "1 of 1 shard actors could not be placed within 2 s (ray.placement_timeout_s): "
        "each needs 1 CPU, 1 recoworld_llm; the cluster has "
    )
    assert "2 CPU" in msg and "recoworld_llm" not in msg.split("the cluster has ")[1]
    assert not (tmp_path / "nores").exists()


def test_an_unreachable_address_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    study_file = tmp_path / "study.toml"
    study_file.write_text(STUDY.format(size=100))
    t0 = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recoworld.cli",
            "run",
            str(study_file),
            "--out",
            str(tmp_path),
            "--quiet",
            "--ray",
            "127.0.0.1:1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        "error: cannot reach a Ray cluster at '127.0.0.1:1' (127.0.0.1:1): Connection refused; "
        "is `ray start --head` running there?" in " ".join(done.stderr.split())
    )
    assert time.monotonic() - t0 < 60
    assert not list(tmp_path.glob("*/"))


def test_the_pool_never_asks_for_more_than_the_cluster_holds() -> None:
    cfg = RayConfig(shard_num_cpus=1.0)
    assert pool_size(cfg, 8, {"CPU": 2.0}) == 2
    assert pool_size(cfg, 1, {"CPU": 16.0}) == 1
    assert (
        pool_size(
            RayConfig(shard_resources={"recoworld_shard": 1.0}),
            8,
            {"CPU": 16.0, "recoworld_shard": 3.0},
        )
        == 3
    )
    assert (
        pool_size(RayConfig(shard_resources={"recoworld_shard": 1.0}), 8, {"CPU": 16.0}) == 1
    )  # waits for them

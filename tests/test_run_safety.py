"""Runs that cannot be mixed, lost, corrupted or leaked: one writer per run id (an OS lock, taken
over from a dead owner), workers that die with their driver, a finish that checks every shard's
files, an overwrite that is atomic under a kill at any instant, and file digests verified when
a run is read or resumed."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.errors import RunError
from recoworld.io.integrity import sha256_file
from recoworld.io.lock import RunLock
from recoworld.io.runs import FILES, MANIFEST, RunDirectory, check_run_dir, scan_table
from recoworld.io.tables import read_table
from recoworld.study.lifecycle import Run
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.runner import run_shards, run_study
from recoworld.study.shard import marker_path
from recoworld.world.synthetic import synthetic_world

ROOT = Path(__file__).resolve().parents[1]

STUDY = StudyConfig(
    name="safety",
    seed=5,
    world=WorldConfig(dataset="synthetic", synthetic_users=80, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=2100),  # three aggregate blocks: two shards
    simulation=SimulationConfig(sessions=2, turns=3, slate_size=5),
    recommender=RecommenderConfig(kind="popular", candidates=15),
    creator=CreatorConfig(id="c", items=[CreatorItem(title="New", tags=["drama"])]),
    arms=[ArmConfig(name="control"), ArmConfig(name="inject", treatment="inject", position=1)],
)

# A study run in its own process: argv = root run_id seed mode hold-folder.
# It holds in its progress callback (once) until hold/go exists, after writing hold/ready;
# with mode "slow-workers" every shard first writes hold/worker-<pid> and sleeps 3 s.
SCRIPT = """
import os, sys, time
from pathlib import Path
import msgspec
sys.path.insert(0, "tests")
from test_run_safety import STUDY
from recoworld.errors import RunError
from recoworld.study import shard as shard_module
from recoworld.study.runner import run_study
from recoworld.world.synthetic import synthetic_world

root, run_id, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
mode, hold = sys.argv[4], Path(sys.argv[5])
cfg = msgspec.structs.replace(STUDY, seed=seed)

if mode == "slow-workers":
    real = shard_module.UserShard.run
    def slow(self, spec, progress=None):
        (hold / f"worker-{os.getpid()}").write_text("")
        time.sleep(3)
        return real(self, spec, progress)
    shard_module.UserShard.run = slow

def progress(arm, users):
    if not (hold / "ready").exists():
        (hold / "ready").write_text(str(os.getpid()))
        t = time.time()
        while not (hold / "go").exists() and time.time() - t < 60:
            time.sleep(0.02)

try:
    run_study(cfg, synthetic_world(80, 60, seed=5), run_id=run_id, out_dir=root,
              workers=2, progress=progress, resume=mode == "resume",
              overwrite=mode == "overwrite")
except RunError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


def start(root: Path, run_id: str, seed: int, mode: str, hold: Path) -> subprocess.Popen:
    hold.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), run_id, str(seed), mode, str(hold)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    t = time.monotonic()
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {path}: {proc.stderr.read()}")
        assert time.monotonic() - t < timeout, f"{path} did not appear"
        time.sleep(0.02)


def frame(run_dir: Path, table: str) -> pl.DataFrame:
    df = scan_table(run_dir, table).collect()
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    return df.sort(df.columns)


@pytest.fixture(scope="module")
def prep() -> Prepared:
    return prepare(STUDY, synthetic_world(80, 60, seed=STUDY.seed))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study, seed 5, run in this process: what a run of seed 5 must hold."""
    world = synthetic_world(80, 60, seed=5)
    return run_study(STUDY, world, run_id="ref", out_dir=tmp_path_factory.mktemp("ref")).path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie no longer runs


# --- one writer per run id ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fresh", "resume", "overwrite"])
def test_a_second_run_of_a_live_run_id_fails_at_once_and_the_first_completes(
    tmp_path: Path, reference: Path, mode: str
) -> None:
    root, hold = tmp_path / "runs", tmp_path / "hold"
    first = start(root, "r", 5, "fresh", hold)
    wait_for(hold / "ready", first)  # first holds the lock, its first shard written
    t0 = time.monotonic()
    second = start(root, "r", 6, mode, tmp_path / "hold2")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert time.monotonic() - t0 < 30  # it never waits for the first one
    line = err.strip()
    assert "\n" not in line
    assert line.startswith(
        f"run 'r' is already being written by pid {first.pid} on host {socket.gethostname()} "
        "(since "
    )
    assert line.endswith(
        f"(lock {root / '.r.lock'}); wait for it to finish or choose another --run-id"
    )
    (hold / "go").write_text("")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert sorted(p.name for p in root.iterdir()) == ["r"]  # lock released, no partial left
    check_run_dir(root / "r", verify=True)
    for table in ("events", "sessions", "user_metrics", "summary"):  # every part from seed 5
        assert frame(root / "r", table).equals(frame(reference, table)), table


def test_the_lock_of_a_killed_run_is_taken_over_and_resume_finishes_it(
    tmp_path: Path, reference: Path
) -> None:
    root, hold = tmp_path / "runs", tmp_path / "hold"
    first = start(root, "r", 5, "fresh", hold)
    wait_for(hold / "ready", first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert (root / ".r.lock").is_file()  # left behind, but no longer locked
    assert (root / ".r.partial" / "plan.json").is_file()
    world = synthetic_world(80, 60, seed=5)
    res = run_study(STUDY, world, run_id="r", out_dir=root, resume=True)
    assert sorted(p.name for p in root.iterdir()) == ["r"]
    assert frame(res.path, "events").equals(frame(reference, "events"))


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    d = RunDirectory(tmp_path, "r")
    with pytest.raises(RunError, match=rf"^run 'r' is already being written by pid {os.getpid()} "):
        RunDirectory(tmp_path, "r", resume=True)
    d.abort()
    RunDirectory(tmp_path, "r").abort()  # released: the id is free again


def test_a_stale_lock_file_with_garbage_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / ".r.lock").write_text("not json")
    lock = RunLock.acquire(tmp_path, "r")
    assert lock.owner.pid == os.getpid()
    lock.release()
    assert not (tmp_path / ".r.lock").exists()


# --- workers die with their driver -------------------------------------------------------------


def test_workers_die_when_their_driver_is_killed(tmp_path: Path) -> None:
    root, hold = tmp_path / "runs", tmp_path / "hold"
    driver = start(root, "r", 5, "slow-workers", hold)
    t = time.monotonic()
    while len(list(hold.glob("worker-*"))) < 2:
        assert driver.poll() is None, driver.stderr.read()
        assert time.monotonic() - t < 60, "the workers did not start"
        time.sleep(0.02)
    workers = [int(p.name.split("-")[1]) for p in hold.glob("worker-*")]
    assert all(alive(w) for w in workers)
    driver.send_signal(signal.SIGKILL)  # the driver only; its workers are asleep in their shard
    driver.wait(timeout=30)
    t = time.monotonic()
    while any(alive(w) for w in workers):
        assert time.monotonic() - t < 5, f"workers {workers} outlived their driver"
        time.sleep(0.05)
    partial = root / ".r.partial"
    before = sorted(str(p.relative_to(partial)) for p in partial.rglob("*"))
    time.sleep(4)  # a surviving worker would have woken up and written its shard by now
    assert sorted(str(p.relative_to(partial)) for p in partial.rglob("*")) == before
    assert not list(partial.glob("events/arm=*/*.parquet"))


# --- finish checks every shard's files ---------------------------------------------------------


def damage_missing_part(folder: Path) -> str:
    path = folder / "sessions" / "arm=inject" / "part-00001.parquet"
    path.unlink()
    return f"{path}: missing; shard 1 finished without it, so the run stays partial"


def damage_short_part(folder: Path) -> str:
    path = folder / "events" / "arm=control" / "part-00000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 3), path)
    n = table.num_rows
    return f"{path}: {n - 3} rows; shard 0 wrote {n}, so the run stays partial"


def damage_marker(folder: Path) -> str:
    path = marker_path(folder, 1)
    path.unlink()
    return f"{path}: missing; shard 1 (users 2048..2100) did not finish, so the run stays partial"


@pytest.mark.parametrize("damage", [damage_missing_part, damage_short_part, damage_marker])
def test_finish_refuses_a_run_with_a_missing_or_short_file(
    prep: Prepared, tmp_path: Path, damage
) -> None:
    with pytest.raises(RunError) as e:
        with Run.open(prep, tmp_path, "r", shards=2) as run:
            results = run_shards(run, 1)
            expected = damage(run.path)
            run.finish(results)
    assert str(e.value) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.partial"]  # stays partial


# --- overwrite is atomic -----------------------------------------------------------------------

OVERWRITER = """
import sys
from pathlib import Path
from recoworld.io.runs import RunDirectory
root = Path(sys.argv[1])
for n in range(10_000):
    d = RunDirectory(root, "r", overwrite=True)
    for k in range(20):
        d.write_json(f"f{k}.json", {"n": n, "k": k})
    d.finalize({"n": n})
"""


def test_overwrite_always_shows_a_complete_run_even_when_killed_at_any_instant(
    tmp_path: Path,
) -> None:
    d = RunDirectory(tmp_path, "r")
    d.write_json("f0.json", {"n": -1})
    d.finalize({"n": -1})
    rng = random.Random(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", OVERWRITER, str(tmp_path)], cwd=ROOT)
        t = time.monotonic()
        stop = t + 0.5 + rng.random()
        seen = 0
        while time.monotonic() < stop:  # a reader never finds the run missing or incomplete
            assert (tmp_path / "r" / MANIFEST).is_file()
            seen += 1
        proc.send_signal(signal.SIGKILL)  # at some instant of some overwrite
        proc.wait(timeout=30)
        manifest = check_run_dir(tmp_path / "r", verify=True)
        assert sorted(manifest[FILES]) == sorted(
            p.name for p in (tmp_path / "r").iterdir() if p.name != MANIFEST
        )
    assert seen > 100


def test_a_replacement_killed_between_two_renames_is_recovered_by_a_reader(
    tmp_path: Path,
) -> None:
    """Where the file system cannot exchange folders: the old run moved aside, the new one,
    complete, still partial."""
    for n in (1, 2):
        d = RunDirectory(tmp_path, "r", overwrite=True)
        d.write_json("n.json", {"n": n})
        d.finalize({"n": n})
        if n == 1:
            (tmp_path / "r").rename(tmp_path / ".r.old")
        else:
            (tmp_path / "r").rename(tmp_path / ".r.partial")
    (tmp_path / ".r.lock").write_text("")  # the killed writer's lock file
    assert check_run_dir(tmp_path / "r", verify=True)["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # the lock file taken and dropped


# --- digests -----------------------------------------------------------------------------------


def flip(path: Path, count: int = 200) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + count] = bytes(b ^ 0xFF for b in data[mid : mid + count])
    path.write_bytes(bytes(data))


@pytest.fixture()
def finished(reference: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(reference, tmp_path / "r"))


def test_the_manifest_holds_the_sha256_of_every_file_of_the_run(finished: Path) -> None:
    manifest = check_run_dir(finished, verify=True)
    files = sorted(
        p.relative_to(finished).as_posix()
        for p in finished.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    assert sorted(manifest[FILES]) == files
    assert "events/arm=control/part-00000.parquet" in files and "users.parquet" in files
    assert all(manifest[FILES][f] == sha256_file(finished / f) for f in files)


def test_every_parquet_file_of_a_run_carries_page_checksums(finished: Path) -> None:
    for f in finished.rglob("*.parquet"):
        pq.read_table(f, page_checksum_verification=True)  # pages without a CRC pass unchecked
    summary = finished / "summary.parquet"
    flip(summary, 40)
    with pytest.raises(RunError, match=rf"^{summary}: "):
        read_table(summary, "summary")


def test_a_changed_events_file_is_named_by_verify(finished: Path) -> None:
    path = finished / "events" / "arm=inject" / "part-00000.parquet"
    expected = sha256_file(path)
    flip(path)
    check_run_dir(finished)  # without verify: the manifest only
    with pytest.raises(RunError) as e:
        check_run_dir(finished, verify=True)
    assert str(e.value) == (
        f"{path}: contents changed since the run finished (sha256 {sha256_file(path)}, "
        f"expected {expected}); the run is corrupt"
    )


def test_a_lost_file_is_named_by_verify(finished: Path) -> None:
    path = finished / "fit.json"
    path.unlink()
    with pytest.raises(RunError, match=rf"^{path}: missing, but present when the run finished "):
        check_run_dir(finished, verify=True)


def test_resume_refuses_a_finished_shard_whose_file_changed(prep: Prepared, tmp_path: Path) -> None:
    def interrupt(arm: str, users: int) -> None:
        if marker_path(tmp_path / ".r.partial", 0).is_file():
            raise KeyboardInterrupt  # once shard 0 finished: its marker is written

    with pytest.raises(KeyboardInterrupt):
        with Run.open(prep, tmp_path, "r", shards=2) as run:
            run_shards(run, 1, progress=interrupt)
    partial = tmp_path / ".r.partial"
    assert marker_path(partial, 0).is_file() and not marker_path(partial, 1).is_file()
    path = partial / "events" / "arm=control" / "part-00000.parquet"
    flip(path)
    with pytest.raises(RunError) as e:
        Run.open(prep, tmp_path, "r", shards=2, resume=True)
    assert str(e.value).startswith(f"{path}: contents changed since shard 0 finished (sha256 ")
    assert str(e.value).endswith("the run is corrupt; run the study again without --resume")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.partial"]  # lock released


def test_hashing_a_run_takes_little_time(finished: Path) -> None:
    t = time.perf_counter()
    check_run_dir(finished, verify=True)
    seconds = time.perf_counter() - t
    size = sum(p.stat().st_size for p in finished.rglob("*") if p.is_file())
    print(f"verified {size / 1e6:.2f} MB in {seconds * 1000:.1f} ms")
    assert seconds < 5


@pytest.mark.parametrize("command", ["summary", "report", "view"])
def test_summary_report_and_view_refuse_a_run_whose_events_changed(
    finished: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recoworld.cli import main
    from recoworld.report.viewer import RunView

    path = finished / "events" / "arm=control" / "part-00000.parquet"
    flip(path)
    if command == "view":  # RunView is what `recoworld view` opens (the command would serve)
        with pytest.raises(RunError) as e:
            RunView(finished, titles=False)
        err = f"error: {e.value}\n"
    else:
        assert main([command, str(finished)]) == 2
        err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: contents changed since the run finished (sha256 ")
    assert err.endswith("); the run is corrupt\n")


def test_reseal_records_a_deliberate_rewrite(finished: Path) -> None:
    from recoworld.io.runs import reseal

    path = finished / "events" / "arm=control" / "part-00000.parquet"
    flip(path)
    (finished / "report.html").write_text("<p>written after the run</p>")
    manifest = reseal(finished)
    assert manifest[FILES]["events/arm=control/part-00000.parquet"] == sha256_file(path)
    assert "report.html" not in manifest[FILES]  # not a file of the run: rewritten at will
    check_run_dir(finished, verify=True)
    assert sorted(p.name for p in finished.parent.iterdir()) == ["r"]  # its lock dropped

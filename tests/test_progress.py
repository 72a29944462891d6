"""Progress comes as users finish, in every executor: in this process after each batch (each
user of a language-model study), from forked workers and Ray shard actors through progress
files that the parent polls. It arrives before the run ends and adds up to users x arms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

import recoworld.study.shard as shard_module
from recoworld.config import decode_study
from recoworld.study.lifecycle import Run
from recoworld.study.prepare import load_world_for, prepare
from recoworld.study.progress import PROGRESS, ProgressBoard, ProgressFile, ShardProgress
from recoworld.study.runner import run_shards, run_study
from recoworld.study.shard import MARKERS, SCRATCH, ShardSpec, marker_path

STUDY = """
name = "progress_test"
seed = 3
[world]
dataset = "synthetic"
synthetic_users = 300
synthetic_items = 300
embedding_dim = 8
[population]
size = {size}
[simulation]
sessions = 3
turns = 5
slate_size = 10
replicates = 1
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
ARMS = ("control", "inject")


@pytest.fixture(scope="module")
def world():  # noqa: ANN201
    return load_world_for(decode_study(STUDY.format(size=10)).world, 3)


class Heard:
    """A progress callback that notes each call and how many shards had finished by then."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.partial = out / f".{run_id}.partial"
        self.calls: list[tuple[str, int, int]] = []  # (arm, users, shards finished)

    def __call__(self, arm: str, users: int) -> None:
        done = len(list((self.partial / MARKERS).glob("*.done")))
        self.calls.append((arm, users, done))

    def totals(self) -> Counter:
        total: Counter = Counter()
        for arm, users, _ in self.calls:
            total[arm] += users
        return total


def test_in_process_progress_comes_after_every_batch_before_the_shard_ends(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shard_module, "batch_size_for", lambda n_items: 512)  # 4 batches
    heard = Heard(tmp_path, "one")
    run_study(
        decode_study(STUDY.format(size=2000)),
        world,
        run_id="one",
        out_dir=tmp_path,
        workers=1,
        progress=heard,
    )
    assert heard.totals() == {arm: 2000 for arm in ARMS}
    per_arm = Counter(arm for arm, _, _ in heard.calls)
    assert all(per_arm[arm] >= 4 for arm in ARMS), per_arm  # at least once per batch
    assert all(done == 0 for _, _, done in heard.calls)  # all of it before the shard's marker


def test_forked_workers_report_progress_before_their_shards_end(world, tmp_path: Path) -> None:
    heard = Heard(tmp_path, "two")
    run_study(
        decode_study(STUDY.format(size=8000)),
        world,
        run_id="two",
        out_dir=tmp_path,
        workers=2,
        progress=heard,
    )
    assert heard.totals() == {arm: 8000 for arm in ARMS}
    before = [users for _, users, done in heard.calls if done == 0]
    assert before, f"nothing heard before a shard ended: {heard.calls}"
    assert not (tmp_path / "two" / SCRATCH).exists()  # the progress files went with the scratch


def test_a_resumed_run_tells_its_finished_shards_whole_then_the_rest_as_it_goes(
    world, tmp_path: Path
) -> None:
    prep = prepare(decode_study(STUDY.format(size=3000)), world)
    first = Heard(tmp_path, "r")

    def interrupt(arm: str, users: int) -> None:
        first(arm, users)
        if first.calls[-1][2]:  # shard 0 has its marker: stop in shard 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with Run.open(prep, tmp_path, "r", shards=2) as run:
            run_shards(run, 1, progress=interrupt)
    again = Heard(tmp_path, "r")
    with Run.open(prep, tmp_path, "r", shards=2, resume=True) as run:
        run_shards(run, 1, progress=again)
        s0 = run.plan[0].stop
    assert again.calls[:2] == [("control", s0, 1), ("inject", s0, 1)]
    assert again.totals() == {arm: 3000 for arm in ARMS}


def _write(folder: Path, name: str, shard: int, users: dict[str, int]) -> None:
    path = folder / SCRATCH / PROGRESS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.msgpack.encode(ShardProgress(shard=shard, users=users)))


def test_the_board_counts_a_retried_shard_once_ignores_old_files_and_ends_at_the_marker(
    tmp_path: Path,
) -> None:
    from recoworld.study.shard import ShardResult, write_marker

    specs = [ShardSpec(index=0, start=0, stop=100), ShardSpec(index=1, start=100, stop=150)]
    _write(tmp_path, "00001-old", 1, {"a": 40, "b": 40})  # an interrupted run's: ignored
    heard: list[tuple[str, int]] = []
    board = ProgressBoard(tmp_path, specs, ["a", "b"], lambda arm, n: heard.append((arm, n)))
    board.poll()
    assert heard == []
    _write(tmp_path, "00000-first", 0, {"a": 60})
    board.poll()
    _write(tmp_path, "00000-retry", 0, {"a": 30})  # the retry starts again: no step back
    board.poll()
    assert heard == [("a", 60)]
    _write(tmp_path, "00000-retry", 0, {"a": 100, "b": 20})
    board.poll()
    assert heard == [("a", 60), ("a", 40), ("b", 20)]
    write_marker(tmp_path, ShardResult(spec=specs[0], events=0, seconds=0.0, moments=b""))
    board.poll()
    board.poll()
    assert heard[3:] == [("b", 80)]
    assert marker_path(tmp_path, 0).is_file()


def test_a_progress_file_is_written_at_most_every_interval_and_counts_every_call(
    tmp_path: Path,
) -> None:
    file = ProgressFile(tmp_path, 7, every_s=3600)
    file("a", 10)
    file("a", 5)
    file("b", 1)
    seen = msgspec.msgpack.decode(file.path.read_bytes(), type=ShardProgress)
    assert seen == ShardProgress(shard=7, users={"a": 10})  # the first call writes
    assert file.users == {"a": 15, "b": 1}


LLM_STUDY = """
name = "progress_llm"
seed = 5
[world]
dataset = "synthetic"
synthetic_users = 80
synthetic_items = 150
embedding_dim = 4
[population]
size = 12
[simulation]
sessions = 2
turns = 3
slate_size = 5
[brain]
kind = "llm"
[recommender]
kind = "mf"
candidates = 15
[llm]
backend = "openai"
model = "scripted"
[[arms]]
name = "control"
[[arms]]
name = "popular"
recommender = { kind = "popular" }
"""


def test_a_language_model_study_reports_progress_user_by_user(tmp_path: Path) -> None:
    from recoworld.testing.scripted_llm import ScriptedModel

    cfg = decode_study(LLM_STUDY)
    w = load_world_for(cfg.world, cfg.seed)
    heard = Heard(tmp_path, "llm")
    run_study(cfg, w, run_id="llm", out_dir=tmp_path, model=ScriptedModel(), progress=heard)
    assert heard.totals() == {arm.name: 12 for arm in cfg.arms}
    per_arm = Counter(arm for arm, _, _ in heard.calls)
    assert all(n > 1 for n in per_arm.values()), per_arm
    assert all(done == 0 for _, _, done in heard.calls)


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from actors.driver import connect

    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


def test_ray_shards_report_progress_before_they_end(cluster, world, tmp_path: Path) -> None:
    from actors.driver import run_study_on_ray

    heard = Heard(tmp_path, "ray")
    run_study_on_ray(
        decode_study(STUDY.format(size=8000)),
        world,
        run_id="ray",
        out_dir=tmp_path,
        shards=2,
        progress=heard,
    )
    assert heard.totals() == {arm: 8000 for arm in ARMS}
    before = [users for _, users, done in heard.calls if done == 0]
    assert before, f"nothing heard before a shard ended: {heard.calls}"

"""Whole studies (recoworld/study/runner.py): determinism, identical results across worker
processes, a golden transcript, paired arms, creator treatments, running without Ray, and
interrupted runs that leave nothing half-written.

Regenerate the golden files after an intended change of behaviour with
``RECOWORLD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_study.py -k golden``
and review their diff.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

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
from recoworld.io.runs import scan_table
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import RunResult, run_study

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
KEYS = ["arm", "user", "session", "turn", "position"]

SMALL = StudyConfig(
    name="small",
    seed=11,
    world=WorldConfig(dataset="synthetic", synthetic_users=80, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=25, segment_by="activity"),
    simulation=SimulationConfig(sessions=2, turns=3, slate_size=5),
    recommender=RecommenderConfig(kind="mf", candidates=15),
    creator=CreatorConfig(
        id="indie", name="Indie Films", items=[CreatorItem(title="Small Hours", tags=["drama"])]
    ),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="inject", treatment="inject", position=1, rate=0.5),
    ],
)
"""The golden study: 25 users (not more, so that its transcript stays under 200 KB), 2 arms,
2 sessions x 3 turns x 5 items, on a seeded synthetic world."""


def run(cfg: StudyConfig, out: Path, run_id: str = "r", **kwargs: object) -> RunResult:
    return run_study(cfg, load_world_for(cfg.world, cfg.seed), run_id=run_id, out_dir=out, **kwargs)  # type: ignore[arg-type]


def events(result: RunResult) -> pl.DataFrame:
    """The run's events, categoricals as strings, in a canonical order."""
    frame = scan_table(result.path, "events").collect()
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String)).sort(KEYS)


def with_seed(cfg: StudyConfig, seed: int) -> StudyConfig:
    return msgspec.structs.replace(cfg, seed=seed)


# --- determinism -------------------------------------------------------------------------------


def test_the_same_study_and_seed_give_identical_events(tmp_path: Path) -> None:
    a, b = run(SMALL, tmp_path, "a"), run(SMALL, tmp_path, "b")
    assert_frame_equal(events(a), events(b))
    assert_frame_equal(a.summary, b.summary)


def test_another_seed_gives_other_events_in_the_same_world(tmp_path: Path) -> None:
    world = load_world_for(SMALL.world, SMALL.seed)
    a = run_study(SMALL, world, run_id="a", out_dir=tmp_path)
    b = run_study(with_seed(SMALL, SMALL.seed + 1), world, run_id="b", out_dir=tmp_path)
    ea, eb = events(a), events(b)
    assert not ea.equals(eb)
    both = ea.join(eb, on=KEYS, suffix="_b")  # the slates both runs showed
    assert both.height > 0
    assert (both["satisfaction"] != both["satisfaction_b"]).any()


PARALLEL = StudyConfig(
    name="parallel",
    seed=3,
    world=WorldConfig(
        dataset="synthetic", synthetic_users=100, synthetic_items=120, embedding_dim=8
    ),
    population=PopulationConfig(size=4200, segment_by="activity"),
    simulation=SimulationConfig(sessions=2, turns=2, slate_size=4),
    recommender=RecommenderConfig(kind="popular", candidates=16),
    creator=CreatorConfig(id="c", items=[CreatorItem(title="New", tags=["drama"])]),
    arms=[ArmConfig(name="control"), ArmConfig(name="boost", treatment="boost", boost=2.0)],
)
"""Enough users (>= 4096) for simulate_parallel to fork; a small world keeps it fast."""


@pytest.mark.parametrize(("replicates", "shards"), [(1, (1, 2)), (3, (3, 3))])
def test_two_worker_processes_give_the_same_events_and_summary_as_one(
    tmp_path: Path, replicates: int, shards: tuple[int, int]
) -> None:
    sim = msgspec.structs.replace(PARALLEL.simulation, replicates=replicates)
    cfg = msgspec.structs.replace(PARALLEL, simulation=sim)
    one = run(cfg, tmp_path, "one", workers=1)
    two = run(cfg, tmp_path, "two", workers=2)
    for result, n in zip((one, two), shards):  # one shard per worker (at least per replicate)
        parts = sorted(p.name for p in (result.path / "events" / "arm=control").iterdir())
        assert parts == [f"part-{k:05d}.parquet" for k in range(n)]
    assert one.events == two.events
    assert_frame_equal(events(one), events(two))
    assert_frame_equal(one.summary, two.summary, check_exact=True)


# --- golden transcript -------------------------------------------------------------------------


def rounded(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def event_lines(frame: pl.DataFrame) -> list[str]:
    """A header with the column names, then one JSON array per event (keys sorted first)."""
    cols = KEYS + [c for c in frame.columns if c not in KEYS]
    frame = frame.select(cols)
    lines = [json.dumps({"columns": cols})]
    lines += [
        json.dumps([rounded(v) for v in r], ensure_ascii=False, separators=(",", ":"))
        for r in frame.iter_rows()
    ]
    return lines


def summary_lines(summary: pl.DataFrame) -> list[str]:
    return [
        json.dumps({k: rounded(v) for k, v in r.items()}, ensure_ascii=False)
        for r in summary.iter_rows(named=True)
    ]


def check_golden(name: str, lines: list[str]) -> None:
    path = GOLDEN / name
    text = "\n".join(lines) + "\n"
    if os.environ.get("RECOWORLD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; create it with RECOWORLD_UPDATE_GOLDEN=1"
    expected = path.read_text().splitlines()
    diffs = [k for k, (a, b) in enumerate(zip(lines, expected)) if a != b]
    assert len(lines) == len(expected) and not diffs, (
        f"{path}: {len(lines)} lines now, {len(expected)} stored; first differing line "
        f"{diffs[0] + 1 if diffs else min(len(lines), len(expected)) + 1}:\n"
        f"  now:    {lines[diffs[0]] if diffs else '(end)'}\n"
        f"  stored: {expected[diffs[0]] if diffs else '(end)'}\n"
        "If the change is intended, regenerate with RECOWORLD_UPDATE_GOLDEN=1 and review the diff."
    )


def test_golden_small_study_events_and_summary(tmp_path: Path) -> None:
    result = run(SMALL, tmp_path)
    check_golden("small_study.events.jsonl", event_lines(events(result)))
    check_golden("small_study.summary.jsonl", summary_lines(result.summary))


def test_golden_files_stay_small() -> None:
    for name in ("small_study.events.jsonl", "small_study.summary.jsonl"):
        assert (GOLDEN / name).stat().st_size < 200_000, name


# --- paired arms and creator treatments --------------------------------------------------------

PAIRED = msgspec.structs.replace(
    SMALL,
    name="paired",
    world=msgspec.structs.replace(SMALL.world, synthetic_items=200),
    population=msgspec.structs.replace(SMALL.population, size=120),
    # most-popular slates rarely show the new item (median popularity) unless it is injected
    recommender=RecommenderConfig(kind="popular", candidates=15),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="same"),
        ArmConfig(name="inject", treatment="inject", position=0, rate=1.0),
    ],
)


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(PAIRED, tmp_path_factory.mktemp("runs"))


def test_an_identical_arm_has_exactly_zero_differences(paired: RunResult) -> None:
    same = paired.summary.filter(pl.col("arm") == "same")
    assert same.height == paired.summary.filter(pl.col("arm") == "control").height > 0
    assert (same["diff"] == 0.0).all()
    assert (same["diff_ci_low"] == 0.0).all() and (same["diff_ci_high"] == 0.0).all()


def test_an_identical_arm_sees_the_same_events(paired: RunResult) -> None:
    ev = events(paired)
    control = ev.filter(pl.col("arm") == "control").drop("arm")
    same = ev.filter(pl.col("arm") == "same").drop("arm")
    assert control.height > 0
    assert_frame_equal(control, same)


def test_creator_injection_raises_creator_reach(paired: RunResult) -> None:
    reach = paired.summary.filter(
        (pl.col("metric") == "creator_reach") & (pl.col("segment") == "all")
    )
    control, inject = (
        reach.filter(pl.col("arm") == a).row(0, named=True) for a in ("control", "inject")
    )
    assert control["mean"] < 1.0
    assert inject["mean"] == 1.0  # rate 1: every user's first slate carries the creator item
    assert inject["diff"] == pytest.approx(1.0 - control["mean"])
    assert inject["diff_ci_low"] > 0.0


def test_injection_puts_the_creator_item_at_its_position_and_shifts_the_slate(
    paired: RunResult,
) -> None:
    """First slates are the same in both arms before any feedback; where control's carries no
    creator item, inject's is [creator item] + control's first four."""
    first = events(paired).filter((pl.col("session") == 0) & (pl.col("turn") == 0))
    slates = first.group_by("arm", "user").agg(
        pl.col("item_id").sort_by("position"), pl.col("is_creator_item").any().alias("has")
    )
    control = slates.filter(pl.col("arm") == "control").select("user", "item_id", "has")
    inject = slates.filter(pl.col("arm") == "inject").select(
        "user", pl.col("item_id").alias("injected")
    )
    pairs = control.filter(~pl.col("has")).join(inject, on="user")
    assert pairs.height > 0
    for c, i in zip(pairs["item_id"].to_list(), pairs["injected"].to_list()):
        assert i == ["indie:0", *c[:-1]]
    assert (first.filter(pl.col("is_creator_item"))["creator"] == "Indie Films").all()


# --- running without Ray -----------------------------------------------------------------------

WITHOUT_RAY = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoRay(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ImportError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, NoRay())
    import recoworld.cli
    code = recoworld.cli.main(
        ["run", sys.argv[1], "--out", sys.argv[2], "--run-id", "r", "--quiet", "--workers", "1"]
    )
    assert code == 0, code
    assert "ray" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ray"))
    print("ran without ray")
    """
)


def test_a_study_runs_without_ray_and_never_imports_it(tmp_path: Path) -> None:
    study = tmp_path / "tiny.toml"
    study.write_text(
        'name = "tiny"\nseed = 2\n[world]\ndataset = "synthetic"\n'
        "synthetic_users = 60\nsynthetic_items = 50\n"
        "embedding_dim = 4\n[population]\nsize = 20\n"
        "[simulation]\nsessions = 1\nturns = 2\nslate_size = 3\n"
        "[recommender]\ncandidates = 6\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, str(study), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("ran without ray")
    assert (tmp_path / "runs" / "r" / "manifest.json").is_file()


# --- interrupted runs --------------------------------------------------------------------------


def test_an_interrupted_run_leaves_no_run_folder_and_the_same_id_runs_again(tmp_path: Path) -> None:
    seen: list[str] = []

    def interrupt(arm: str, users: int) -> None:
        seen.append(arm)
        raise KeyboardInterrupt  # Ctrl-C after the first batch of the control arm

    with pytest.raises(KeyboardInterrupt):
        run(SMALL, tmp_path, "r", progress=interrupt)
    assert seen == ["control"]
    assert [p.name for p in tmp_path.iterdir()] == [
        ".r.partial"
    ]  # no run folder; kept for --resume

    result = run(SMALL, tmp_path, "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert events(result).height == result.events > 0

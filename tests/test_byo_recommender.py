"""Bring your own recommender: Python plug-ins, exported scores and slates, and the contract
check between them and the simulated users.

Every way in runs a whole study in-process, with 2 forked workers and on Ray (one embedded
cluster for this module), with identical events; every failure mode is one line that names
the recommender (or the file, column and row), the user and the turn; a failed run loses
nothing already written.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recoworld.config import ArmConfig, RecommenderConfig, StudyConfig, decode_study
from recoworld.errors import ConfigError, DataError, RecommenderError, RunError
from recoworld.io.runs import check_run_dir
from recoworld.recommenders.base import Audience
from recoworld.recommenders.exported import ScoresReplay, SlatesReplay, file_sha256
from recoworld.recommenders.factory import build_recommender
from recoworld.recommenders.guard import NO_SLATE, CheckedRecommender
from recoworld.study.prepare import Prepared, load_world_for, prepare
from recoworld.study.runner import run_study
from recoworld.study.shard import marker_path
from recoworld.testing.plugins import Listens

ROOT = Path(__file__).resolve().parents[1]
HAS_IMPLICIT = importlib.util.find_spec("implicit") is not None
needs_implicit = pytest.mark.skipif(
    not HAS_IMPLICIT, reason="implicit is not installed (pip install -e '.[implicit]')"
)

STUDY = """
name = "byo"
seed = 3
[world]
dataset = "synthetic"
synthetic_users = 200
synthetic_items = 150
embedding_dim = 8
[population]
size = {size}
[simulation]
sessions = 2
turns = 3
slate_size = 5
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
[recommender]
"""
K = 5


def study(size: int = 1100, **rec: object) -> StudyConfig:
    """The study with ``rec`` as its [recommender] (checked as a study file is). 1,100 users
    of 200 real ones: two blocks (two shards with 2 workers or on Ray), and several personas
    drawn from each dataset user."""
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in rec.items())
    return decode_study(STUDY.format(size=size) + body)


def _toml(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, str):
        return '"' + v + '"'
    return str(v).lower() if isinstance(v, bool) else str(v)


@pytest.fixture(scope="module")
def world():
    return load_world_for(study(kind="popular").world, 3)


@pytest.fixture(scope="module")
def prep(world) -> Prepared:
    return prepare(study(120, kind="popular"), world)


@pytest.fixture(scope="module")
def exports(prep: Prepared, tmp_path_factory) -> Path:
    """Exports of a 'production model' for the study's population: scores (a folder of two
    files, small row groups, a few users left out, ties on purpose) and slates (half the users,
    every session and turn but the last)."""
    out = tmp_path_factory.mktemp("exports")
    cat, rng = prep.catalog, np.random.default_rng(11)
    users = sorted(set(prep.population.source_user.tolist()))
    scored = users[:-6]  # the last six are not covered: the fallback serves them
    user, item, score = [], [], []
    for u in scored:
        rows = rng.choice(cat.n_items - 1, 40, replace=False)
        user += [u] * rows.size
        item += [str(cat.item_ids[i]) for i in rows]
        score += np.round(rng.normal(size=rows.size), 1).tolist()  # rounded: ties
    (out / "scores").mkdir()
    half = len(scored) // 2 * 40
    for name, sl in (("a.parquet", slice(0, half)), ("b.parquet", slice(half, None))):
        t = pa.table({"user": user[sl], "item": item[sl], "score": score[sl]})
        t = t.append_column("extra", pa.array([1] * t.num_rows))
        pq.write_table(t, out / "scores" / name, row_group_size=97)
    rows = []
    for u in users[: len(users) // 2]:
        for s in range(2):
            for t in range(2):  # turn 2: the fallback
                for p, i in enumerate(rng.choice(cat.n_items - 1, K, replace=False)):
                    rows.append({"user": u, "session": s, "turn": t, "position": p, "item": i})
    sl = pl.DataFrame(rows).with_columns(
        item=pl.Series([str(cat.item_ids[r["item"]]) for r in rows])
    )
    sl.sample(fraction=1.0, shuffle=True, seed=2).write_parquet(out / "slates.parquet")
    return out


WAYS = {
    "minimal": dict(kind="python", target="examples.plugins.minimal:PopularUnseen"),
    "implicit": dict(
        kind="python",
        target="examples.plugins.implicit_als:ImplicitRecommender",
        options={"factors": 8, "iterations": 5},
    ),
    "scores": dict(kind="scores", path="{exports}/scores"),
    "slates": dict(kind="slates", path="{exports}/slates.parquet"),
}


def way(name: str, exports: Path) -> StudyConfig:
    if name == "implicit" and not HAS_IMPLICIT:
        pytest.skip("implicit is not installed (pip install -e '.[implicit]')")
    rec = {k: v.format(exports=exports) if isinstance(v, str) else v for k, v in WAYS[name].items()}
    return study(**rec)


def events(run: Path) -> pl.DataFrame:
    df = pl.read_parquet(run / "events" / "arm=*" / "*.parquet", hive_partitioning=True)
    return df.with_columns(
        pl.col(c).cast(pl.String)
        for c, t in df.schema.items()
        if isinstance(t, pl.Categorical | pl.Enum)
    ).sort("arm", "user", "session", "turn", "position")


def user_metrics(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "user_metrics" / "arm=*" / "*.parquet", hive_partitioning=True)


@pytest.fixture(scope="module")
def in_process(world, exports: Path, tmp_path_factory) -> dict[str, Path]:
    """Each way in, run in this process (the reference of the other executors)."""
    out = tmp_path_factory.mktemp("in_process")
    runs = {}
    for name in WAYS:
        if name == "implicit" and not HAS_IMPLICIT:
            continue
        runs[name] = run_study(way(name, exports), world, run_id=name, out_dir=out).path
    return runs


# --- each way in ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WAYS))
def test_each_way_in_gives_the_same_events_in_process_and_with_2_forked_workers(
    name: str, world, exports: Path, in_process: dict[str, Path], tmp_path: Path
) -> None:
    cfg = way(name, exports)
    res = run_study(cfg, world, run_id="w2", out_dir=tmp_path, workers=2)
    manifest = msgspec.json.decode((res.path / "manifest.json").read_bytes())
    assert manifest["shards"] == 2  # the users split in two: any per-user state is exact
    ref = events(in_process[name])
    assert ref.height > 0
    assert events(res.path).equals(ref)
    assert (
        user_metrics(res.path)
        .sort("arm", "user")
        .equals(user_metrics(in_process[name]).sort("arm", "user"))
    )


def test_the_manifest_counts_the_fallbacks_slates_per_arm(
    in_process: dict[str, Path],
) -> None:
    """What the fallback served is never silent: the manifest's totals (which the run and
    `recoworld summary` print) are the user_metrics sums."""
    from recoworld.cli import fallback_line

    run = in_process["slates"]
    manifest = msgspec.json.decode((run / "manifest.json").read_bytes())
    um = (
        user_metrics(run)
        .group_by("arm")
        .agg(pl.col("turns").sum(), pl.col("fallback_slates").sum())
    )
    want = {
        r["arm"]: {"slates": int(r["turns"]), "fallback": int(r["fallback_slates"])}
        for r in um.iter_rows(named=True)
    }
    assert manifest["fallback"] == want
    assert sum(v["fallback"] for v in want.values()) > 0
    arm, v = next(iter(want.items()))
    assert f"{arm} {v['fallback']:,} of {v['slates']:,}" in fallback_line(manifest["fallback"])


def test_the_injected_creator_item_reaches_slates_of_every_way_in(
    in_process: dict[str, Path],
) -> None:
    for name, path in in_process.items():
        shown = events(path).group_by("arm").agg(pl.col("is_creator_item").sum())
        got = dict(zip(shown["arm"], shown["is_creator_item"]))
        assert got["inject"] > got["control"] + 100, name


def test_a_slates_file_is_replayed_exactly_and_the_fallback_serves_what_it_lacks(
    in_process: dict[str, Path], exports: Path
) -> None:
    run = in_process["slates"]
    users = pl.read_parquet(run / "users.parquet").select("user", "source_user")
    ev = events(run).filter(pl.col("arm") == "control").join(users, on="user")
    file = pl.read_parquet(exports / "slates.parquet").rename(
        {"user": "source_user", "item": "expected"}
    )
    got = ev.join(
        file.with_columns(pl.col("session", "turn", "position").cast(pl.Int64)),
        on=["source_user", "session", "turn", "position"],
        how="left",
    )
    covered = got.filter(pl.col("expected").is_not_null())
    assert covered.height > 100
    assert (covered["item_id"] == covered["expected"]).all()
    um = user_metrics(run).filter(pl.col("arm") == "control").join(users, on="user")
    # a slate the file lacks (turn 2, or a user it does not have) is the fallback's, counted
    uncovered = ev.filter(pl.col("turn") == 2).select("user", "session").unique().height
    assert um["fallback_slates"].sum() >= uncovered > 0


def test_a_scores_file_serves_each_user_its_best_unseen_items_in_order(
    prep: Prepared, exports: Path
) -> None:
    rec = ScoresReplay(RecommenderConfig(kind="scores", path=str(exports / "scores")), "r")
    users = np.arange(12)
    aud = _audience(prep, users)
    rec.bind(aud)
    scores = pl.read_parquet(exports / "scores" / "*.parquet")
    ids = prep.catalog.item_ids
    hist = aud.personas.history_of(prep.catalog.n_items).toarray()
    shown = np.zeros_like(hist)
    idx = np.arange(users.size)
    for turn in range(4):
        slates = rec.recommend(idx, 0, turn, K)
        for j in idx:
            mine = scores.filter(pl.col("user") == aud.personas.source_user[j])
            if mine.is_empty():
                assert (slates[j] == NO_SLATE).all()  # not covered: the fallback's
                continue
            rows = np.array([prep.catalog.index_of(i) for i in mine["item"]])
            ok = ~hist[j, rows] & ~shown[j, rows]
            order = np.lexsort((rows[ok], -mine["score"].to_numpy()[ok]))
            best = rows[ok][order]
            if best.size < K:
                assert (slates[j] == NO_SLATE).all()  # too few left: the whole slate falls back
            else:
                assert slates[j].tolist() == best[:K].tolist(), (j, turn, ids[slates[j]])
                shown[j, slates[j]] = True


def test_a_scores_file_skips_items_the_user_was_shown_by_anyone(
    prep: Prepared, exports: Path
) -> None:
    covered = set(pl.read_parquet(exports / "scores" / "*.parquet")["user"].to_list())
    users = np.flatnonzero([u in covered for u in prep.population.source_user])[:3]
    rec = ScoresReplay(RecommenderConfig(kind="scores", path=str(exports / "scores")), "r")
    rec.bind(_audience(prep, users))
    idx = np.arange(3)
    first = rec.recommend(idx, 0, 0, K)
    upcoming = ScoresReplay(RecommenderConfig(kind="scores", path=str(exports / "scores")), "r")
    upcoming.bind(_audience(prep, users))
    upcoming.recommend(idx, 0, 0, K)
    nxt = upcoming.recommend(idx, 0, 1, K)
    # another recommender (the fallback, an injection) showed the replay's next items
    rec.observe(idx, nxt, None)  # type: ignore[arg-type]
    after = rec.recommend(idx, 0, 1, K)
    assert (after >= 0).all() and (first >= 0).all()
    for j in idx:
        assert not np.isin(after[j], nxt[j]).any() and not np.isin(after[j], first[j]).any()


def test_instructions_reach_a_plug_in_as_tag_codes_and_words(world, tmp_path: Path) -> None:
    Listens.heard.clear()
    cfg = study(kind="python", target="recoworld.testing.plugins:Listens")
    cfg = msgspec.structs.replace(
        cfg, brain=msgspec.structs.replace(cfg.brain, instruct_below=0.9, instruct_probability=1)
    )
    run_study(cfg, world, run_id="r", out_dir=tmp_path)
    assert Listens.heard
    tags = prepare(cfg, world).catalog.tags
    for _, more, less, text in Listens.heard:
        assert -1 <= more < len(tags) and -1 <= less < len(tags)
        assert isinstance(text, str) and text
    named = [(m, t) for _, m, _, t in Listens.heard if m >= 0]
    assert named and any(tags[m].lower() in t.lower() for m, t in named)


def test_a_plug_in_with_only_recommend_async_runs(world, tmp_path: Path) -> None:
    cfg = study(kind="python", target="recoworld.testing.plugins:AsyncOnly")
    res = run_study(cfg, world, run_id="r", out_dir=tmp_path)
    assert res.events > 0


# --- Ray ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from actors.coordinator import NAMESPACE
    from actors.driver import connect

    if ray.is_initialized():
        ray.shutdown()
    # the plug-ins travel as a cluster's jobs ship them (docs/cluster.md): py_modules
    ray.init(
        namespace=NAMESPACE,
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"py_modules": [str(ROOT / "examples")]},
    )
    connect("local")  # the running session
    yield
    ray.shutdown()


def every_way(exports: Path) -> StudyConfig:
    """One study whose arms are the ways in (each arm its own recommender): one Ray run, one
    set of actors, for all of them."""
    text = STUDY.format(size=1100).split("[[arms]]")[0] + '[recommender]\nkind = "popular"\n'
    for name in (n for n in WAYS if n != "implicit" or HAS_IMPLICIT):
        text += f'[[arms]]\nname = "{name}"\n[arms.recommender]\n'
        text += "".join(
            f"{k} = {_toml(v.format(exports=exports) if isinstance(v, str) else v)}\n"
            for k, v in WAYS[name].items()
        )
    return decode_study(text)


def test_every_way_in_gives_the_same_events_on_ray(
    cluster, world, exports: Path, tmp_path: Path
) -> None:
    from actors.driver import run_study_on_ray

    cfg = every_way(exports)
    assert [a.recommender.kind for a in cfg.arms if a.recommender] == [
        WAYS[a.name]["kind"] for a in cfg.arms
    ]
    ref = run_study(cfg, world, run_id="ref", out_dir=tmp_path, workers=1)
    res = run_study_on_ray(cfg, world, run_id="ray", out_dir=tmp_path, shards=2)
    manifest = msgspec.json.decode((res.path / "manifest.json").read_bytes())
    assert manifest["shards"] == 2
    got, want = events(res.path), events(ref.path)
    assert sorted(want["arm"].unique().to_list()) == sorted(a.name for a in cfg.arms)
    assert got.equals(want)


def test_a_contract_failure_on_ray_names_the_recommender_user_and_turn(
    cluster, world, tmp_path: Path
) -> None:
    from actors.driver import run_study_on_ray

    cfg = study(
        kind="python",
        target="recoworld.testing.plugins:Faulty",
        size=120,
        options={"fault": "duplicate", "from_uid": 70},
    )
    with pytest.raises(RecommenderError) as e:  # its own type, as in-process
        run_study_on_ray(cfg, world, run_id="r", out_dir=tmp_path, shards=1)
    assert re.fullmatch(  # the shard's error, one line (not a Ray traceback)
        r"recommender python:recoworld\.testing\.plugins:"
        r"Faulty \(arm 'control'\), user \d+ \(dataset user 'u\d+'\), session 0, turn 0: "
        r"item 0 \('i000'\) twice in one slate",
        str(e.value),
    )
    assert (tmp_path / ".r.partial").is_dir()


# --- the contract check, slate by slate -----------------------------------------------------


def _audience(prep: Prepared, users: np.ndarray | None = None) -> Audience:
    users = np.arange(len(prep.population)) if users is None else users
    return Audience(
        personas=prep.population.take(users),
        catalog=prep.catalog,
        seed=3,
        treated=np.ones(users.size, bool),
    )


def checked(prep: Prepared, **rec: object) -> CheckedRecommender:
    cfg = RecommenderConfig(**rec)  # type: ignore[arg-type]
    r = build_recommender(cfg, ArmConfig(name="control"), prep.creator_mask)
    assert isinstance(r, CheckedRecommender)
    r.bind(_audience(prep))
    return r


def faulty(prep: Prepared, fault: str, **rec: object) -> CheckedRecommender:
    options = {"fault": fault, **rec.pop("options", {})}  # type: ignore[dict-item]
    return checked(
        prep, kind="python", target="recoworld.testing.plugins:Faulty", options=options, **rec
    )


WHERE = "recommender python:recoworld.testing.plugins:Faulty (arm 'control'), user "


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("shape", "recommend() returned shape (8, 4), expected (8, 5): one row of slate_size = 5"),
        ("out_of_range", "item 158 is not a catalogue row (expected 0..150;"),
        ("duplicate", "twice in one slate"),
        ("floats", "recommend() returned float64 values, expected integer catalogue rows"),
        ("raise", "recommend() raised ValueError: boom for 8 users"),
    ],
)
def test_a_broken_slate_stops_the_run_with_one_line_naming_recommender_user_and_turn(
    prep: Prepared, fault: str, message: str
) -> None:
    rec = faulty(prep, fault)
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(8), 1, 2, K)
    text = str(e.value)
    uid, src = int(prep.population.uid[0]), prep.population.source_user[0]
    assert text.startswith(f"{WHERE}{uid} (dataset user {src!r})")
    assert ", session 1, turn 2: " in text and message in text
    assert "\n" not in text


def test_a_forbidden_repeat_names_the_item_and_the_rule(prep: Prepared) -> None:
    rec = faulty(prep, "repeat", repeats="forbid")
    fresh = np.flatnonzero(~rec.shown[:, : 2 * K].any(1))[:4]  # none of rows 0..9 in history
    rec.recommend(fresh, 0, 0, K)  # rows 0..4: new to them
    with pytest.raises(RecommenderError) as e:
        rec.recommend(fresh, 0, 1, K)  # rows 0..4 again
    uid = int(prep.population.uid[fresh[0]])
    assert str(e.value).startswith(f"{WHERE}{uid} ")
    assert str(e.value).endswith(
        f"session 0, turn 1: item 0 ({prep.catalog.item_ids[0]!r}) was shown to this user "
        'before or is in its history, and [recommender] repeats = "forbid"'
    )


def test_a_slate_in_the_users_history_is_a_forbidden_repeat_too(prep: Prepared) -> None:
    rec = faulty(prep, "none", repeats="forbid")
    hist = rec.shown.copy()
    user = int(np.flatnonzero(hist[:, :K].any(1))[0])  # its first slate holds a history item
    with pytest.raises(RecommenderError, match="is in its history"):
        rec.recommend(np.array([user]), 0, 0, K)


def test_an_uncovered_user_without_fallback_stops_the_run(prep: Prepared) -> None:
    rec = faulty(prep, "uncovered", fallback="none", options={"from_uid": 3})
    rec.recommend(np.arange(3), 0, 0, K)  # covered users are served
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(6), 0, 1, K)
    assert str(e.value) == (
        f"{WHERE}3 (dataset user {prep.population.source_user[3]!r}), session 0, turn 1: "
        'no slate for this user (not covered), and fallback = "none"'
    )


def test_an_uncovered_user_gets_the_fallbacks_slate_counted(prep: Prepared) -> None:
    rec = faulty(prep, "uncovered", options={"from_uid": 3})
    slates = rec.recommend(np.arange(6), 0, 0, K)
    assert (slates >= 0).all()
    assert rec.fallback_slates[:6].tolist() == [0, 0, 0, 1, 1, 1]
    assert rec.failed == 0 and rec.uncovered == 3


def test_bad_slates_with_fallback_are_served_by_it_and_counted_within_the_budget(
    prep: Prepared,
) -> None:
    # one user in 40 gets a bad slate: 2.5% of slates, under the default 5% budget
    rec = faulty(prep, "duplicate", on_invalid="fallback", options={"every": 40})
    idx = np.arange(len(prep.population))
    for turn in range(3):
        slates = rec.recommend(idx, 0, turn, K)
        assert (np.sort(slates, 1)[:, 1:] != np.sort(slates, 1)[:, :-1]).all()
    assert rec.failed == 3 * 3 and rec.served == 3 * 120
    assert np.flatnonzero(rec.fallback_slates).tolist() == [0, 40, 80]
    assert rec.fallback_slates.sum() == 9


def test_an_exception_with_fallback_fails_every_slate_of_the_call(prep: Prepared) -> None:
    rec = faulty(prep, "raise", on_invalid="fallback", max_fallback_rate=0.5)
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(30), 0, 0, K)
    assert str(e.value).startswith(
        "recommender python:recoworld.testing.plugins:Faulty (arm 'control'): 30 of 30 slates "
        "failed (100%, over [recommender] max_fallback_rate = 0.5); the run stops. First "
        f"failures: {WHERE}0"
    )
    assert "recommend() raised ValueError: boom for 30 users" in str(e.value)


def test_a_read_only_slate_array_is_not_written_into(prep: Prepared) -> None:
    rec = faulty(prep, "uncovered", options={"from_uid": 2, "readonly": True})
    slates = rec.recommend(np.arange(4), 0, 0, K)
    assert (slates >= 0).all() and rec.fallback_slates[:4].tolist() == [0, 0, 1, 1]


def test_a_failing_plug_in_with_fallback_gives_a_complete_run_counting_them(
    world, tmp_path: Path
) -> None:
    cfg = study(
        kind="python",
        target="recoworld.testing.plugins:Faulty",
        on_invalid="fallback",
        options={"fault": "out_of_range", "every": 50},
    )
    res = run_study(cfg, world, run_id="r", out_dir=tmp_path)
    um = user_metrics(res.path).filter(pl.col("arm") == "control")
    hit = um.filter(pl.col("fallback_slates") > 0)["user"].sort().to_list()
    assert hit == list(range(0, 1100, 50))


def test_failures_over_the_budget_stop_the_run_naming_the_first_ones(prep: Prepared) -> None:
    rec = faulty(prep, "duplicate", on_invalid="fallback", options={"every": 10})
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(len(prep.population)), 0, 0, K)
    text = str(e.value)
    assert text.startswith(
        "recommender python:recoworld.testing.plugins:Faulty (arm 'control'): 12 of 120 slates "
        "failed (10%, over [recommender] max_fallback_rate = 0.05); the run stops. "
        f"First failures: {WHERE}0"
    )
    assert "twice in one slate" in text and "\n" not in text


def test_an_exception_in_observe_is_a_failure_like_a_bad_slate(prep: Prepared) -> None:
    rec = faulty(prep, "observe_raises")
    idx = np.arange(4)
    slates = rec.recommend(idx, 0, 0, K)
    with pytest.raises(RecommenderError, match=r"observe\(\) raised RuntimeError: observe failed"):
        rec.observe(idx, slates, None)  # type: ignore[arg-type]


# --- loading plug-ins --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (
            "no_such_package.mod:Rec",
            {},
            "recommender.target = 'no_such_package.mod:Rec': cannot import module "
            "'no_such_package.mod' (ModuleNotFoundError: No module named 'no_such_package'); "
            "expected an importable module — on a cluster, ship the plug-in with the job",
        ),
        (
            "recoworld.testing.plugins:Nope",
            {},
            "recommender.target = 'recoworld.testing.plugins:Nope': module "
            "'recoworld.testing.plugins' has no 'Nope'",
        ),
        (
            "recoworld.testing.plugins:NO_SLATE",
            {},
            "recommender.target = 'recoworld.testing.plugins:NO_SLATE': expected a class or "
            "factory function, got int",
        ),
        (
            "recoworld.testing.plugins:Faulty",
            {"faults": "shape"},
            "recommender.options: the factory 'recoworld.testing.plugins:Faulty' refused them (",
        ),
        (
            "recoworld.testing.plugins:NoObserve",
            {},
            "recommender.target = 'recoworld.testing.plugins:NoObserve': the object it made "
            "(NoObserve) lacks observe, instruct; expected the recommender protocol",
        ),
        (
            "examples.plugins.implicit_als:ImplicitRecommender",
            {"model": "svd"},
            "recommender.target = 'examples.plugins.implicit_als:ImplicitRecommender': the "
            'factory raised ValueError: model = \'svd\': expected "als" or "bpr"',
        ),
    ],
)
def test_a_plug_in_that_cannot_be_loaded_is_one_line_naming_target_and_expectation(
    prep: Prepared, target: str, options: dict, message: str
) -> None:
    if "implicit" in target and not HAS_IMPLICIT:
        pytest.skip("implicit is not installed")
    with pytest.raises(RecommenderError) as e:
        checked(prep, kind="python", target=target, options=options)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_a_plug_in_module_that_fails_at_import_is_named(
    prep: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('no config found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RecommenderError) as e:
        checked(prep, kind="python", target="broken_plugin:Rec")
    assert str(e.value) == (
        "recommender.target = 'broken_plugin:Rec': importing 'broken_plugin' raised "
        "RuntimeError: no config found"
    )


def test_a_plug_in_missing_a_dependency_says_which(
    prep: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RecommenderError, match="No module named 'not_installed_dep'"):
        checked(prep, kind="python", target="needs_dep:Rec")


def test_a_factory_function_is_a_target_too(prep: Prepared) -> None:
    rec = checked(prep, kind="python", target="recoworld.testing.plugins:make_faulty")
    assert rec.recommend(np.arange(3), 0, 0, K).shape == (3, K)


def test_a_plug_in_in_the_working_directory_is_found_without_being_on_the_path(
    prep: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "local_plugins").mkdir()
    (tmp_path / "local_plugins" / "mine.py").write_text(
        "from recoworld.testing.plugins import Faulty as Mine\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    rec = checked(prep, kind="python", target="local_plugins.mine:Mine")
    assert rec.recommend(np.arange(2), 0, 0, K).shape == (2, K)


def test_the_config_refuses_a_bad_target_and_a_boost_arm(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Expected a plug-in factory .* - at `\$.recommender"):
        study(kind="python", target="not a target")
    text = STUDY.format(size=120).replace('treatment = "inject"', 'treatment = "boost"')
    with pytest.raises(ConfigError, match=r"arms\[1\].treatment"):
        decode_study(text + 'kind = "scores"\npath = "x.parquet"')


# --- exported files: every problem is one line naming file, column, row -------------------------


def write(path: Path, **columns: object) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def bind_scores(prep: Prepared, path: Path, **rec: object) -> ScoresReplay:
    r = ScoresReplay(RecommenderConfig(kind="scores", path=str(path), **rec), "recommender")  # type: ignore[arg-type]
    r.bind(_audience(prep))
    return r


def bind_slates(prep: Prepared, path: Path) -> SlatesReplay:
    r = SlatesReplay(RecommenderConfig(kind="slates", path=str(path)), "recommender")
    r.bind(_audience(prep))
    return r


def test_a_missing_file_or_empty_folder_is_named(
    prep: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        bind_scores(prep, Path("nowhere.parquet"))
    assert str(e.value) == (
        f"nowhere.parquet: does not exist, relative to the working directory {tmp_path}; "
        "expected the export a scores recommender replays (recommender.path): a Parquet file "
        "or folder"
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty: is a folder without .parquet files"):
        bind_scores(prep, tmp_path / "empty")


def test_a_file_that_is_not_parquet_is_named(prep: Prepared, tmp_path: Path) -> None:
    (tmp_path / "s.parquet").write_text("user,item,score\n1,2,3\n")
    with pytest.raises(DataError) as e:
        bind_scores(prep, tmp_path / "s.parquet")
    assert str(e.value).startswith(f"{tmp_path / 's.parquet'}: cannot be read as Parquet (")
    assert str(e.value).endswith("expected a Parquet file of user, item, score (recommender.path)")


def _ids(prep: Prepared, n: int) -> tuple[list[str], list[str]]:
    users = [str(u) for u in prep.population.source_user[:n]]
    items = [str(i) for i in prep.catalog.item_ids[:n]]
    return users, items


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            lambda u, i: {"user": u, "item": i},
            "has no column 'score' (columns: user, item); expected columns user, item, score "
            "(recommender.path)",
        ),
        (
            lambda u, i: {"user": u, "item": [[x] for x in i], "score": [1.0] * len(u)},
            "column 'item' holds lists (list<",
        ),
        (
            lambda u, i: {"user": u, "item": i, "score": ["1.5"] * len(u)},
            "column 'score' holds values of type string; expected a number per row (float or "
            "integer) (one value per row)",
        ),
        (
            lambda u, i: {"user": [1.5] * len(u), "item": i, "score": [1.0] * len(u)},
            "column 'user' holds values of type double; expected user ids (integers or strings)",
        ),
    ],
)
def test_bad_columns_in_a_scores_file_are_named(
    prep: Prepared, tmp_path: Path, columns, message: str
) -> None:
    users, items = _ids(prep, 4)
    path = write(tmp_path / "s.parquet", **columns(users, items))
    with pytest.raises(DataError) as e:
        bind_scores(prep, path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["score"].__setitem__(2, float("nan")),
            "column 'score', row 2 (counting from 0): is nan (1 of the 4 rows read are not "
            "finite); expected a finite number (recommender.path, kind = 'scores')",
        ),
        (
            lambda c: c["score"].__setitem__(3, float("inf")),
            "column 'score', row 3 (counting from 0): is inf",
        ),
        (
            lambda c: c["score"].__setitem__(1, None),
            "column 'score', row 1 (counting from 0): is null; expected a number per row",
        ),
        (
            lambda c: c["item"].__setitem__(1, "no-such-item"),
            "column 'item', row 1 (counting from 0): item 'no-such-item' is not an item of the "
            "world (1 of the 4 rows read for these users have an unknown item); expected the "
            "world's item ids (e.g. ",
        ),
        (
            lambda c: (
                c["item"].__setitem__(3, c["item"][1]),
                c["user"].__setitem__(3, c["user"][1]),
            ),
            "column 'item', row 3 (counting from 0): one user scored twice for one item: rows 1 "
            "and 3 (1 such rows among those read for these users); expected one row per (user, "
            "item)",
        ),
    ],
)
def test_bad_rows_in_a_scores_file_are_named_with_their_row(
    prep: Prepared, tmp_path: Path, edit, message: str
) -> None:
    users, items = _ids(prep, 4)
    cols = {"user": users, "item": items, "score": [0.5, 0.4, 0.3, 0.2]}
    edit(cols)
    path = write(tmp_path / "s.parquet", **cols)
    with pytest.raises(DataError) as e:
        bind_scores(prep, path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


def test_rows_of_users_outside_the_batch_are_not_read_or_checked(
    prep: Prepared, tmp_path: Path
) -> None:
    users, items = _ids(prep, 4)
    path = write(
        tmp_path / "s.parquet",
        user=users + ["not-in-this-batch"],
        item=items + ["no-such-item"],
        score=[0.5, 0.4, 0.3, 0.2, float("nan")],
    )
    rec = bind_scores(prep, path)
    assert rec.length.sum() == 4


def test_integer_user_and_item_ids_match_their_text(prep: Prepared, tmp_path: Path) -> None:
    rec = ScoresReplay(
        RecommenderConfig(kind="scores", path=str(tmp_path / "s.parquet"), user_key="uid"), "r"
    )
    uid = prep.population.uid[:2].tolist()
    write(tmp_path / "s.parquet", user=pa.array(uid, pa.int32()), item=["1", "2"], score=[1, 2])
    # item ids of the synthetic world are text ("i007"): integer ids match nothing here ...
    with pytest.raises(DataError, match="item '1' is not an item of the world"):
        rec.bind(_audience(prep))
    hist = prep.population.history_of(prep.catalog.n_items).toarray()
    rows = [int(np.flatnonzero(~hist[j])[0]) for j in range(2)]  # not in their histories
    items = [str(prep.catalog.item_ids[r]) for r in rows]
    write(tmp_path / "s.parquet", user=pa.array(uid, pa.int32()), item=items, score=[1, 2])
    rec.bind(_audience(prep))  # ... uids match as integers
    assert rec.recommend(np.arange(2), 0, 0, 1)[:, 0].tolist() == rows


def test_integer_users_against_text_ids_are_named_not_left_uncovered(
    prep: Prepared, tmp_path: Path
) -> None:
    items = [str(i) for i in prep.catalog.item_ids[:2]]
    path = write(tmp_path / "s.parquet", user=[1, 2], item=items, score=[1.0, 2.0])
    with pytest.raises(DataError) as e:
        bind_scores(prep, path)
    assert str(e.value) == (
        f"{path}: column 'user' holds integers, and no user of this batch has an integer id "
        f"(user_key = 'source_user' gives ids such as {sorted(prep.population.source_user)[0]!r})"
        '; expected the ids of user_key ("source_user": the dataset\'s user ids, as text if they '
        'are text; "uid": the simulated user ids)'
    )


def _slate_rows(prep: Prepared, k: int = K) -> dict[str, list]:
    users = [str(prep.population.source_user[0])] * k + [str(prep.population.source_user[1])] * k
    return {
        "user": users,
        "session": [0] * 2 * k,
        "turn": [0] * 2 * k,
        "position": list(range(k)) * 2,
        "item": [str(i) for i in prep.catalog.item_ids[: 2 * k]],
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["position"].__setitem__(3, 1),
            "column 'position', row 3 (counting from 0): two items in one slot: rows 1 and 3 (1 "
            "such rows among those read for these users); expected one row per (user, session, "
            "turn, position)",
        ),
        (
            lambda c: c["position"].__setitem__(4, 7),
            "column 'position', row 0 (counting from 0): the slate of user '{u0}', session 0, "
            "turn 0 has positions [0, 1, 2, 3, 7]; expected positions 0, 1, 2, ... without a gap",
        ),
        (
            lambda c: c["session"].__setitem__(0, -1),
            "column 'session', row 0 (counting from 0): is -1; expected an integer in 0..1048575",
        ),
        (
            lambda c: c.__setitem__("turn", [str(t) for t in c["turn"]]),
            "column 'turn' holds values of type string; expected an integer >= 0 per row",
        ),
    ],
)
def test_bad_rows_in_a_slates_file_are_named(
    prep: Prepared, tmp_path: Path, edit, message: str
) -> None:
    cols = _slate_rows(prep)
    edit(cols)
    path = write(tmp_path / "s.parquet", **cols)
    with pytest.raises(DataError) as e:
        bind_slates(prep, path)
    expected = message.format(u0=prep.population.source_user[0])
    assert str(e.value).startswith(f"{path}: {expected}"), str(e.value)


def test_a_slate_of_another_length_than_the_studys_slate_size_is_named(
    prep: Prepared, tmp_path: Path
) -> None:
    path = write(tmp_path / "s.parquet", **_slate_rows(prep, k=4))
    rec = bind_slates(prep, path)
    with pytest.raises(DataError) as e:
        rec.recommend(np.arange(2), 0, 0, K)
    assert str(e.value) == (
        f"{path}: column 'position', row 0 (counting from 0): the slate of user "
        f"'{prep.population.source_user[0]}', session 0, turn 0 has 4 items (2 of the 2 slates "
        "read for these users have another length than 5); expected slates of the study's "
        "[simulation] slate_size = 5 items (positions 0..4) (recommender.path, kind = 'slates')"
    )


# --- nothing already written is lost ---------------------------------------------------------


def test_a_failed_run_stays_resumable_and_its_resume_equals_an_uninterrupted_run(
    world, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    opts = {"fault": "raise", "from_uid": 1030, "from_session": 1, "while_exists": str(flag)}
    cfg = study(kind="python", target="recoworld.testing.plugins:Faulty", options=opts)
    with pytest.raises(RecommenderError, match=r"recommend\(\) raised ValueError: boom"):
        run_study(cfg, world, run_id="r", out_dir=tmp_path / "runs", workers=2)
    partial = tmp_path / "runs" / ".r.partial"
    assert marker_path(partial, 0).is_file()  # shard 0 (users 0..1023) finished and is kept
    assert not marker_path(partial, 1).is_file()
    flag.unlink()  # the plug-in is fixed
    res = run_study(cfg, world, run_id="r", out_dir=tmp_path / "runs", workers=2, resume=True)
    clean = run_study(cfg, world, run_id="clean", out_dir=tmp_path / "runs", workers=2)
    assert events(res.path).equals(events(clean.path))


def test_a_failed_overwrite_leaves_the_complete_run_untouched(world, tmp_path: Path) -> None:
    good = study(kind="python", target="recoworld.testing.plugins:Faulty")
    first = run_study(good, world, run_id="r", out_dir=tmp_path)
    before = check_run_dir(first.path, verify=True)
    bad = study(
        kind="python",
        target="recoworld.testing.plugins:Faulty",
        options={"fault": "duplicate", "from_session": 1},
    )
    with pytest.raises(RecommenderError, match="twice in one slate"):
        run_study(bad, world, run_id="r", out_dir=tmp_path, overwrite=True)
    assert check_run_dir(first.path, verify=True) == before


def test_a_bad_file_stops_the_run_before_it_writes_a_shard(
    world, prep: Prepared, tmp_path: Path
) -> None:
    users, items = _ids(prep, 4)
    path = write(tmp_path / "s.parquet", user=users, item=items, score=[1.0, 2.0, None, 3.0])
    with pytest.raises(DataError, match="column 'score', row 2"):
        run_study(study(kind="scores", path=str(path)), world, run_id="r", out_dir=tmp_path)
    with pytest.raises(RunError, match="an interrupted run left"):
        check_run_dir(tmp_path / "r")


def test_the_digest_of_an_export_changes_with_its_content(prep: Prepared, tmp_path: Path) -> None:
    users, items = _ids(prep, 2)
    path = write(tmp_path / "s.parquet", user=users, item=items, score=[1.0, 2.0])
    a = file_sha256(path)
    write(tmp_path / "s.parquet", user=users, item=items, score=[1.0, 2.5])
    assert file_sha256(path) != a and len(a) == 64
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "p.parquet", user=users, item=items, score=[1.0, 2.5])
    assert file_sha256(tmp_path / "d") != file_sha256(path)


def test_the_minimal_plug_in_in_the_docs_is_the_example_file() -> None:
    doc = (ROOT / "docs" / "recommenders.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    source = (ROOT / "examples" / "plugins" / "minimal.py").read_text()
    assert source in blocks


def test_a_run_records_the_exports_digest_and_resume_refuses_a_changed_export(
    world, exports: Path, tmp_path: Path
) -> None:
    """The study's identity covers an export's content, not only its path."""
    import shutil

    from recoworld.recommenders.exported import file_sha256, pin_exports

    path = tmp_path / "slates.parquet"
    shutil.copy(exports / "slates.parquet", path)
    cfg = study(120, kind="slates", path=str(path))
    digest = file_sha256(path)
    assert pin_exports(cfg).recommender.sha256 == digest
    res = run_study(cfg, world, run_id="pin", out_dir=tmp_path / "runs")
    kept = msgspec.json.decode((res.path / "study.json").read_bytes())
    assert kept["recommender"]["sha256"] == digest
    # the export changes under the same path: a study that pins the old digest refuses it
    pl.read_parquet(path).head(50).write_parquet(path)
    with pytest.raises(DataError, match=rf"has SHA-256 [0-9a-f]{{64}}, the study pins {digest}"):
        pin_exports(study(120, kind="slates", path=str(path), sha256=digest))
    # and --resume / --overwrite compare studies: the digest is where they differ
    from recoworld.config import results_difference

    old = msgspec.structs.replace(
        cfg, recommender=msgspec.structs.replace(cfg.recommender, sha256=digest)
    )
    assert (results_difference(old, pin_exports(cfg)) or "").startswith(
        "`$.recommender.sha256` was"
    )

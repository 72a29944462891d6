"""Published protocols in the fidelity harness (recoworld/eval): the agent4rec and afl lists,
the last-k and given splits, micro and macro figures, EASE beside our figures, the exposure
model of protocol c, session gaps and repeats, and a headline whose every figure says how many
users it covers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from recoworld.cli import main
from recoworld.config import WorldConfig
from recoworld.errors import ConfigError, DataError
from recoworld.eval import protocols as P
from recoworld.eval.decider import Decisions
from recoworld.eval.ease import Ease
from recoworld.eval.fidelity import (
    PROTOCOLS,
    FidelitySettings,
    evaluate,
    fit_on_training,
)
from recoworld.eval.headline import CALIBRATION_GOALS
from recoworld.eval.split import check_split, holdout_split, read_given_pairs
from recoworld.items.catalog import build_catalog
from recoworld.recommenders.base import Audience
from recoworld.recommenders.browse import CatalogueBrowsing
from recoworld.study.prepare import load_world_for
from recoworld.users.persona import personas_from_history
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def world() -> World:
    return synthetic_world(120, 300, seed=11)


@pytest.fixture(scope="module")
def a4r(world: World):  # noqa: ANN201
    return evaluate(world, FidelitySettings(protocol="agent4rec", seed=3, embedding_dim=8))


@pytest.fixture(scope="module")
def afl(world: World):  # noqa: ANN201
    return evaluate(world, FidelitySettings(protocol="afl", seed=3, embedding_dim=8))


# ---- agent4rec --------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 3, 9])
def test_agent4rec_lists_hold_k_positives_and_m_negatives_each(world: World, m: int) -> None:
    split = holdout_split(world)
    lists = P.discrimination_lists(split, m, seed=0, positives="all")
    held = np.bincount(split.test.user, minlength=world.users.height)
    for r, u in enumerate(lists.users):
        k = min(held[u], 20 // (m + 1))
        n_pos = int(lists.label[r].sum())
        assert n_pos == k and lists.valid[r].sum() == k * (1 + m)
        items = lists.items[r, lists.valid[r]]
        pos = items[lists.label[r, lists.valid[r]]]
        neg = items[~lists.label[r, lists.valid[r]]]
        assert np.isin(pos, split.test.item[split.test.user == u]).all()
        assert split.never_touched(np.full(neg.size, u), neg).all()
        assert np.unique(items).size == items.size


def test_agent4rec_counts_every_held_out_interaction_as_a_positive(world: World) -> None:
    split = holdout_split(world)
    liked = P.discrimination_lists(split, 1, seed=0, positives="liked")
    every = P.discrimination_lists(split, 1, seed=0, positives="all")
    assert world.has_ratings and every.label.sum() > liked.label.sum()
    assert every.users.size >= liked.users.size


def test_agent4rec_reports_m_in_1_2_3_9_with_blind_first(a4r) -> None:  # noqa: ANN001
    d = a4r.tables["discrimination"]
    assert set(d["ratio"]) == {"1:1", "1:2", "1:3", "1:9"}
    assert a4r.meta["protocol"] == "agent4rec"
    hl = a4r.tables["headline"]
    assert hl["figure"][0] == "positive rate, 1:9 lists, blind"
    assert "accuracy 1:1, blind, judged" in hl["figure"].to_list()


# ---- afl: last-k split, micro and macro, Hit@1 ------------------------------------------------


def test_last_k_holds_out_each_users_last_k_by_time(world: World) -> None:
    split = holdout_split(world, order="last-k", last_k=10)
    check_split(split)
    u, _, _, _, ts = world.coded_interactions()
    counts = np.bincount(u, minlength=world.users.height)
    held = np.bincount(split.test.user, minlength=world.users.height)
    np.testing.assert_array_equal(held, np.where(counts > 10, 10, 0))  # no repeated pairs here
    for user in np.flatnonzero(held)[:10]:
        latest = np.sort(ts[u == user])[-10:]
        np.testing.assert_array_equal(
            np.sort(split.test.timestamp[split.test.user == user]), latest
        )


def test_afl_lists_are_the_last_10_and_10_never_interacted(afl, world: World) -> None:  # noqa: ANN001
    assert afl.meta["split_order"] == "last-k"
    d = afl.tables["discrimination"]
    assert set(d["ratio"]) == {"1:1"}
    split = holdout_split(world, order="last-k")
    lists = P.discrimination_lists(split, 1, seed=3, positives="all")
    assert (lists.label.sum(1) == 10).all() and (lists.valid.sum(1) == 20).all()
    figures = afl.tables["headline"]["figure"].to_list()
    for f in ("precision", "recall", "f1"):
        assert f"{f} micro, 1:1 lists of 20, blind, judged" in figures
        assert f"{f} macro, 1:1 lists of 20, blind, judged" in figures
    assert "Hit@1, next item among 20 (the user model as ranker)" in figures


class Fixed:
    """Watches a fixed set of (user, item) pairs."""

    name = "fixed"

    def __init__(self, watch: set[tuple[int, int]]) -> None:
        self.watch = watch

    def decide(self, users, items, *, base_rate, key) -> Decisions:  # noqa: ANN001
        s = np.array(
            [[(int(u), int(i)) in self.watch for i in row] for u, row in zip(users, items)]
        )
        return Decisions(prob=None, sampled=s)

    def rate(self, users, items, *, key) -> None:  # noqa: ANN001
        return None


def test_micro_pools_counts_and_macro_averages_users(world: World) -> None:
    split = holdout_split(world, order="last-k")
    lists = P.discrimination_lists(split, 1, seed=0, positives="all")
    # user 0 of the lists watches all its positives and 5 negatives; the others watch nothing
    r0 = lists.users[0]
    pos = lists.items[0][lists.label[0]]
    neg = lists.items[0][~lists.label[0]][:5]
    dec = Fixed({(int(r0), int(i)) for i in np.r_[pos, neg]})
    d, _ = P.discrimination(split, [dec], None, ratios=(1,), seed=0, positives="all")  # type: ignore[arg-type]
    row = d.filter(pl.col("prior") == "told").row(0, named=True)
    n = lists.users.size
    assert row["precision_micro"] == pytest.approx(10 / 15)
    assert row["recall_micro"] == pytest.approx(10 / (10 * n))
    assert row["f1_micro"] == pytest.approx(2 * 10 / (2 * 10 + 5 + 10 * (n - 1)))
    assert row["precision"] == pytest.approx((10 / 15) / n)  # 0 for users who watch nothing
    assert row["recall"] == pytest.approx(1 / n)
    assert row["users"] == n


# ---- the given split ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_a_given_split_holds_out_exactly_its_pairs(world: World, tmp_path: Path, fmt: str) -> None:
    pairs = world.interactions.select("user_id", "item_id").gather_every(7)
    path = tmp_path / f"split.{'parquet' if fmt == 'parquet' else fmt}"
    if fmt == "parquet":
        pairs.write_parquet(path)
    else:
        pairs.with_columns(pl.lit("x").alias("extra")).write_csv(
            path, separator="\t" if fmt == "tsv" else ","
        )
    codes = read_given_pairs(path, world)
    split = holdout_split(world, order="given", given=codes)
    check_split(split)
    got = np.unique(split.test.user * world.items.height + split.test.item)
    np.testing.assert_array_equal(got, codes)
    assert split.order == "given" and split.timed  # the synthetic world is dated


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user,item_id\nu000,i0000\n", "line 1: header lacks column 'user_id'"),
        ("user_id,item_id\nnobody,i0000\n", "line 2: user 'nobody' is not in the world"),
        ("user_id,item_id\nu000,nothing\n", "line 2: item 'nothing' is not in the world"),
        ("user_id,item_id\n", "no records after the header; expected at least one held-out pair"),
    ],
    ids=["missing column", "unknown user", "unknown item", "header only"],
)
def test_a_bad_given_split_is_refused_in_one_line(
    world: World, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "split.csv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_given_pairs(path, world)
    assert str(err.value).startswith(f"{path}"), str(err.value)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_given_pair_that_is_no_interaction_is_refused(world: World, tmp_path: Path) -> None:
    u, i = world.users["user_id"][0], world.items["item_id"]
    touched = set(world.interactions.filter(pl.col("user_id") == u)["item_id"])
    other = next(x for x in i if x not in touched)
    path = tmp_path / "split.csv"
    path.write_text(f"user_id,item_id\n{u},{other}\n")
    with pytest.raises(DataError, match=f"line 2: user '{u}' never interacted with item"):
        read_given_pairs(path, world)


# ---- EASE -------------------------------------------------------------------------------------


def test_ease_is_the_closed_form(world: World) -> None:
    split = holdout_split(world)
    e = Ease(split, lam=50.0)
    tr = split.train_coded
    x = sparse.csr_matrix(
        (np.ones(tr.user.size), (tr.user, tr.item)), shape=(world.users.height, split.n_items)
    )
    x.data[:] = 1.0
    cols = np.unique(tr.item)
    xd = x[:, cols].toarray()
    p = np.linalg.inv(xd.T @ xd + 50.0 * np.eye(cols.size))
    b = np.eye(cols.size) - p / np.diag(p)
    users = np.arange(6)
    items = np.tile(cols[:15], (6, 1))
    np.testing.assert_allclose(e.score(users, items), (xd @ b)[:6, :15], rtol=1e-3, atol=1e-4)
    untrained = np.setdiff1d(np.arange(split.n_items), cols)
    if untrained.size:
        assert (e.score(users[:1], untrained[None, :1]) == 0).all()


def test_ease_is_printed_beside_the_ranked_figures(a4r) -> None:  # noqa: ANN001
    d = a4r.tables["discrimination"]
    ease = d.filter(pl.col("brain") == "EASE")
    assert set(ease["decisions"]) == {"ranked"} and set(ease["prior"]) == {"told"}
    assert ease.height == 4
    hl = a4r.tables["headline"]
    row = hl.filter(pl.col("figure") == "accuracy 1:1, told, ranked").row(0, named=True)
    assert row["ease"] == ease.filter(pl.col("ratio") == "1:1")["accuracy"][0]
    assert row["goal"] == ">= EASE" and row["met"] == (row["ours"] >= row["ease"])
    assert "EASE" in set(a4r.tables["hit"]["recommender"])


# ---- protocol c: exposure, gaps, repeats ------------------------------------------------------


def test_catalogue_browsing_never_repeats_and_follows_popularity(world: World) -> None:
    cat = build_catalog(world, dim=8, seed=0)
    pers = personas_from_history(world, cat)
    rec = CatalogueBrowsing()
    n = len(pers)
    rec.bind(Audience(personas=pers, catalog=cat, seed=1, treated=np.zeros(n, bool)))
    idx = np.arange(n)
    history = pers.history_of(cat.n_items).toarray()
    slates = np.concatenate([rec.recommend(idx, s, t, 10) for s in range(2) for t in range(3)], 1)
    for r in range(n):
        assert np.unique(slates[r]).size == 60 and not history[r, slates[r]].any()
    shown = np.bincount(slates.ravel(), minlength=cat.n_items)
    eligible = (~history).sum(0)
    ok = eligible > 0
    rate = shown[ok] / eligible[ok]  # how often an item is shown to those who may see it
    rho = np.corrcoef(np.log1p(cat.interaction_count[ok]), rate)[0, 1]
    assert rho > 0.3
    # a user's slate does not depend on its batch
    other = CatalogueBrowsing()
    other.bind(Audience(personas=pers, catalog=cat, seed=1, treated=np.zeros(n, bool)))
    np.testing.assert_array_equal(other.recommend(idx[5:6], 0, 0, 10), slates[5:6, :10])


def test_catalogue_browsing_draws_as_gumbel_top_k_does_and_runs_the_catalogue_dry(
    world: World,
) -> None:
    """The successive draws are a draw without replacement in proportion to the weights, the
    same distribution as Gumbel top-k over the whole catalogue (its fallback); a user whose
    catalogue is nearly all shown still gets fresh items, then whatever is left."""
    cat = build_catalog(world, dim=8, seed=0)
    pers = personas_from_history(world, cat)
    n = len(pers)
    aud = Audience(personas=pers, catalog=cat, seed=2, treated=np.zeros(n, bool))
    fast, slow = CatalogueBrowsing(alpha=1.5), CatalogueBrowsing(alpha=1.5)
    fast.bind(aud)
    slow.bind(aud)
    idx = np.arange(n)
    a = np.concatenate([fast.recommend(idx, 0, t, 5) for t in range(40)], 1)
    b = np.concatenate([slow._gumbel(idx, 0, t, 5) for t in range(1)], 1)
    for t in range(1, 40):
        slow.shown.add(idx, b[:, -5:])
        b = np.concatenate([b, slow._gumbel(idx, 0, t, 5)], 1)
    logc = np.log1p(cat.interaction_count.astype(float))
    # the same popularity of what is shown, slot by slot, and neither repeats an item
    for t in (0, 10, 39):
        sa, sb = logc[a[:, 5 * t : 5 * t + 5]].mean(), logc[b[:, 5 * t : 5 * t + 5]].mean()
        assert abs(sa - sb) < 0.1 * max(sa, sb), (t, sa, sb)
    assert all(np.unique(r).size == r.size for r in a)
    # a user with one unseen item left is shown it first
    last = CatalogueBrowsing()
    last.bind(aud)
    last.shown.add(np.array([0]), np.setdiff1d(np.arange(cat.n_items), [7])[None, :])
    assert last.recommend(np.array([0]), 0, 0, 3)[0, 0] == 7


def test_catalogue_browsing_is_the_same_over_a_large_catalogue_s_structures(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was shown kept as lists per user (large catalogues) and the fallback drawn a few
    users at a time: the same slates as the dense path."""
    from recoworld.recommenders import base, browse

    cat = build_catalog(world, dim=8, seed=0)
    pers = personas_from_history(world, cat)
    aud = Audience(personas=pers, catalog=cat, seed=4, treated=np.zeros(len(pers), bool))
    idx = np.arange(len(pers))

    def slates() -> np.ndarray:
        rec = CatalogueBrowsing()
        rec.bind(aud)
        return np.concatenate([rec.recommend(idx, 0, t, 10) for t in range(25)], 1)

    dense = slates()
    monkeypatch.setattr(base, "DENSE_SHOWN_ITEMS", 0)
    monkeypatch.setattr(browse, "GUMBEL_CELLS", 2 * cat.n_items)
    np.testing.assert_array_equal(slates(), dense)


def test_session_gaps_and_repeats() -> None:
    c = P.Consumption(
        user=np.array([0, 0, 0, 0, 1, 1, 1]),
        session=np.array([0, 0, 1, 2, 0, 1, 1]),
        item=np.array([5, 6, 5, 7, 1, 2, 1]),
        day=np.array([0.0, 0.0, 2.5, 3.0, 10.0, 11.0, 11.0]),
    )
    np.testing.assert_allclose(np.sort(P.session_gaps(c)), [0.5, 1.0, 2.5])
    assert P.repeat_share(c) == pytest.approx(2 / 7)


def test_real_sessions_are_cut_at_30_minutes_and_carry_their_start(world: World) -> None:
    split = holdout_split(world)
    c = P.real_consumption(split)
    te = split.test
    assert c.day is not None
    for u in np.unique(te.user)[:10]:
        m = c.user == u
        first = np.r_[True, np.diff(c.session[m]) > 0]
        np.testing.assert_allclose(c.day[m][first], te.timestamp[te.user == u][first] / 86_400)


# ---- the headline: goals, distances and who each figure covers --------------------------------


def test_every_headline_figure_covers_the_users_its_table_says(a4r) -> None:  # noqa: ANN001
    hl, t = a4r.tables["headline"], a4r.tables
    d = t["discrimination"]
    for r in hl.iter_rows(named=True):
        assert r["users"] is not None and 0 < r["users"] <= a4r.meta["evaluated_users"]
        if r["figure"].startswith(("accuracy", "F1", "positive rate")):
            assert r["users"] == d.filter(pl.col("brain") == "parametric")["users"][0]
        if r["exposure"]:
            metric = next(m for m, g in CALIBRATION_GOALS.items() if g[0] == r["figure"])
            c = t["calibration"].filter(
                (pl.col("exposure") == r["exposure"])
                & (pl.col("trait") == "all")
                & (pl.col("metric") == metric)
            )
            assert r["users"] == c["users"][0]
    # lists need a held-out positive, so they may cover fewer users than were evaluated
    assert d["users"][0] <= a4r.meta["evaluated_users"] <= a4r.meta["eligible_users"]


def test_headline_goals_and_distances(a4r) -> None:  # noqa: ANN001
    hl = a4r.tables["headline"]
    gini = hl.filter(pl.col("figure") == "popularity Gini of consumption")
    assert set(gini["exposure"]) == {"mf", "browse"}
    for r in gini.iter_rows(named=True):
        assert r["distance"] == pytest.approx(abs(r["ours"] - r["real"]))
        if r["exposure"] == "browse":  # the model of the logs' exposure is held to the goal
            assert r["goal"] == "|ours - real| <= 0.05" and r["goal_source"] == "issue 15"
            assert r["met"] == (r["distance"] <= 0.05)
        else:  # a study's recommender: a what-if, no goal
            assert r["goal"] == "- (what-if)" and r["met"] is None and r["goal_source"] is None
    ips = hl.filter(pl.col("figure") == "items per session").row(0, named=True)
    assert ips["distance"] == pytest.approx(abs(ips["ours"] / ips["real"] - 1))
    rates = hl.filter(pl.col("figure").str.starts_with("positive rate"))
    told = rates.filter(pl.col("figure").str.ends_with("told")).row(0, named=True)
    assert told["goal"] == "|ours / real - 1| <= 10%"
    # blind, the user judges items alone: its rate on a list it was not told about is no goal
    blind = rates.filter(pl.col("figure").str.ends_with("blind")).row(0, named=True)
    assert blind["goal"] == "-" and blind["met"] is None


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_afl_with_a_given_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = tmp_path / "split.csv"
    cli_world = load_world_for(WorldConfig(dataset="synthetic"), 0)  # what --dataset synthetic is
    cli_world.interactions.select("user_id", "item_id").gather_every(5).write_csv(split)
    rc = main(
        [
            "eval",
            "fidelity",
            "--dataset",
            "synthetic",
            "--protocol",
            "afl",
            "--split",
            f"given:{split}",
            "--exposure",
            "browse",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "protocol afl (given split)" in out and "f1 micro" in out and "browse" in out
    meta = pl.read_parquet(tmp_path / "out" / "headline.parquet")
    assert set(meta["exposure"]) == {"", "browse"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "sideways"], "--split: expected auto, time, random, last-k or given:PATH"),
        (["--split", "given:"], "--split given:PATH: the path is empty"),
        (["--exposure", "mf,tv"], "--exposure: expected a list of mf, browse, got 'tv'"),
        (["--last-k", "0"], "--last-k: expected an integer >= 1, got 0"),
    ],
)
def test_cli_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    rc = main(["eval", "fidelity", "--dataset", "synthetic", "--out", str(tmp_path / "o"), *args])
    assert rc != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_protocols_are_declared_once() -> None:
    assert set(PROTOCOLS) == {"recoworld", "agent4rec", "afl"}
    assert PROTOCOLS["agent4rec"].ratios == (1, 2, 3, 9)
    assert PROTOCOLS["afl"].split == "last-k"
    with pytest.raises(ConfigError, match="--protocol: expected one of"):
        fit_on_training(synthetic_world(50, 80, seed=1), FidelitySettings(protocol="x"))

"""The social layer (docs/social.md): the graph and its bad inputs, awareness, search, the
round choice and messages, diffusion and cascades, and a social study that writes the same
events in this process, in 2 forked workers and in 4 in-process hosts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import SocialConfig, decode_study
from recoworld.errors import ConfigError, DataError
from recoworld.io.tables import read_table
from recoworld.social.awareness import Awareness
from recoworld.social.diffusion import USER_METRICS, cascades
from recoworld.social.fidelity import co_consumption
from recoworld.social.graph import (
    community_order,
    cross_edges,
    from_pairs,
    generate_graph,
    graph_from_friends,
    label_propagation,
)
from recoworld.social.search import ItemSearch, queries
from recoworld.social.talk import CHAT, POST, Conversations, canonical, deliveries, round_choice
from recoworld.study.prepare import load_world_for
from recoworld.study.rounds import LocalHosts, run_social_study

STUDY = """
name = "social_test"
seed = 11
[world]
dataset = "synthetic"
synthetic_users = 300
synthetic_items = 200
embedding_dim = 8
[population]
size = {size}
[simulation]
sessions = 2
turns = 3
slate_size = 5
replicates = {replicates}
[recommender]
kind = "mf"
candidates = 30
[creator]
id = "c"
[[creator.items]]
title = "Lantern Song"
tags = ["t0"]
[[arms]]
name = "control"
[[arms]]
name = "hubs"
treatment = "inject"
rate = 1.0
[social]
enabled = true
days = {days}
graph = "{graph}"
mean_degree = 6
[[social.seeding]]
arm = "hubs"
strategy = "most_connected"
share = 0.05
[search]
enabled = true
"""


def study(size: int = 2100, replicates: int = 2, days: int = 8, graph: str = "generated"):
    return decode_study(
        STUDY.format(size=size, replicates=replicates, days=days, graph=graph), source="test"
    )


TABLES = ("events", "sessions", "user_metrics", "social", "searches", "diffusion")


def tables(path: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for t in TABLES:
        df = pl.scan_parquet(str(path / t / "arm=*" / "*.parquet"), hive_partitioning=True)
        df = df.collect()
        df = df.with_columns(
            [pl.col(c).cast(pl.String) for c, dt in df.schema.items() if dt == pl.Categorical]
        )
        out[t] = df.sort(df.columns)
    for name in ("summary", "diffusion_summary", "cascades"):
        out[name] = pl.from_arrow(read_table(path / f"{name}.parquet", name))
    return out


@pytest.fixture(scope="module")
def world():
    return load_world_for(study().world, 11)


@pytest.fixture(scope="module")
def one_host(world, tmp_path_factory: pytest.TempPathFactory):
    run = run_social_study(study(), world, run_id="one", out_dir=tmp_path_factory.mktemp("s"))
    return run, tables(run.path)


# --- the graph -----------------------------------------------------------------------------


def friends_frame(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(pairs, schema=["user_id", "friend_id"], orient="row")


KNOWN = pl.Series(["a", "b", "c", "d", "e"])
WHERE = ("data/user_friends.dat", 2)


@pytest.mark.parametrize(
    ("pairs", "problem", "line"),
    [
        ([("a", "b"), ("a", "zz")], "'a' -> 'zz' names a user the world does not know", 3),
        ([("a", "b"), ("c", "c")], "'c' -> 'c' links a user to itself", 3),
        ([("a", "b"), ("b", "c"), ("a", "b")], "'a' -> 'b' repeats an earlier link", 4),
    ],
)
def test_a_bad_link_is_an_error_naming_the_file_and_line(pairs, problem, line) -> None:
    with pytest.raises(DataError) as e:
        graph_from_friends(
            friends_frame(pairs),
            KNOWN,
            np.array(list("abcde"), object),
            on_bad="error",
            where=WHERE,
        )
    assert str(e.value).startswith(f"data/user_friends.dat, line {line}: the link {problem}")


def test_bad_links_are_dropped_and_counted_and_both_directions_are_one_friendship() -> None:
    pairs = [("a", "b"), ("b", "a"), ("a", "zz"), ("c", "c"), ("a", "b"), ("d", "x9"), ("b", "e")]
    graph, stats = graph_from_friends(
        friends_frame(pairs), KNOWN, np.array(list("abcd"), object), on_bad="clean", where=WHERE
    )
    assert (stats.unknown_users, stats.self_links, stats.duplicates) == (2, 1, 1)
    assert (stats.reciprocal, stats.outside_population, stats.friendships) == (1, 1, 1)
    assert graph.of(0).tolist() == [1] and graph.of(1).tolist() == [0]
    assert stats.isolated == 2  # c and d: no friend among the simulated users; they hear nothing


def test_a_population_of_resampled_users_cannot_take_the_data_graph() -> None:
    with pytest.raises(ConfigError, match='1 repeat a real user .* graph = "generated"'):
        graph_from_friends(
            friends_frame([("a", "b")]), KNOWN, np.array(["a", "b", "a"], object),
            on_bad="clean", where=WHERE,
        )  # fmt: skip


@pytest.mark.parametrize("degree", ["poisson", "powerlaw", "lognormal"])
def test_a_generated_graph_has_the_mean_degree_and_prefers_similar_users(degree: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    home = rng.integers(0, 4, 3000)
    pref = centres[home] + 0.3 * rng.normal(size=(3000, 8))
    pref /= np.linalg.norm(pref, axis=1, keepdims=True)
    cfg = SocialConfig(mean_degree=8.0, degree=degree, homophily=6.0)
    graph, stats = generate_graph(pref, cfg, seed=1)
    assert 5.0 < stats.mean_degree < 10.0
    src = np.repeat(np.arange(graph.n), graph.degree())
    same = (home[src] == home[graph.friends]).mean()
    assert same > 0.5  # a quarter by chance
    again, _ = generate_graph(pref, cfg, seed=1)
    assert np.array_equal(again.friends, graph.friends)


def test_communities_cut_fewer_friendships_than_the_population_order() -> None:
    # two cliques interleaved in the population order
    a, b = np.arange(0, 200, 2), np.arange(1, 200, 2)
    pairs = [(x, y) for grp in (a, b) for x in grp for y in grp if x < y]
    graph = from_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), 200)
    label = label_propagation(graph)
    assert len(np.unique(label)) == 2
    halves = np.repeat([0, 1], 100)
    assert cross_edges(graph.permute(community_order(graph)), halves) == 0
    assert cross_edges(graph, halves) > 0


# --- awareness, talk, search ---------------------------------------------------------------


def test_awareness_adds_caps_fades_and_forgets_and_keeps_the_first_teller() -> None:
    aw = Awareness(2, memory=2, fade_days=5.0)
    aw.hear(
        np.array([0, 0, 0]),
        np.array([7, 7, 9]),
        np.full(3, 0.5, np.float32),
        np.array([3, 4, 3]),
        0,
    )
    assert aw.of(np.array([0]), np.array([[7, 9, 1]]), 0).tolist() == [[1.0, 0.5, 0.0]]
    assert aw.of(np.array([0]), np.array([[7]]), 5)[0, 0] == pytest.approx(np.exp(-1.0), rel=1e-5)
    assert aw.heard_from(np.array([0]), np.array([7])).tolist() == [3]
    # a third item replaces the weakest when stronger; a weaker one is not kept
    aw.hear(np.array([0]), np.array([11]), np.array([0.9], np.float32), np.array([5]), 0)
    assert sorted(aw.item[0].tolist()) == [7, 11]
    aw.hear(np.array([0]), np.array([12]), np.array([0.1], np.float32), np.array([5]), 0)
    assert sorted(aw.item[0].tolist()) == [7, 11]
    aw.forget(np.array([0]), np.array([7]))
    assert aw.strongest(np.array([0, 1]), 0)[0].tolist() == [11, -1]


def test_the_round_choice_is_keyed_by_user_and_round_and_respects_what_is_available() -> None:
    cfg = SocialConfig()
    uid = np.arange(2000)
    kw = dict(
        can_visit=np.ones(2000, bool), aware=np.zeros(2000), can_talk=np.zeros(2000, bool),
        has_fresh=np.zeros(2000, bool),
    )  # fmt: skip
    c = round_choice(cfg, 0, uid, 3, **kw)
    assert set(c.tolist()) == {0, 1}  # no friends: never the social network
    assert np.array_equal(c[::-1], round_choice(cfg, 0, uid[::-1], 3, **kw))
    aware = round_choice(cfg, 0, uid, 3, **{**kw, "aware": np.ones(2000)})
    assert (aware == 1).mean() > (c == 1).mean()


def test_a_post_reaches_every_friend_and_a_chat_one_and_order_is_canonical() -> None:
    graph = from_pairs(np.array([0, 0, 0]), np.array([1, 2, 3]), 4)
    talk = Conversations(
        rows=np.array([0, 1]), kind=np.array([POST, CHAT], np.int8), receiver=np.array([-1, 0]),
        audience=np.array([3, 1]), items=np.array([[5, 6], [7, -1]]), texts=["a", "b"],
    )  # fmt: skip
    recv, send, item, kind = deliveries(graph, talk, np.array([0, 1]))
    got = sorted(zip(recv.tolist(), send.tolist(), item.tolist(), kind.tolist()))
    assert got == sorted(
        [(1, 0, 5, 0), (2, 0, 5, 0), (3, 0, 5, 0), (1, 0, 6, 0), (2, 0, 6, 0), (3, 0, 6, 0)]
        + [(0, 1, 7, 1)]
    )
    order = canonical(recv, send, item, kind)
    assert recv[order].tolist() == sorted(recv.tolist())


@pytest.mark.parametrize("engine", ["bm25", "embedding"])
def test_search_finds_a_title_and_a_query_that_matches_nothing_gets_an_empty_page(
    world, engine: str
) -> None:
    from recoworld.items.catalog import build_catalog

    cat = build_catalog(world, dim=8, seed=0)
    search = ItemSearch(cat, engine)
    title = str(cat.titles[17])
    res = search.search([title, "qqqzzz nothing like it", ""], 5)
    assert res.counts()[1:].tolist() == [0, 0]
    assert res.items[1].size == 0 and res.items[1].dtype == np.int64
    if engine == "bm25":
        assert 17 in res.items[0].tolist()
    # answers do not depend on the batch they were asked in
    alone = ItemSearch(cat, engine).search([title], 5)
    assert np.array_equal(alone.items[0], res.items[0])
    text, kinds = queries(
        cat, target=np.array([17, -1]), by_title=np.array([True, False]),
        taste=np.zeros((2, len(cat.tags)), np.float32), last_watched=np.array([-1, 17]),
    )  # fmt: skip
    assert text[0] == title and kinds.tolist() == [0, 2]


# --- diffusion -----------------------------------------------------------------------------


def test_cascades_follow_parents_to_their_roots() -> None:
    rows = [  # user, parent, adopted: 1 <- 2 <- 3, 1 <- 4; 5 alone; 6 heard, never watched
        (1, None, 0), (2, 1, 1), (3, 2, 3), (4, 1, 2), (5, None, 4), (6, None, None),
    ]  # fmt: skip
    d = pl.DataFrame(
        [("x", 0, "i", u, p, a) for u, p, a in rows],
        schema=["arm", "replicate", "item_id", "user", "parent", "adopted_round"],
        orient="row",
    )
    c = cascades(d)
    assert c.select("root", "size", "depth", "first_round", "last_round").rows() == [
        (1, 4, 2, 0, 3),
        (5, 1, 0, 4, 4),
    ]


def test_co_consumption_counts_items_a_friend_also_consumed() -> None:
    graph = from_pairs(np.array([0]), np.array([1]), 3)
    users = np.array([0, 0, 1, 2, 2])
    items = np.array([5, 6, 5, 5, 6])
    share = co_consumption(graph, users, items, n_items=10)
    assert share.share == pytest.approx((1 / 2 + 1 / 1) / 2)  # user 2 has no friend
    assert share.users == 2


# --- a social study ------------------------------------------------------------------------


def test_a_social_study_writes_its_tables_summary_and_figures(one_host) -> None:
    run, t = one_host
    assert t["social"].height > 0 and t["searches"].height > 0 and t["diffusion"].height > 0
    assert set(t["social"]["kind"].unique()) == {"post", "chat"}
    posts = t["social"].filter(pl.col("kind") == "post")
    assert posts["receiver"].null_count() == posts.height
    d = t["diffusion_summary"].filter(pl.col("segment") == "all")
    assert set(USER_METRICS) <= set(d["metric"])
    hubs = d.filter((pl.col("arm") == "hubs") & (pl.col("metric") == "reach_recommender"))
    assert hubs["mean"][0] > 0 and hubs["ci_low"][0] is not None and hubs["replicates"][0] == 2
    figures = msgspec.json.decode((run.path / "social.json").read_bytes())
    assert figures["rounds"]["rounds"] == 8 * 2  # one host: the 2 replicates one after the other
    assert figures["rounds"]["waves"] == 2 and figures["choices"]["recommender"] > 0
    assert len(figures["graphs"]) == 2
    assert (run.path / "manifest.json").is_file()


def test_a_search_that_found_nothing_leaves_the_recommenders_page(one_host) -> None:
    _, t = one_host
    s = t["searches"]
    assert (s["results"] == s["shown"].list.len()).all() or (s["results"] >= 0).all()
    empty = s.filter(pl.col("results") == 0)
    assert (empty["shown"].list.len() == 0).all()


@pytest.mark.parametrize(
    "how", [dict(workers=2), dict(workers=4, open_hosts=LocalHosts)], ids=["2-forked", "4-local"]
)
def test_the_same_events_with_any_number_of_hosts(world, one_host, tmp_path: Path, how) -> None:
    _, base = one_host
    run = run_social_study(study(), world, run_id="many", out_dir=tmp_path, **how)
    got = tables(run.path)
    for name in base:
        assert got[name].equals(base[name]), name
    figures = msgspec.json.decode((run.path / "social.json").read_bytes())
    rounds = figures["rounds"]
    assert rounds["hosts"] == how["workers"]
    # 2 hosts: one replicate each (replicates never talk); 4: each replicate split in two
    assert (rounds["cross_host"] > 0) == (how["workers"] == 4)


def test_a_world_friends_table_gives_the_graph_and_a_friendless_user_hears_nothing(
    world, tmp_path: Path
) -> None:
    ids = world.users["user_id"].to_list()
    pairs = [(ids[i], ids[i + 1]) for i in range(0, 250, 2)]  # pairs; users 250.. alone
    pairs += [(ids[0], ids[0]), (ids[1], "nobody")]  # cleaned and counted
    w = replace(world, friends=friends_frame(pairs))
    cfg = study(size=0, replicates=1, days=6, graph="data")
    run = run_social_study(cfg, w, run_id="data", out_dir=tmp_path)
    figures = msgspec.json.decode((run.path / "social.json").read_bytes())
    g = figures["graphs"][0]
    assert (g["friendships"], g["self_links"], g["unknown_users"]) == (125, 1, 1)
    users = pl.from_arrow(read_table(run.path / "users.parquet", "users"))
    alone = users.filter(pl.col("source_user").is_in(ids[250:]))["user"]
    d = tables(run.path)["diffusion"]
    heard = d.filter(pl.col("user").is_in(alone.to_list()) & pl.col("heard_round").is_not_null())
    assert heard.height == 0 and alone.len() > 0


class DiesInReplicate1(LocalHosts):
    """Hosts that die on day 3 of replicate 1 (after replicate 0 finished)."""

    def step(self, day, inboxes):  # noqa: ANN001, ANN201
        if day == 3 and self.hosts[0].shards[0].spec.replicate == 1:
            raise RuntimeError("killed on day 3 of replicate 1")
        return super().step(day, inboxes)


class Counts(LocalHosts):
    replicates: list[int] = []

    def finish(self):  # noqa: ANN201
        Counts.replicates += [s.spec.replicate for h in self.hosts for s in h.shards]
        return super().finish()


def test_an_interrupted_social_run_resumes_from_its_finished_replicates(
    world, one_host, tmp_path: Path
) -> None:
    _, base = one_host
    with pytest.raises(RuntimeError, match="killed on day 3"):
        run_social_study(study(), world, run_id="r", out_dir=tmp_path, open_hosts=DiesInReplicate1)
    assert not (tmp_path / "r").exists()  # the run stays partial
    run = run_social_study(
        study(), world, run_id="r", out_dir=tmp_path, resume=True, open_hosts=Counts
    )
    assert Counts.replicates == [1]  # replicate 0 was not run again
    got = tables(run.path)
    for name in base:
        assert got[name].equals(base[name]), name
    rounds = msgspec.json.decode((run.path / "social.json").read_bytes())["rounds"]
    assert rounds["resumed_shards"] == 1 and rounds["waves"] == 1 and rounds["rounds"] == 8


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[search]\nenabled = true", "`$.search.enabled`"),
        ("[social]\nenabled = true\ndays = 0", "`$.social.days`"),
        ("[social]\npull = 1.5", "`$.social.pull`"),
        (
            '[social]\nenabled = true\n[[social.seeding]]\narm = "nope"',
            "the name of a treatment arm",
        ),
    ],
)
def test_social_config_errors_name_the_field(toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace(".", r"\.")):
        decode_study(f'name = "x"\n{toml}\n', source="s.toml")


def test_the_report_shows_diffusion_and_the_viewer_posts_and_chats_sent_and_read_and_searches(
    one_host, tmp_path: Path
) -> None:
    from recoworld.report.build import write_report
    from recoworld.report.viewer import RunView

    run, t = one_host
    page = write_report(run.path, tmp_path / "report.html").path.read_text()
    assert "Social diffusion" in page and "Reach over days, by channel" in page
    assert "Friend co-consumption" in page
    view = RunView(run.path, titles=False)
    chats = t["social"].filter((pl.col("kind") == "chat") & (pl.col("arm") == "control"))
    sender, receiver = chats["user"][0], chats["receiver"][0]
    mine = view.user("control", sender).social
    assert any(s.kind == "chat" and s.other == receiver for s in mine)
    theirs = view.user("control", receiver).social
    assert any(s.kind == "chat received" and s.other == sender for s in theirs)
    # a post is read by every friend of its sender (social_friends.parquet: each friendship)
    friends = pl.from_arrow(read_table(run.path / "social_friends.parquet", "social_friends"))
    graphs = msgspec.json.decode((run.path / "social.json").read_bytes())["graphs"]
    assert friends.height == sum(g["friendships"] for g in graphs)
    assert (friends["user"] < friends["friend"]).all()
    post = (
        t["social"]
        .filter((pl.col("kind") == "post") & (pl.col("arm") == "control"))
        .row(0, named=True)
    )
    sender = post["user"]
    of = friends.filter((pl.col("user") == sender) | (pl.col("friend") == sender))
    readers = (set(of["user"]) | set(of["friend"])) - {sender}
    assert len(readers) == post["audience"]
    reader = min(readers)
    got = [s for s in view.user("control", reader).social if s.kind == "post received"]
    assert any(s.other == sender and s.round == post["round"] for s in got)
    assert not any(
        s.kind == "post received" for s in view.user("control", sender).social if s.other == sender
    )
    searcher = t["searches"].filter(pl.col("arm") == "control")["user"][0]
    assert any(s.kind == "search" for s in view.user("control", searcher).social)


def test_the_partition_moves_users_between_shards_not_what_they_do(
    world, one_host, tmp_path: Path
) -> None:
    _, base = one_host
    cfg = study()
    cfg = msgspec.structs.replace(
        cfg, social=msgspec.structs.replace(cfg.social, partition="contiguous")
    )
    got = tables(run_social_study(cfg, world, run_id="contig", out_dir=tmp_path).path)
    for name in (*TABLES, "cascades"):  # the summaries' blocks hold other users: last bits
        assert got[name].equals(base[name]), name


def test_recoworld_run_dispatches_a_social_study_to_the_rounds(tmp_path: Path) -> None:
    """`recoworld run` on a study with [social] runs the rounds: the social tables are written,
    and 2 forked workers give the same events."""
    from recoworld.cli import main

    study = tmp_path / "soc.toml"
    study.write_text(
        'name = "soc"\nseed = 1\n[world]\ndataset = "synthetic"\nsynthetic_users = 200\n'
        "synthetic_items = 150\n[population]\nsize = 200\n[simulation]\nsessions = 2\n"
        'turns = 2\nslate_size = 5\n[social]\nenabled = true\ndays = 4\ngraph = "generated"\n'
        '[[arms]]\nname = "control"\n'
    )
    out = tmp_path / "runs"
    for run_id, extra in (("one", []), ("two", ["--workers", "2"])):
        assert main(["run", str(study), "--out", str(out), "--run-id", run_id, *extra]) == 0
    assert (out / "one" / "social").is_dir() and (out / "one" / "searches").is_dir()
    ev = [
        pl.read_parquet(out / r / "events" / "**" / "*.parquet").sort(
            "user", "session", "turn", "position"
        )
        for r in ("one", "two")
    ]
    assert ev[0].height > 0 and ev[0].equals(ev[1])

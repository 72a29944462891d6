"""Trained policies as recommenders and `recoworld eval policy`: the scorer's checkpoint, the one
view shared by the environment and the recommender, held-out users, and the metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest

from recoworld.cli import main
from recoworld.config import (
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.env import RetentionEnv
from recoworld.env.scorer import FEATURES, CandidateScorer, ScorerError, candidate_features
from recoworld.errors import ConfigError
from recoworld.eval.policy import (
    POLICY_METRICS,
    Bench,
    _Tally,
    build_bench,
    checkpoint_recommender,
    evaluate,
    recommender_of,
)
from recoworld.records import Instructions, SlateFeedback, TurnRecord
from recoworld.study.simulate import simulate_arm
from recoworld.world.synthetic import synthetic_world

K, N = 5, 30


@pytest.fixture(scope="module")
def bench() -> Bench:
    cfg = StudyConfig(
        name="env-policy",
        seed=4,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=300),
        simulation=SimulationConfig(sessions=3, turns=3, slate_size=K),
    )
    return build_bench(cfg, synthetic_world(150, 300, seed=6))


def scorer(seed: int = 0, **settings) -> CandidateScorer:  # noqa: ANN003
    rng = np.random.default_rng(seed)
    f, h = len(FEATURES), 6
    arrays = {
        "w1": rng.normal(size=(f, h)),
        "b1": rng.normal(size=h),
        "w2": rng.normal(size=(h, h)),
        "b2": rng.normal(size=h),
        "w3": rng.normal(size=(h, 1)),
        "b3": rng.normal(size=1),
        "prior": np.array([0.5]),
    }
    return CandidateScorer(arrays, {"candidates": N, "base": "mf", "slate_size": K, **settings})


def test_held_out_users_are_never_training_users(bench: Bench) -> None:
    t = bench.prep.population.template
    train, test = set(t[bench.train_users].tolist()), set(t[bench.test_users].tolist())
    assert train and test and not train & test
    assert bench.train_users.size + bench.test_users.size == len(bench.prep.population)
    env = RetentionEnv(bench.prep, users=bench.train_uids)
    drawn = {env.reset(seed=s)[1]["user"] for s in range(50)}
    assert drawn <= set(bench.train_uids.tolist())
    # the held-out items are not in the training world: every recommender may show them
    hist = bench.prep.population.history_of(bench.prep.catalog.n_items)
    rows, cols = hist.nonzero()
    codes = t[rows].astype(np.int64) * bench.prep.catalog.n_items + cols
    assert not np.isin(codes, bench.held_codes).any()


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    s = scorer(1, note="x")
    s.save(tmp_path / "p.npz")
    back = CandidateScorer.load(tmp_path / "p.npz")
    assert back.settings == s.settings
    f = np.random.default_rng(0).normal(size=(3, N, len(FEATURES))).astype(np.float32)
    np.testing.assert_allclose(back.scores(f), s.scores(f), rtol=1e-6)
    np.savez(tmp_path / "bad.npz", w1=np.zeros(2))
    with pytest.raises(ScorerError, match=r"Expected a candidate scorer checkpoint .* - at .*bad"):
        CandidateScorer.load(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "old.npz",
        **s.a,
        features=np.array(["score_z"]),
        settings=np.array(json.dumps(s.settings)),
    )
    with pytest.raises(ScorerError, match=r"got \['score_z'\]"):
        CandidateScorer.load(tmp_path / "old.npz")


def test_candidate_features_follow_the_observation(bench: Bench) -> None:
    env = RetentionEnv(bench.prep, candidates=N)
    obs, _ = env.reset(seed=2)
    batch = {k: np.asarray(v)[None] for k, v in obs.items() if k != "instruction"}
    f = candidate_features(batch)[0]
    assert f.shape == (N, len(FEATURES))
    col = {name: f[:, j] for j, name in enumerate(FEATURES)}
    s = obs["cand_score"]
    np.testing.assert_allclose(col["score_z"], (s - s.mean()) / s.std(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(col["popularity"], obs["cand_popularity"])
    t = obs["cand_tags"] / np.maximum(obs["cand_tags"].max(1, keepdims=True), 1e-9)
    np.testing.assert_allclose(col["taste_match"], t @ obs["user_taste"], rtol=1e-5)
    assert not col["shown"].any() and not col["clicked"].any()
    np.testing.assert_array_equal(col["activity"], obs["user_traits"][0])


def test_the_recommender_sees_what_the_env_showed_the_scorer(bench: Bench, tmp_path: Path) -> None:
    """A scorer acting in the env (key = uid, the study's seed) and the same scorer as a
    plug-in in the study's loop produce the same lives: one view, two seats."""
    sc = scorer(3)
    sc.save(tmp_path / "p.npz")
    prep = bench.prep
    cfg = msgspec.structs.replace(prep.cfg, recommender=checkpoint_recommender(tmp_path / "p.npz"))
    users = bench.test_users[:25]
    records: list = []
    simulate_arm(replace(prep, cfg=cfg), 0, users, records.append)
    env = RetentionEnv(prep, candidates=N)
    for j, row in enumerate(users.tolist()):
        uid = int(prep.population.uid[row])
        obs, _ = env.reset(options={"user": uid, "key": uid})
        mine = [r for r in records if isinstance(r, TurnRecord) and j in r.rows]
        for rec in mine:
            at = int(np.flatnonzero(rec.rows == j)[0])
            batch = {k: np.asarray(v)[None] for k, v in obs.items() if k != "instruction"}
            picks = sc.pick(batch, K)[0]
            np.testing.assert_array_equal(obs["candidates"][picks], rec.slates[at])
            obs, _, te, tr, info = env.step(picks)
            assert info["actions"] == [
                ("skip", "click", "watch", "rate")[a] for a in rec.feedback.action[at]
            ]
        assert te or tr


def test_tally_ndcg_diversity_and_instruction_following(bench: Bench) -> None:
    prep = bench.prep
    n_items, k = prep.catalog.n_items, K
    users = bench.test_users[:2]
    tally = _Tally(bench, users, k)
    tmpl = prep.population.template[users]
    held = [bench.held_codes[bench.held_codes // n_items == t] % n_items for t in tmpl]
    assert held[0].size and held[1].size
    hit = int(held[0][0])
    miss = [i for i in range(n_items) if i not in set(held[0].tolist()) | set(held[1].tolist())]
    # user 0: a held-out item at position 1; user 1: none
    slates = np.array([[miss[0], hit, *miss[1:4]], miss[4:9]])
    z = np.zeros((2, k))
    fb = SlateFeedback(action=z.astype(np.int8), watch=z, rating=z, mind=np.zeros((4, 2, k)))
    tags = prep.catalog.tag_matrix > 0
    more = int(np.flatnonzero(tags[miss[9]])[0])
    ins = Instructions(rows=np.array([0]), more_of=np.array([more]), less_of=np.array([-1]))

    def turn(t: int, sl: np.ndarray, instructions: Instructions) -> TurnRecord:
        return TurnRecord(
            arm=0,
            rows=np.arange(2),
            session=0,
            turn=t,
            day=np.zeros(2),
            slates=sl,
            feedback=fb,
            left=np.zeros(2, bool),
            instructions=instructions,
        )

    tally(turn(0, slates, ins))
    nxt = np.array([[miss[9], *miss[10:14]], miss[14:19]])  # user 0 gets what it asked for
    tally(turn(1, nxt, Instructions.none()))
    v = tally.values()
    ideal = sum(1 / np.log2(i + 2) for i in range(min(k, held[0].size)))
    assert v["ndcg"][0] == pytest.approx((1 / np.log2(3)) / ideal)
    assert v["ndcg"][1] == 0.0
    assert v["instruction_following"][0] == 1.0 and np.isnan(v["instruction_following"][1])
    emb = prep.catalog.emb[slates[1]]
    sim = emb @ emb.T
    first = 1 - (sim.sum() - np.trace(sim)) / (k * (k - 1))
    emb2 = prep.catalog.emb[nxt[1]]
    sim2 = emb2 @ emb2.T
    second = 1 - (sim2.sum() - np.trace(sim2)) / (k * (k - 1))
    assert v["diversity"][1] == pytest.approx((first + second) / 2, rel=1e-5)


def test_evaluate_pools_seeds_and_ranks_sensible_recommenders(bench: Bench, tmp_path: Path) -> None:
    sc = scorer(5)
    paths = []
    for s in (0, 1):
        sc.save(tmp_path / f"p{s}.npz")
        paths.append(checkpoint_recommender(tmp_path / f"p{s}.npz"))
    result = evaluate(
        bench,
        {"mf": RecommenderConfig(kind="mf"), "random": RecommenderConfig(kind="random"),
         "policy": paths},
        [0, 1],
    )  # fmt: skip
    for name in ("mf", "random", "policy"):
        for m in POLICY_METRICS:
            e = result.get(name, m)
            assert len(e.per_seed) == 2 and e.lo <= e.mean <= e.hi, (name, m)
            assert e.mean == pytest.approx(np.mean(e.per_seed))
    better = ("engagement", "ndcg", "ctr")
    assert all(result.get("mf", m).mean > result.get("random", m).mean for m in better)
    table = result.table().splitlines()
    assert table[0].split() == ["metric", "mf", "random", "policy"]
    assert [line.split()[0] for line in table[1:]] == list(POLICY_METRICS)
    with pytest.raises(ConfigError, match="expected one config per seed"):
        evaluate(bench, {"policy": paths}, [0, 1, 2])


def test_recommender_specs() -> None:
    assert recommender_of("mf") == RecommenderConfig(kind="mf")
    assert recommender_of("popular-plain") == RecommenderConfig(
        kind="popular", follow_instructions=False
    )
    assert recommender_of("python:pkg.mod:Rec").target == "pkg.mod:Rec"
    assert recommender_of("checkpoint:/x/p.npz").options == {"checkpoint": "/x/p.npz"}
    assert recommender_of("checkpoint+follow:/x/p.npz").options == {
        "checkpoint": "/x/p.npz",
        "follow_instructions": True,
    }
    with pytest.raises(ConfigError) as e:
        recommender_of("knn")
    assert str(e.value) == (
        "--recommender: expected mf, popular, random (optionally -plain), python:module:Factory, "
        "checkpoint:PATH or checkpoint+follow:PATH, got 'knn'"
    )


def test_cli_eval_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval", "policy", "--dataset", "synthetic", "--recommender", "mf",
            "--recommender", "popular", "--seeds", "2", "--users", "400", "--sessions", "2",
            "--turns", "2", "--slate-size", "4", "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out users, 2 seeds" in out
    assert out.count("retention") == 1 and "[" in out
    saved = json.loads((tmp_path / "policy.json").read_text())
    assert {e["recommender"] for e in saved["estimates"]} == {"mf", "popular"}
    assert main(["eval", "policy", "--dataset", "synthetic", "--recommender", "nope"]) == 2

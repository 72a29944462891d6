"""The retention environment: registration, Gymnasium's contract, the study's lives replayed,
rewards, the candidate-set mode, and its errors."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from recoworld.config import PopulationConfig, SimulationConfig, StudyConfig, WorldConfig
from recoworld.env import ENVS, EnvError, RetentionEnv
from recoworld.env.registration import make_retention
from recoworld.records import ACTIONS, SessionRecord, TurnRecord
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.simulate import simulate_arm
from recoworld.world.synthetic import synthetic_world

N_ITEMS = 400


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = StudyConfig(
        name="env-retention",
        seed=5,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=40),
        simulation=SimulationConfig(sessions=4, turns=3, slate_size=5),
    )
    return prepare(cfg, synthetic_world(150, N_ITEMS, seed=4))


def play(env: gym.Env, pick, *, seed: int | None = None, options: dict | None = None) -> list:  # noqa: ANN001
    """Reset, then step with ``pick(obs, step)`` until the episode ends."""
    obs, info = env.reset(seed=seed, options=options)
    out, n, done = [(obs, info)], 0, False
    while not done:
        step = env.step(pick(obs, n))
        out.append(step)
        obs, done, n = step[0], step[2] or step[3], n + 1
    return out


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_every_registered_id_makes_an_env_that_passes_check_env(
    prep: Prepared, env_id: str
) -> None:
    env = gym.make(env_id, prep=prep)
    assert env.spec is not None and env.spec.id == env_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails
        check_env(env.unwrapped, skip_render_check=True)
        env.reset(seed=0)
        env.step(env.action_space.sample())


def test_make_without_a_world_uses_a_small_synthetic_study() -> None:
    env = gym.make("RecoWorld/Retention-v0", sessions=2)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["user"] >= 0
    assert env.unwrapped.settings.sessions == 2


@pytest.mark.parametrize("candidates", [0, 30])
def test_a_life_replays_the_study_user_event_for_event(prep: Prepared, candidates: int) -> None:
    """With key = uid and the study's seed, the env's life is the study's run of that user,
    session after session (the calendar, carried satisfaction and satiation included)."""
    records: list[TurnRecord | SessionRecord] = []
    simulate_arm(prep, 0, np.arange(len(prep.population)), records.append)
    env = RetentionEnv(prep, candidates=candidates)
    lives = 0
    for row, uid in enumerate(prep.population.uid.tolist()):
        turns = [
            (r, int(np.flatnonzero(r.rows == row)[0]))
            for r in records
            if isinstance(r, TurnRecord) and row in r.rows
        ]
        sessions = [
            (r, int(np.flatnonzero(r.rows == row)[0]))
            for r in records
            if isinstance(r, SessionRecord) and row in r.rows
        ]
        obs, _ = env.reset(options={"user": uid, "key": uid})
        for rec, j in turns:
            slate = rec.slates[j]
            if candidates:  # the study's slate, named by candidate position where it can be
                pool = obs["candidates"].tolist()
                if not set(slate.tolist()) <= set(pool):
                    break  # the study's recommender went beyond this env's pool
                action = np.array([pool.index(i) for i in slate.tolist()])
            else:
                action = slate
            obs, _, te, tr, info = env.step(action)
            assert (info["session"], info["turn"]) == (rec.session, rec.turn)
            assert info["actions"] == [ACTIONS[a] for a in rec.feedback.action[j]], (uid, rec.turn)
            assert info["left"] == bool(rec.left[j])
            if not info["session_end"]:  # the study's calendar: the day the session started
                assert obs["day"][0] == pytest.approx(float(rec.day[j]))
                np.testing.assert_array_equal(obs["watch"], rec.feedback.watch[j])
            if info["session_end"]:
                srec, s = sessions[rec.session]
                assert info["returned"] == bool(srec.returned[s])
                assert info["gap_days"] == float(srec.gap_days[s])
                assert info["satisfaction"] == float(srec.satisfaction_end[s])
        else:
            assert te or tr  # the life ended where the study's did
            assert te == (not sessions[-1][0].returned[sessions[-1][1]])
            lives += 1
    assert lives >= len(prep.population) // 2


def test_rewards_engagement_retention_and_both(prep: Prepared) -> None:
    totals = {}
    for reward in ("engagement", "retention", "both"):
        env = RetentionEnv(prep, reward=reward, retention_weight=3.0)
        env.action_space.seed(0)
        steps = play(env, lambda obs, n: env.action_space.sample(), seed=11)[1:]  # noqa: B023
        for _, r, _, _, info in steps:
            engagement = info["engagement"]
            retention = 3.0 * info["p_return"] if info["session_end"] else 0.0
            expected = {"engagement": engagement, "retention": retention}.get(
                reward, engagement + retention
            )
            assert r == pytest.approx(expected, abs=1e-9)
        totals[reward] = sum(s[1] for s in steps)
    assert totals["both"] == pytest.approx(totals["engagement"] + totals["retention"])


def test_the_life_ends_when_the_user_does_not_return_or_the_budget_is_spent(
    prep: Prepared,
) -> None:
    env = RetentionEnv(prep)
    ends = {"terminated": 0, "truncated": 0}
    for seed in range(30):
        env.action_space.seed(seed)
        steps = play(env, lambda obs, n: env.action_space.sample(), seed=seed)[1:]
        session_ends = [s[4] for s in steps if s[4]["session_end"]]
        last = steps[-1]
        assert not (last[2] and last[3])
        assert all(not (s[2] or s[3]) for s in steps[:-1])
        assert all(info["returned"] for info in session_ends[:-1])  # it came back every time
        if last[2]:
            assert not last[4]["returned"]
            ends["terminated"] += 1
        else:
            assert last[4]["returned"] and len(session_ends) == 4
            ends["truncated"] += 1
        days = [float(s[0]["day"][0]) for s in steps]
        assert days == sorted(days)  # the calendar only moves forward
        with pytest.raises(ResetNeeded, match="has ended"):
            env.step(env.action_space.sample())
    assert ends["terminated"] and ends["truncated"]
    # a horizon of 0 days ends every life after its first session, truncated if it returns
    short = RetentionEnv(prep, horizon_days=0.0)
    for seed in range(10):
        steps = play(short, lambda obs, n: short.action_space.sample(), seed=seed)[1:]
        assert all(s[4]["session"] == 0 for s in steps)
        assert steps[-1][3] == steps[-1][4]["returned"]


def test_candidate_mode_observes_the_base_pool_and_picks_from_it(prep: Prepared) -> None:
    env = RetentionEnv(prep, candidates=25, base="popular")
    assert env.action_space.nvec.tolist() == [25] * 5
    obs, _ = env.reset(seed=3)
    cat = prep.catalog
    pool = obs["candidates"]
    assert pool.shape == (25,) and len(set(pool.tolist())) == 25
    # popular: the most popular items the user has not had, best first
    np.testing.assert_array_equal(obs["cand_score"], cat.popularity[pool])
    assert (np.diff(obs["cand_score"]) <= 0).all()
    np.testing.assert_array_equal(obs["cand_tags"], cat.tag_matrix[pool])
    np.testing.assert_array_equal(obs["cand_embedding"], cat.emb[pool])
    np.testing.assert_array_equal(obs["cand_popularity"], cat.pop_percentile[pool])
    assert not obs["cand_shown"].any() and not obs["cand_clicked"].any()
    for seed in range(3, 30):  # a user who stays after the first slate
        obs, _ = env.reset(seed=seed)
        pool = obs["candidates"]
        obs2, _, _, _, info = env.step(np.array([4, 3, 2, 1, 0]))
        if not info["session_end"]:
            break
    np.testing.assert_array_equal(obs2["candidates"], pool)  # the session keeps its pool
    assert obs2["cand_shown"].tolist() == [1] * 5 + [0] * 20
    clicked = [j for j, a in zip([4, 3, 2, 1, 0], info["actions"]) if a != "skip"]
    assert sorted(np.flatnonzero(obs2["cand_clicked"]).tolist()) == sorted(clicked)
    assert obs2["clicked"].tolist() == [int(a != "skip") for a in info["actions"]]


def test_a_new_session_gets_a_fresh_pool_without_anything_shown_before(prep: Prepared) -> None:
    env = RetentionEnv(prep, candidates=20)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        shown: set[int] = set()
        done = False
        while not done:
            obs, _, te, tr, info = env.step(np.arange(5))
            shown |= set(env._last[0].tolist())  # type: ignore[index]
            done = te or tr
            if info["session_end"] and not done:
                assert not shown & set(obs["candidates"].tolist())
                assert not obs["cand_shown"].any() and obs["turn"][0] == 0
                return
    pytest.fail("no life reached a second session")


def test_instruction_words_and_codes_are_observed(prep: Prepared) -> None:
    env = RetentionEnv(prep)
    seen = 0
    for seed in range(40):
        steps = play(env, lambda obs, n: np.full(5, 7), seed=seed)[1:]  # one item, again
        for obs, _, _, _, info in steps:
            if info["instruction"]:
                seen += 1
                assert obs["instruction"] == info["instruction"]
                more = int(np.flatnonzero(obs["instruction_more"])[0])
                assert f"more {prep.catalog.tags[more]}" in obs["instruction"]
            else:
                assert obs["instruction"] == "" and not obs["instruction_more"].any()
    assert seen
    plain = RetentionEnv(prep, instruction_text=False)
    assert "instruction" not in plain.observation_space.spaces


def test_users_option_limits_the_population(prep: Prepared) -> None:
    uids = prep.population.uid[:5]
    env = RetentionEnv(prep, users=uids)
    assert {env.reset(seed=s)[1]["user"] for s in range(30)} <= set(uids.tolist())
    with pytest.raises(EnvError) as e:
        env.reset(options={"user": int(prep.population.uid[10])})
    assert "Expected one of the environment's 5 population uids" in str(e.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"reward": "clicks"},
            "Expected reward one of ['engagement', 'retention', 'both'], got "
            "'clicks' - at RetentionEnv(reward)",
        ),
        (
            {"candidates": 3},
            "Expected 0 (the full catalogue) or a candidate count in "
            f"[slate_size 5, n_items {N_ITEMS}], got 3 - at RetentionEnv(candidates)",
        ),
        ({"sessions": 0}, "Expected an integer >= 1, got 0 - at RetentionEnv(sessions)"),
        (
            {"base": "knn"},
            "Expected base 'mf', 'popular' or 'random', got 'knn' - at RetentionEnv(base)",
        ),
        (
            {"retention_weight": float("nan")},
            "Expected a finite number, got nan - at RetentionEnv(retention_weight)",
        ),
        (
            {"users": [99999]},
            "Expected population uids (40 users, 0..39), got [99999] - at RetentionEnv(users)",
        ),
    ],
)
def test_option_errors_say_what_was_expected(prep: Prepared, options: dict, message: str) -> None:
    with pytest.raises(EnvError) as e:
        RetentionEnv(prep, **options)
    assert str(e.value) == message


def test_action_and_order_errors(prep: Prepared) -> None:
    env = RetentionEnv(prep, candidates=10)
    with pytest.raises(ResetNeeded, match=r"call reset\(\) before step\(\)"):
        env.step(np.arange(5))
    env.reset(seed=0)
    u = env.user
    where = f"RetentionEnv.step(action), user {u}, session 0, turn 0"
    head = "Expected a slate of 5 candidate positions (integers in [0, 9], shape (5,)), got"
    for action, got in [
        ([1, 2], "shape (2,)"),
        ([0, 1, 2, 3, 10], "10 at slate position 4"),
        ([0.0, 1.0, 2.0, 3.0, 4.0], "dtype float64"),
    ]:
        with pytest.raises(EnvError) as e:
            env.step(action)
        assert str(e.value) == f"{head} {got} - at {where}"
    with pytest.raises(EnvError) as e:
        env.reset(options={"key": -1})
    assert (
        str(e.value) == "Expected an integer >= 0, got -1 - at RetentionEnv.reset(options)['key']"
    )
    with pytest.raises(EnvError) as e:
        env.reset(options={"uid": 1})
    assert str(e.value) == (
        "Expected reset options among ['key', 'user'], got ['uid'] - at RetentionEnv.reset(options)"
    )


def test_same_seed_same_life_and_keys_make_lives_independent(prep: Prepared) -> None:
    env = make_retention(prep=prep, candidates=20)

    def life(**kw) -> str:  # noqa: ANN003
        return repr(play(env, lambda obs, n: np.arange(5) + n % 3, **kw)[1:])

    assert life(seed=4) == life(seed=4)
    uid = int(prep.population.uid[3])
    lives = {life(options={"user": uid, "key": key}) for key in range(6)}
    assert len(lives) > 1  # the same persona lives differently under other keys


def test_ansi_render(prep: Prepared) -> None:
    env = RetentionEnv(prep, render_mode="ansi")
    assert env.render() == "RetentionEnv: not reset yet\n"
    env.reset(seed=0)
    assert env.render() == f"user {env.user}: life starts, 4 sessions at most\n"
    env.step(np.arange(5))
    lines = env.render().splitlines()
    assert lines[0].startswith(f"user {env.user}, session 1, turn 1: satisfaction ")
    assert prep.catalog.titles[0] in lines[1]

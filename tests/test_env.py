"""RecoEnv: Gymnasium's contract, determinism, the study's step logic, and its errors."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from gymnasium.utils.passive_env_checker import env_render_passive_checker

from recoworld.config import PopulationConfig, StudyConfig, WorldConfig
from recoworld.env import EnvError, RecoEnv
from recoworld.errors import RecoWorldError
from recoworld.records import ACTIONS, SessionRecord, TurnRecord
from recoworld.rng import Stream, uniforms
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.simulate import simulate_arm
from recoworld.users.brain import ParametricBrain
from recoworld.world.synthetic import synthetic_world

DOC = Path(__file__).resolve().parents[1] / "docs" / "env.md"
N_ITEMS = 150


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = StudyConfig(
        name="env",
        seed=7,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=60),
    )
    return prepare(cfg, synthetic_world(120, N_ITEMS, seed=3))


def with_brain(prep: Prepared, **brain: float) -> Prepared:
    cfg = msgspec.structs.replace(prep.cfg, brain=msgspec.structs.replace(prep.cfg.brain, **brain))
    return replace(prep, cfg=cfg)


def play(
    env: RecoEnv, slates, *, seed: int | None = None, options: dict | None = None
) -> list[tuple]:  # noqa: ANN001
    """Reset, then step through ``slates`` (a list, or a function of the turn) until the end."""
    obs, info = env.reset(seed=seed, options=options)
    out = [(obs, info)]
    turn, done = 0, False
    while not done:
        slate = slates(turn) if callable(slates) else slates[turn]
        step = env.step(slate)
        out.append(step)
        done = step[2] or step[3]
        turn += 1
    return out


def test_check_env_passes_without_warnings(prep: Prepared) -> None:
    env = RecoEnv(prep, render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Gymnasium checker warning fails the test
        # The render check needs an env made by gymnasium.make (a spec); render is checked below.
        check_env(env, skip_render_check=True)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env_render_passive_checker(env)


def test_spaces_and_observation_hide_the_mindset(prep: Prepared) -> None:
    env = RecoEnv(prep, slate_size=4, max_turns=3)
    assert env.action_space.nvec.tolist() == [N_ITEMS] * 4
    assert set(env.observation_space.spaces) == {
        "clicked",
        "watch",
        "rating",
        "instruction_more",
        "instruction_less",
        "turn",
        "user_taste",
    }
    obs, info = env.reset(seed=3)
    assert obs in env.observation_space
    row = int(np.flatnonzero(prep.population.uid == env.user)[0])
    np.testing.assert_array_equal(obs["user_taste"], prep.population.taste[row])
    assert obs["turn"].tolist() == [0.0] and not obs["clicked"].any() and not obs["watch"].any()
    assert {"satisfaction", "fatigue", "boredom", "curiosity", "user", "brain_seed"} <= set(info)


def test_same_seed_same_trajectory_and_other_seeds_differ(prep: Prepared) -> None:
    env = RecoEnv(prep)
    rng = np.random.default_rng(0)
    slates = [rng.integers(N_ITEMS, size=env.slate_size) for _ in range(env.max_turns)]

    def trajectory(seed: int) -> list:
        steps = play(env, slates, seed=seed)
        return [steps[0][1]] + [(o, r, te, tr, i) for o, r, te, tr, i in steps[1:]]

    a, b = trajectory(11), trajectory(11)
    assert repr(a) == repr(b)  # observations, rewards, flags and infos, to the last bit
    others = [trajectory(s) for s in range(12, 20)]
    assert all(repr(o) != repr(a) for o in others)
    assert len({t[0]["user"] for t in others}) > 1  # different users are drawn, too
    # the same user under different seeds still behaves differently (the brain seed is drawn)
    u = env.reset(seed=11)[1]["user"]
    runs = {repr(play(env, slates, seed=s, options={"user": u})[1:]) for s in range(5)}
    assert len(runs) > 1


def test_high_affinity_slates_earn_more_than_low_affinity_slates(prep: Prepared) -> None:
    env = RecoEnv(prep)
    k = env.slate_size
    every = np.arange(N_ITEMS)[None, :]
    totals: dict[str, list[float]] = {"best": [], "worst": []}
    for seed in range(40):
        for kind, total in totals.items():
            env.reset(seed=seed)  # same seed: the same user and brain seed for both slates
            row = np.flatnonzero(prep.population.uid == env.user)
            logit, _ = prep.model.static_logit(prep.population, row, every, prep.catalog)
            # what the user has seen (its real history) is no recommendation: it is satiated
            seen = prep.population.take(row).history_of(N_ITEMS).toarray()[0]
            score = np.where(seen, -np.inf, logit[0] if kind == "best" else -logit[0])
            order = np.argsort(-score, kind="stable")
            steps = play(env, lambda t: order[t * k : (t + 1) * k], seed=seed)  # noqa: B023
            total.append(sum(s[1] for s in steps[1:]))
    best, worst = np.array(totals["best"]), np.array(totals["worst"])
    assert best.mean() > worst.mean() + 1.0
    assert (best > worst).mean() > 0.8


def test_terminated_and_truncated(prep: Prepared) -> None:
    env = RecoEnv(prep, max_turns=3)
    ends = {"terminated": 0, "truncated": 0}
    for seed in range(40):
        env.action_space.seed(seed)
        steps = play(env, lambda t: env.action_space.sample(), seed=seed)[1:]
        for n, (_, _, te, tr, info) in enumerate(steps, 1):
            assert not (te and tr)
            assert te == info["left"]
            assert (te or tr) == (n == len(steps))
        ends["terminated" if steps[-1][2] else "truncated"] += 1
        if steps[-1][3]:
            assert len(steps) == 3 and steps[-1][0]["turn"].tolist() == [3.0]
    assert ends["terminated"] > 0 and ends["truncated"] > 0
    # a user who never leaves is truncated at exactly max_turns; one who always leaves after one
    # slate is terminated then (without instructing: an instruction halves the chance of leaving)
    stay = RecoEnv(with_brain(prep, leave_bias=-50.0), max_turns=4)
    go = RecoEnv(with_brain(prep, leave_bias=50.0, instruct_probability=0.0), max_turns=4)
    for seed in range(10):
        steps = play(stay, lambda t: stay.action_space.sample(), seed=seed)[1:]
        assert [(te, tr) for _, _, te, tr, _ in steps] == [(False, False)] * 3 + [(False, True)]
        steps = play(go, lambda t: go.action_space.sample(), seed=seed)[1:]
        assert [(te, tr) for _, _, te, tr, _ in steps] == [(True, False)]


def test_reward_is_watch_plus_retention_at_the_end(prep: Prepared) -> None:
    w = 2.5
    env = RecoEnv(prep, retention_weight=w)
    env.action_space.seed(1)
    for seed in range(15):
        steps = play(env, lambda t: env.action_space.sample(), seed=seed)
        brain_seed = steps[0][1]["brain_seed"]
        for obs, reward, te, tr, info in steps[1:]:
            engagement = float(obs["watch"].astype(np.float64).sum())
            if te or tr:
                assert reward == pytest.approx(engagement + w * info["p_return"], abs=1e-6)
                # the probability is the one end_session draws against
                u = uniforms(brain_seed, Stream.RETURN, np.array([env.user]), 0)[0]
                assert info["returned"] == (u < info["p_return"])
                assert np.isfinite(info["gap_days"]) == info["returned"]
            else:
                assert reward == pytest.approx(engagement, abs=1e-6)
                assert "p_return" not in info


def test_return_probability_rises_with_satisfaction(prep: Prepared) -> None:
    personas = prep.population.take(np.zeros(3, np.int64))
    personas = replace(personas, activity=np.full(3, 0.5, personas.activity.dtype))
    brain = ParametricBrain(prep.model, prep.cfg.brain, prep.catalog, personas, prep.cfg.seed)
    p = brain.return_probability(np.array([0.1, 0.5, 0.9]), np.arange(3))
    assert p[0] < p[1] < p[2]
    assert p[1] == pytest.approx(1.0 / (1.0 + np.exp(-prep.model.returns.base_logit)))


def test_env_replays_the_study_events(prep: Prepared) -> None:
    """The study's users, given the study's slates and brain seed, do exactly the same things."""
    # one session: an episode is a user's first session (and later sessions' candidate pools
    # run dry on this small catalog, which makes the recommender warn)
    one_session = msgspec.structs.replace(prep.cfg.simulation, sessions=1)
    prep = replace(prep, cfg=msgspec.structs.replace(prep.cfg, simulation=one_session))
    records: list[TurnRecord | SessionRecord] = []
    simulate_arm(prep, 0, np.arange(len(prep.population)), records.append)
    turns = [r for r in records if isinstance(r, TurnRecord) and r.session == 0]
    session = next(r for r in records if isinstance(r, SessionRecord) and r.session == 0)
    env = RecoEnv(prep)
    tags = prep.catalog.tags
    instructions = 0
    for row, uid in enumerate(prep.population.uid.tolist()):
        env.reset(options={"user": uid, "brain_seed": prep.cfg.seed})
        for rec in turns:
            hits = np.flatnonzero(rec.rows == row)
            if hits.size == 0:
                continue
            hit = int(hits[0])
            obs, _, te, tr, info = env.step(rec.slates[hit])
            fb = rec.feedback
            assert info["actions"] == [ACTIONS[a] for a in fb.action[hit]], (uid, rec.turn)
            np.testing.assert_array_equal(obs["watch"], fb.watch[hit])
            np.testing.assert_array_equal(obs["rating"], np.nan_to_num(fb.rating[hit]))
            assert info["satisfaction"] == float(fb.mind[0, hit, -1])
            assert te == bool(rec.left[hit])
            assert tr == (not rec.left[hit] and rec.turn == env.max_turns - 1)
            ins = np.flatnonzero(rec.instructions.rows == hit)
            if ins.size:
                instructions += 1
                more = int(rec.instructions.more_of[ins[0]])
                less = int(rec.instructions.less_of[ins[0]])
                assert obs["instruction_more"].tolist() == [
                    int(j == more) for j in range(len(tags))
                ]
                assert obs["instruction_less"].tolist() == [
                    int(j == less) for j in range(len(tags))
                ]
                assert f"more {tags[more]}" in info["instruction"]
            else:
                assert info["instruction"] is None and not obs["instruction_more"].any()
        s = int(np.flatnonzero(session.rows == row)[0])
        assert (te or tr) and info["satisfaction"] == float(session.satisfaction_end[s])
        assert info["returned"] == bool(session.returned[s])
        assert info["gap_days"] == float(session.gap_days[s])
    assert instructions > 0  # the comparison covered instructions too


def test_invalid_actions_say_what_was_expected(prep: Prepared) -> None:
    env = RecoEnv(with_brain(prep, leave_bias=-50.0), slate_size=3)  # the user stays
    env.reset(seed=0)
    u = env.user
    head = "Expected a slate of 3 catalog rows (integers in [0, 149], shape (3,)), got"
    cases = [
        ([1, 2], f"{head} shape (2,) - at RecoEnv.step(action), user {u}, turn 0"),
        ([[1, 2, 3]], f"{head} shape (1, 3) - at RecoEnv.step(action), user {u}, turn 0"),
        (
            [1, 150, 2],
            f"{head} 150 at slate position 1 - at RecoEnv.step(action), user {u}, turn 0",
        ),
        ([1, 2, -1], f"{head} -1 at slate position 2 - at RecoEnv.step(action), user {u}, turn 0"),
        ([1.0, 2.0, 3.0], f"{head} dtype float64 - at RecoEnv.step(action), user {u}, turn 0"),
        ([1, [2], 3], f"{head} [1, [2], 3] - at RecoEnv.step(action), user {u}, turn 0"),
    ]
    for action, message in cases:
        with pytest.raises(ValueError) as e:
            env.step(action)
        assert str(e.value) == message
        assert isinstance(e.value, RecoWorldError)
    env.step(np.array([0, 0, 0]))  # duplicates are allowed; the invalid ones did not count
    with pytest.raises(ValueError) as e:
        env.step([7, 8])
    assert str(e.value) == f"{head} shape (2,) - at RecoEnv.step(action), user {u}, turn 1"


def test_order_and_option_errors(prep: Prepared) -> None:
    env = RecoEnv(prep, max_turns=1)
    with pytest.raises(ResetNeeded, match=re.escape("call reset() before step()")):
        env.step(env.action_space.sample())
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(ResetNeeded, match=f"the episode of user {env.user} has ended"):
        env.step(env.action_space.sample())
    with pytest.raises(EnvError) as e:
        env.reset(options={"usr": 3})
    assert (
        str(e.value) == "Expected reset options among ['brain_seed', 'user'], got ['usr'] "
        "- at RecoEnv.reset(options)"
    )
    with pytest.raises(EnvError) as e:
        env.reset(options={"user": 60})
    assert (
        str(e.value) == "Expected a population user uid (one of 60, 0..59), got 60 "
        "- at RecoEnv.reset(options['user'])"
    )
    with pytest.raises(EnvError) as e:
        env.reset(options={"brain_seed": "7"})
    assert str(e.value) == "Expected an integer, got '7' - at RecoEnv.reset(options['brain_seed'])"
    with pytest.raises(EnvError) as e:
        RecoEnv(prep, slate_size=0)
    assert str(e.value) == "Expected an integer >= 1, got 0 - at RecoEnv(slate_size)"
    with pytest.raises(EnvError) as e:
        RecoEnv(prep, render_mode="human")
    assert (
        str(e.value)
        == "Expected render_mode None or one of ['ansi'], got 'human' - at RecoEnv(render_mode)"
    )


def test_options_and_defaults(prep: Prepared) -> None:
    env = RecoEnv(prep)
    assert (env.slate_size, env.max_turns, env.retention_weight) == (10, 5, 1.0)
    _, info = env.reset(seed=5, options={"user": 17})
    _, info2 = env.reset(seed=5)
    assert (
        info["user"] == 17 and info["brain_seed"] == info2["brain_seed"]
    )  # an option shifts no draw
    assert env.reset(options={"user": 17, "brain_seed": 99})[1]["brain_seed"] == 99


def test_from_study_and_ansi_render() -> None:
    cfg = StudyConfig(name="env", seed=2, population=PopulationConfig(size=10))
    env = RecoEnv.from_study(
        cfg, synthetic_world(40, 60, seed=2), slate_size=3, max_turns=2, render_mode="ansi"
    )
    assert env.render() == "RecoEnv: not reset yet\n"
    env.reset(seed=0)
    assert env.render() == f"user {env.user}: session start, 2 slates at most\n"
    env.step(np.array([5, 5, 9]))
    text = env.render()
    lines = text.splitlines()
    assert lines[0].startswith(f"user {env.user}, turn 1/2: satisfaction ")
    assert (
        re.match(r"^ +1\. (skip|click|watch|rate) ", lines[1]) and env.catalog.titles[5] in lines[1]
    )
    assert env.catalog.titles[5] in lines[2] and env.catalog.titles[9] in lines[3]
    assert RecoEnv(env.prep).render() is None


def test_the_doc_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, f"{DOC} has no python code block"
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    out = capsys.readouterr().out
    assert re.search(r"user \d+: \d+ slates, return [\d.]+, P\(return\) [\d.]+", out), out


@pytest.mark.parametrize("repeat_share", [0.0, 1.0])
def test_reshowing_consumed_items_never_beats_fresh_relevant_ones(
    prep: Prepared, repeat_share: float
) -> None:
    """The exploit an RL agent or a plug-in would find first: the same best slate every turn.
    Satiation (and item-keyed draws) make it lose to fresh items of the same relevance, in a
    world that logs no repeats (films) and in one whose logs are all repeats (listening)."""
    world = replace(prep, model=msgspec.structs.replace(prep.model, repeat_share=repeat_share))
    env = RecoEnv(world, max_turns=6)
    k, every = env.slate_size, np.arange(N_ITEMS)[None, :]
    reward = {"repeat": [], "fresh": []}
    p_return = {"repeat": [], "fresh": []}
    reclicks = 0
    for seed in range(30):
        for kind in reward:
            env.reset(seed=seed)
            row = np.flatnonzero(world.population.uid == env.user)
            logit, _ = world.model.static_logit(world.population, row, every, world.catalog)
            seen = world.population.take(row).history_of(N_ITEMS).toarray()[0]
            order = np.argsort(-np.where(seen, -np.inf, logit[0]), kind="stable")
            slates = [order[:k] if kind == "repeat" else order[t * k :][:k] for t in range(6)]
            steps = play(env, slates, seed=seed)[1:]
            reward[kind].append(sum(s[1] for s in steps) - steps[-1][4]["p_return"])
            p_return[kind].append(steps[-1][4]["p_return"])
            if kind == "repeat":
                clicked = np.array([s[0]["clicked"] for s in steps])
                reclicks += int(clicked[1:].sum())
    assert np.mean(reward["fresh"]) > np.mean(reward["repeat"])
    assert np.mean(p_return["fresh"]) >= np.mean(p_return["repeat"])
    if repeat_share == 0.0:  # nothing is ever consumed twice where the logs hold no repeat
        assert reclicks <= 0.05 * 30 * 5 * k


def test_instruction_words_in_the_observation_on_request(prep: Prepared) -> None:
    env = RecoEnv(prep, instruction_text=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    seen = 0
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        assert obs["instruction"] == ""
        done = False
        while not done:
            obs, _, te, tr, info = env.step(np.full(env.slate_size, 3))  # one item: boring
            done = te or tr
            assert obs["instruction"] == (info["instruction"] or "")
            seen += bool(info["instruction"])
    assert seen
    assert "instruction" not in RecoEnv(prep).observation_space.spaces

"""The text environment (the language-model recommender's RL hook): prompts, answers, rewards,
and the replayable states a GRPO trainer scores completions from."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from recoworld.config import PopulationConfig, SimulationConfig, StudyConfig, WorldConfig
from recoworld.env import EnvError, RetentionEnv, TextRecoEnv
from recoworld.env.text import CompletionReward, base_order, parse_answer, prompt_rows
from recoworld.study.prepare import Prepared, prepare
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = StudyConfig(
        name="env-text",
        seed=2,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=30),
        simulation=SimulationConfig(sessions=3, turns=3, slate_size=4),
    )
    return prepare(cfg, synthetic_world(80, 200, seed=5))


@pytest.mark.parametrize(
    ("answer", "picks"),
    [
        ('{"items": [3, 1, 2, 0]}', [3, 1, 2, 0]),
        ('Sure! {"items": [5, 5, 2, 99, -1, "7", 4, 6, 7]} hope that helps', [5, 2, 4, 6]),
        ("[2, 0]", [2, 0]),
        ('{"picks": [1, 2]} then [4, 3]', [4, 3]),  # an object without items is passed over
        ('{"items": [1, true, 2.0, 3]}', [1, 3]),
        ("no json here", []),
        ("{broken", []),
        ("", []),
    ],
)
def test_parse_answer(answer: str, picks: list[int]) -> None:
    assert parse_answer(answer, 8, 4) == picks


def test_check_env_passes(prep: Prepared) -> None:
    env = TextRecoEnv(prep, candidates=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_the_prompt_holds_the_user_the_instruction_feedback_and_candidates(prep: Prepared) -> None:
    env = TextRecoEnv(prep, candidates=10)
    prompt, _ = env.reset(seed=1)
    lines = prompt.splitlines()
    assert lines[0].startswith("You are a recommender. Pick 4 of the candidates")
    assert '{"items": [numbers]}' in lines[0]
    assert lines[1].startswith("User: likes ")
    assert lines[2] == "Visit 1 of at most 3, slate 1 of at most 3, day 0.0."
    assert lines[3] == "The user asked nothing."
    cand = env.inner.view.pool[0]
    titles = [prep.catalog.titles[i] for i in cand]
    assert [line.split(" | ")[1] for line in lines[-10:]] == titles
    # after a slate: what the user did, and the candidates it was shown are marked
    for seed in range(20):
        prompt, _ = env.reset(seed=seed)
        prompt, _, _, _, info = env.step('{"items": [0, 1, 2, 3]}')
        if not info["session_end"]:
            break
    assert "Last slate: chose " in prompt
    shown = [line for line in prompt.splitlines() if line.endswith(" | shown")]
    assert [int(line.split(" | ")[0]) for line in shown] == [0, 1, 2, 3]
    words = [info["instruction"] for info in _instructions(env)]
    assert words, "no instruction in 40 lives"
    assert all(f'The user asked: "{w}"' in p for w, p in zip(words, _instruction_prompts(env)))


def _instructions(env: TextRecoEnv) -> list[dict]:
    out = []
    for seed in range(40):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, te, tr, info = env.step('{"items": [0, 0, 0, 0]}')  # one item: boring
            done = te or tr
            if info["instruction"] and not info["session_end"]:
                out.append(info)
    return out


def _instruction_prompts(env: TextRecoEnv) -> list[str]:
    out = []
    for seed in range(40):
        env.reset(seed=seed)
        done = False
        while not done:
            prompt, _, te, tr, info = env.step('{"items": [0, 0, 0, 0]}')
            done = te or tr
            if info["instruction"] and not info["session_end"]:
                out.append(prompt)
    return out


def test_reward_is_the_retention_envs_less_the_format_penalty(prep: Prepared) -> None:
    text = TextRecoEnv(prep, candidates=10, format_penalty=2.0, retention_weight=1.5)
    inner = RetentionEnv(prep, candidates=10, retention_weight=1.5)
    for seed in range(5):
        text.reset(seed=seed)
        obs, _ = inner.reset(seed=seed)
        done = False
        answers = ['{"items": [3, 2, 1, 0]}', "[7, 7]", "garbage"]
        n = 0
        while not done:
            answer = answers[n % 3]
            picks = parse_answer(answer, 10, 4)
            slate = picks + base_order(obs, 4 - len(picks), picks)
            _, r_text, te, tr, info = text.step(answer)
            obs, r, te2, tr2, _ = inner.step(np.array(slate))
            assert (te, tr) == (te2, tr2) and info["slate"] == slate
            assert info["valid"] == len(picks)
            assert r_text == pytest.approx(r - 2.0 * (4 - len(picks)) / 4)
            done, n = te or tr, n + 1


def test_completion_rewards_replay_the_recorded_state(prep: Prepared) -> None:
    make = lambda: TextRecoEnv(prep, candidates=10)  # noqa: E731
    rows = prompt_rows(make, 6, seed=3, max_depth=3)
    assert len(rows) == 6 and any(json.loads(r["answers"]) for r in rows)
    env = make()
    step_reward = CompletionReward(make)
    session_reward = CompletionReward(make, horizon="session")
    answer = '{"items": [1, 2, 3, 4]}'
    got = step_reward(
        [answer] * 6, seed=[r["seed"] for r in rows], answers=[r["answers"] for r in rows]
    )
    for row, g in zip(rows, got):
        prompt, _ = env.reset(seed=row["seed"])
        for a in json.loads(row["answers"]):
            prompt, *_ = env.step(a)
        assert prompt == row["prompt"]  # the state is the one the prompt shows
        _, r, *_ = env.step(answer)
        assert g == pytest.approx(r)
        # the session horizon adds the base recommender's slates to the session's end
        assert session_reward.score(answer, row["seed"], json.loads(row["answers"])) >= r - 1e-9
    # conversational completions (lists of messages) are read by their last message
    conv = [[{"role": "assistant", "content": answer}]]
    assert step_reward(conv, seed=[rows[0]["seed"]], answers=[rows[0]["answers"]]) == got[:1]


def test_errors(prep: Prepared) -> None:
    env = TextRecoEnv(prep, candidates=10)
    env.reset(seed=0)
    with pytest.raises(EnvError) as e:
        env.step([1, 2, 3, 4])  # type: ignore[arg-type]
    assert str(e.value) == (
        "Expected the model's answer as a str, got list - at TextRecoEnv.step(action)"
    )
    with pytest.raises(EnvError, match="no instruction_text option"):
        TextRecoEnv(prep, instruction_text=False)
    with pytest.raises(EnvError, match="Expected horizon 'step' or 'session', got 'life'"):
        CompletionReward(lambda: env, horizon="life")

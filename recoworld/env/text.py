"""The text environment: the RL hook of a language-model recommender.

:class:`TextRecoEnv` is a :class:`~recoworld.env.retention.RetentionEnv` in the candidate-set
mode seen through words. The observation is a prompt: the user as a platform knows it (liked
tags), where it is in its life, its latest instruction in its own words, what it did with the
last slate, and the N candidates (number, title, tags, popularity). The action is the model's
answer: JSON naming k candidates by number, best first, ``{"items": [3, 0, 7]}`` (a bare list is
accepted too; text around the JSON is ignored). The reward is the retention environment's
(``reward="both"``: engagement plus ``retention_weight x P(return)`` at each session's end).

An answer that names fewer than k valid, distinct candidates is completed with the base
recommender's best unshown candidates, and ``format_penalty`` times the share of the slate it
failed to fill is subtracted from the reward (``info["valid"]`` counts the valid picks): a
policy is taught the format without the episode breaking.

For trainers that score several completions of one prompt (TRL's GRPO), a state is replayable:
:func:`prompt_rows` rolls lives forward with the base recommender and records each state as
(seed, user, key, the earlier answers); :class:`CompletionReward` rebuilds that state, applies a
completion and returns its reward, optionally followed by the base recommender to the end of the
session (``horizon="session"``: the session's return under a fixed continuation, so that the
return model's reward reaches every slate's decision).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recoworld.env.reco_env import EnvError
from recoworld.env.retention import RetentionEnv
from recoworld.env.view import TEXT_CHARSET
from recoworld.study.prepare import Prepared
from recoworld.users.persona import likes

PROMPT_MAX = 16_384
ANSWER_MAX = 1_024
CHARSET = TEXT_CHARSET + "\n"
_JSON = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]", re.S)


def clean(text: str, limit: int) -> str:
    """``text`` in the text spaces' characters (others become ``?``), at most ``limit`` long."""
    ok = set(CHARSET)
    return "".join(c if c in ok else "?" for c in text[:limit])


def parse_answer(answer: str, m: int, k: int) -> list[int]:
    """The distinct candidate numbers (in [0, m)) an answer names, in order, at most ``k``.
    The first JSON object with an ``items`` list, or the first JSON list, counts; anything
    else names nothing."""
    for chunk in _JSON.findall(answer or ""):
        try:
            value = json.loads(chunk)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = value.get("items")
        if not isinstance(value, list):
            continue
        picks: list[int] = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < m or v in picks:
                continue
            picks.append(v)
            if len(picks) == k:
                break
        return picks
    return []


def base_order(obs: dict[str, Any], k: int, taken: Sequence[int] = ()) -> list[int]:
    """The base recommender's best ``k`` candidates not shown this session (then shown
    ones), skipping ``taken``: how an incomplete answer is completed."""
    score = np.asarray(obs["cand_score"], np.float64)
    order = np.lexsort((-score, np.asarray(obs["cand_shown"])))  # unshown first, best first
    out = [int(j) for j in order if int(j) not in taken]
    return out[:k]


class TextRecoEnv(gym.Env[str, str]):
    """A life in words (see the module docstring). Options: ``candidates`` (default 20),
    ``format_penalty`` (default 1.0), the rest as :class:`RetentionEnv`'s."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        prep: Prepared,
        *,
        candidates: int = 20,
        format_penalty: float = 1.0,
        **options: Any,
    ) -> None:
        if "instruction_text" in options:
            raise EnvError(
                "Expected no instruction_text option (the prompt always holds the words) "
                "- at TextRecoEnv(instruction_text)"
            )
        self.inner = RetentionEnv(prep, candidates=candidates, instruction_text=True, **options)
        self.format_penalty = float(format_penalty)
        self.k, self.m = self.inner.settings.k, self.inner.settings.m
        cat = prep.catalog
        self._liked = likes(prep.population.taste, prep.population.average_share("taste"))
        self._titles = [clean(str(t), 80) for t in cat.titles.tolist()]
        self._tags = [clean(", ".join(t), 80) for t in cat.item_tags]
        self.observation_space = spaces.Text(PROMPT_MAX, min_length=1, charset=CHARSET)
        self.action_space = spaces.Text(ANSWER_MAX, min_length=0, charset=CHARSET)
        self._obs: dict[str, Any] | None = None
        self._last: str = ""

    @property
    def user(self) -> int | None:
        return self.inner.user

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.inner.reset(seed=seed, options=options)
        self._obs, self._last = obs, ""
        return self.prompt(obs), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise gym.error.ResetNeeded("TextRecoEnv.step: call reset() before step()")
        if not isinstance(action, str):
            raise EnvError(
                f"Expected the model's answer as a str, got {type(action).__name__} "
                "- at TextRecoEnv.step(action)"
            )
        picks = parse_answer(action, self.m, self.k)
        valid = len(picks)
        slate = picks + base_order(self._obs, self.k - valid, picks)
        obs, reward, terminated, truncated, info = self.inner.step(np.array(slate, np.int64))
        reward -= self.format_penalty * (self.k - valid) / self.k
        self._last = self._feedback(slate, info)
        self._obs = obs
        info |= {"valid": valid, "slate": slate}
        return self.prompt(obs), float(reward), terminated, truncated, info

    def _feedback(self, slate: list[int], info: dict[str, Any]) -> str:
        assert self._obs is not None
        cand = self._obs["candidates"]
        took, skipped = [], []
        for j, act in zip(slate, info["actions"]):
            title = self._titles[int(cand[j])]
            (skipped if act == "skip" else took).append(
                f"{title} ({act})" if act != "skip" else title
            )
        line = f"Last slate: chose {'; '.join(took) or 'nothing'}."
        if skipped:
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            line += f" Skipped {len(skipped)}: {'; '.join(skipped[:5])}{more}."
        if info.get("session_end"):
            line = f"{line} The visit ended" + (
                " (the user left)." if info["left"] else " (all slates shown)."
            )
        return line

    def prompt(self, obs: dict[str, Any]) -> str:
        """The prompt of an observation of the inner environment (shared text first)."""
        tags = self.inner.catalog.tags
        s = self.inner.settings
        row = s.row_of.get(self.user, 0) if self.user is not None else 0
        liked = [tags[j] for j in np.flatnonzero(self._liked[s.user_rows[row]])][:6]
        words = obs.get("instruction") or ""
        session, turn = int(obs["session"][0]), int(obs["turn"][0])
        lines = [
            f"You are a recommender. Pick {self.k} of the candidates for this user, best first, "
            f'and answer with JSON only: {{"items": [numbers]}}.',
            f"User: likes {', '.join(liked) or 'nothing in particular'}.",
            f"Visit {session + 1} of at most {s.sessions}, slate {turn + 1} of at most {s.turns}"
            f", day {float(obs['day'][0]):.1f}.",
            f'The user asked: "{words}"' if words else "The user asked nothing.",
        ]
        if self._last and turn > 0:
            lines.append(self._last)
        lines.append("Candidates (number | title | tags | popularity | shown this visit):")
        for j, item in enumerate(obs["candidates"].tolist()):
            shown = " | shown" if obs["cand_shown"][j] else ""
            pop = float(obs["cand_popularity"][j])
            lines.append(f"{j} | {self._titles[item]} | {self._tags[item]} | {pop:.2f}{shown}")
        return clean("\n".join(lines), PROMPT_MAX)


def prompt_rows(
    make_env: Callable[[], TextRecoEnv], n: int, *, seed: int = 0, max_depth: int = 3
) -> list[dict[str, Any]]:
    """``n`` states of lives for a prompt dataset: each a life reset at a drawn seed and rolled
    forward by the base recommender for a drawn number of slates (< ``max_depth``). A row:
    ``prompt``, ``seed``, ``answers`` (JSON list of the earlier answers, to replay)."""
    env = make_env()
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        episode_seed = int(rng.integers(2**31))
        prompt, _ = env.reset(seed=episode_seed)
        answers: list[str] = []
        for _ in range(int(rng.integers(max_depth))):
            assert env._obs is not None
            answer = json.dumps({"items": base_order(env._obs, env.k)})
            prompt, _, terminated, truncated, _ = env.step(answer)
            if terminated or truncated:
                prompt, _ = env.reset(seed=episode_seed)
                answers = []
                break
            answers.append(answer)
        rows.append({"prompt": prompt, "seed": episode_seed, "answers": json.dumps(answers)})
    return rows


class CompletionReward:
    """The reward of a completion from a recorded state (see :func:`prompt_rows`): a callable
    with TRL's reward-function signature, ``(completions, seed=[...], answers=[...]) -> list``.
    ``horizon="step"``: the step's reward; ``"session"``: plus the base recommender's slates
    to the end of the session (their rewards, P(return) included)."""

    __name__ = "recoworld_reward"  # TRL names reward functions by __name__

    def __init__(self, make_env: Callable[[], TextRecoEnv], horizon: str = "step") -> None:
        if horizon not in ("step", "session"):
            raise EnvError(
                f"Expected horizon 'step' or 'session', got {horizon!r} - at CompletionReward"
            )
        self.env, self.horizon = make_env(), horizon

    def __call__(self, completions: Sequence[Any], **columns: Sequence[Any]) -> list[float]:
        out = []
        for j, completion in enumerate(completions):
            seed, answers = int(columns["seed"][j]), json.loads(columns["answers"][j])
            out.append(self.score(_text(completion), seed, answers))
        return out

    def score(self, completion: str, seed: int, answers: list[str]) -> float:
        env = self.env
        env.reset(seed=seed)
        for a in answers:
            env.step(a)
        _, reward, terminated, truncated, info = env.step(completion)
        if self.horizon == "session":
            while not (terminated or truncated or info["session_end"]):
                assert env._obs is not None
                answer = json.dumps({"items": base_order(env._obs, env.k)})
                _, r, terminated, truncated, info = env.step(answer)
                reward += r
        return float(reward)


def _text(completion: Any) -> str:
    """A completion as text: TRL passes a str, or (conversational) a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)

"""The retention environment: an episode is a user's life over several sessions and days.

Each step is one slate. Sessions end when the user leaves or the turn budget is spent; then the
return model (the one of every study) decides whether the user comes back and after how many
days; the next step is then the first slate of its next session. The episode ends when the user
does not come back (``terminated``: it churned) or when the life's budget is spent
(``truncated``: ``sessions`` sessions, or the next visit would fall after ``horizon_days``).

Rewards (``reward=``):

- ``"engagement"``: the slate's watch fractions summed;
- ``"retention"``: ``retention_weight x P(return)`` at the end of each session (the return
  model's probability, which its draw uses: the expected return, without the draw's noise), 0
  on other steps;
- ``"both"`` (default): the sum of the two.

Action modes (``candidates=``): ``0``, the full catalogue (``MultiDiscrete([n_items] * k)``:
catalog rows); ``N > 0``, a candidate set: the observation carries the session's N candidates
from a base recommender (``base``: mf, popular, random) with their features, and the action
picks and orders k of them (``MultiDiscrete([N] * k)``: candidate positions).

:class:`RetentionEnv` is one life at a time; :class:`recoworld.env.vector.RetentionVectorEnv`
runs thousands at once on the same core (:class:`recoworld.env.lives.Lives`).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from recoworld.env.lives import Lives, Outcome
from recoworld.env.reco_env import EnvError
from recoworld.env.view import AgentView, first
from recoworld.records import ACTIONS, MINDSET_FIELDS, Record
from recoworld.study.prepare import Prepared

Reward = Literal["engagement", "retention", "both"]
REWARDS = ("engagement", "retention", "both")
RESET_OPTIONS = ("key", "user")
KEY_BOUND = 2**62
"""Episode keys are drawn in [0, KEY_BOUND)."""


class Settings:
    """The options every retention environment shares, checked once (errors name the option)."""

    def __init__(
        self,
        prep: Prepared,
        *,
        where: str,
        sessions: int | None = None,
        max_turns: int | None = None,
        slate_size: int | None = None,
        candidates: int = 0,
        base: str = "mf",
        reward: str = "both",
        retention_weight: float = 1.0,
        horizon_days: float | None = None,
        instruction_text: bool = True,
        brain_seed: int | None = None,
        users: Any = None,
    ) -> None:
        sim = prep.cfg.simulation
        self.where = where
        self.sessions = positive_int(
            sim.sessions if sessions is None else sessions, where, "sessions"
        )
        self.turns = positive_int(sim.turns if max_turns is None else max_turns, where, "max_turns")
        k = sim.slate_size if slate_size is None else slate_size
        self.k = positive_int(k, where, "slate_size")
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)):
            raise EnvError(f"Expected an integer >= 0, got {candidates!r} - at {where}(candidates)")
        if candidates < 0 or 0 < candidates < self.k or candidates > prep.catalog.n_items:
            raise EnvError(
                f"Expected 0 (the full catalogue) or a candidate count in "
                f"[slate_size {self.k}, n_items {prep.catalog.n_items}], got {candidates} "
                f"- at {where}(candidates)"
            )
        self.m = int(candidates)
        if base not in ("mf", "popular", "random"):
            raise EnvError(
                f"Expected base 'mf', 'popular' or 'random', got {base!r} - at {where}(base)"
            )
        self.base = base
        if reward not in REWARDS:
            raise EnvError(
                f"Expected reward one of {list(REWARDS)}, got {reward!r} - at {where}(reward)"
            )
        self.reward = reward
        self.retention_weight = finite(retention_weight, where, "retention_weight")
        self.horizon = None if horizon_days is None else finite(horizon_days, where, "horizon_days")
        self.text = bool(instruction_text)
        self.brain_seed = prep.cfg.seed if brain_seed is None else int(brain_seed)
        self.uid = uid = prep.population.uid
        if users is None:
            self.user_rows = np.arange(uid.size)
        else:
            want = np.asarray(users, np.int64).ravel()
            row_of = {int(u): r for r, u in enumerate(uid.tolist())}
            missing = [int(u) for u in want if int(u) not in row_of]
            if missing or want.size == 0:
                raise EnvError(
                    f"Expected population uids ({uid.size} users, "
                    f"{int(uid.min())}..{int(uid.max())}), got {missing[:5] or 'none'} "
                    f"- at {where}(users)"
                )
            self.user_rows = np.array([row_of[int(u)] for u in want], np.int64)
        self.row_of = {int(uid[r]): i for i, r in enumerate(self.user_rows.tolist())}
        rating = prep.model.rating
        self.rating_max = float(rating.scale_max) if rating is not None else 1.0

    def view(self, prep: Prepared) -> AgentView:
        return AgentView(
            prep.catalog,
            slate_size=self.k,
            turns=self.turns,
            sessions=self.sessions,
            candidates=self.m,
            base=self.base,
            text=self.text,
            seed=self.brain_seed,
        )

    def action_space(self, n_items: int) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete(np.full(self.k, self.m or n_items, dtype=np.int64))

    def rewards(self, out: Outcome) -> np.ndarray:
        r = np.zeros(out.rows.size)
        if self.reward != "retention":
            r += out.watch
        if self.reward != "engagement":
            r += np.where(out.session_end, self.retention_weight * out.p_return, 0.0)
        return r

    def draw(
        self, rng: np.random.Generator, options: dict[str, Any], where: str
    ) -> tuple[int, int]:
        """A new episode's population row and key: both drawn, in that order, then replaced
        by ``options`` (so an option never shifts another draw)."""
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise EnvError(
                f"Expected reset options among {list(RESET_OPTIONS)}, got {unknown} - at {where}"
            )
        at = int(rng.integers(self.user_rows.size))
        key = int(rng.integers(KEY_BOUND))
        if "user" in options:
            u = options["user"]
            if (
                isinstance(u, bool)
                or not isinstance(u, (int, np.integer))
                or int(u) not in self.row_of
            ):
                uid = self.uid[self.user_rows]
                raise EnvError(
                    f"Expected one of the environment's {uid.size} population uids "
                    f"({int(uid.min())}..{int(uid.max())}), got {u!r} - at {where}['user']"
                )
            at = self.row_of[int(u)]
        if "key" in options:
            key = options["key"]
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
                raise EnvError(f"Expected an integer >= 0, got {key!r} - at {where}['key']")
            key = int(key)
        return int(self.user_rows[at]), key

    def check_action(self, action: Any, n: int | None, n_items: int, where: str) -> np.ndarray:
        """The action as int64 (k,) or (n, k); an invalid one raises :class:`EnvError`."""
        k, hi = self.k, (self.m or n_items)
        what = "candidate positions" if self.m else "catalog rows"
        shape = (k,) if n is None else (n, k)
        slate = "a slate" if n is None else "slates"
        expected = f"{slate} of {k} {what} (integers in [0, {hi - 1}], shape {shape})"
        try:
            a = np.asarray(action)
        except ValueError:
            raise EnvError(f"Expected {expected}, got {action!r} - at {where}") from None
        if a.shape != shape:
            raise EnvError(f"Expected {expected}, got shape {a.shape} - at {where}")
        if not np.issubdtype(a.dtype, np.integer):
            raise EnvError(f"Expected {expected}, got dtype {a.dtype} - at {where}")
        bad = np.argwhere((a < 0) | (a >= hi))
        if bad.size:
            at = tuple(int(x) for x in bad[0])
            place = f"slate position {at[-1]}" + ("" if n is None else f" of env {at[0]}")
            raise EnvError(f"Expected {expected}, got {int(a[at])} at {place} - at {where}")
        return a.astype(np.int64)


def positive_int(v: Any, where: str, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise EnvError(f"Expected an integer >= 1, got {v!r} - at {where}({name})")
    return int(v)


def finite(v: Any, where: str, name: str) -> float:
    number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    if not number or not np.isfinite(v):
        raise EnvError(f"Expected a finite number, got {v!r} - at {where}({name})")
    return float(v)


def step_info(out: Outcome, j: int, uid: int) -> dict[str, Any]:
    """The ``info`` of one row ``j`` of a step's outcome."""
    info: dict[str, Any] = {
        "user": uid,
        "session": int(out.session[j]),
        "turn": int(out.turn[j]),
        "actions": [ACTIONS[a] for a in out.action[j].tolist()],
        **{f: float(out.mind[i, j]) for i, f in enumerate(MINDSET_FIELDS)},
        "instruction": out.words[j],
        "left": bool(out.left[j]),
        "session_end": bool(out.session_end[j]),
        "engagement": float(out.watch[j]),
    }
    if out.session_end[j]:
        info |= {
            "p_return": float(out.p_return[j]),
            "returned": bool(out.returned[j]),
            "gap_days": float(out.gap_days[j]),
        }
    return info


class RetentionEnv(gym.Env[dict[str, Any], np.ndarray]):
    """One user's life, slate by slate, session after session (see the module docstring).

    Observation (a ``Dict``; k = ``slate_size``, T = catalog tags, N = ``candidates``; the
    hidden mindset is never in it, ``info`` has it): ``clicked``, ``watch``, ``rating`` (k,) on
    the last slate of this session (zeros at a session's start); ``instruction_more`` /
    ``instruction_less`` one-hots (T,) of the instruction written after the last slate;
    ``turn``, ``session`` (1,) where the user is; ``day`` (1,) days since its first session;
    ``user_taste`` (T,) and ``user_traits`` (4,: activity, conformity, diversity, patience)
    what a platform knows of it; with ``instruction_text``: ``instruction``, the words of that
    instruction ("" for none); with candidates: ``candidates`` (N,) catalog rows,
    ``cand_score`` the base recommender's scores (best first), ``cand_popularity`` (popularity
    percentile), ``cand_embedding`` (N, d), ``cand_tags`` (N, T), ``cand_shown`` and
    ``cand_clicked`` (N,) shown / clicked earlier in this session.

    ``reset(seed=..., options={"user": uid, "key": int})``: the user (from ``users``, default
    the whole population) and the episode's key are drawn with ``np_random`` unless given; with
    ``key = uid`` and the default ``brain_seed`` (the study's seed) the life is that user's run
    in the study, event for event.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, prep: Prepared, *, render_mode: str | None = None, **options: Any) -> None:
        self.prep = prep
        self.settings = s = Settings(prep, where="RetentionEnv", **options)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise EnvError(
                f"Expected render_mode None or one of {self.metadata['render_modes']}, got "
                f"{render_mode!r} - at RetentionEnv(render_mode)"
            )
        self.render_mode = render_mode
        self.catalog = prep.catalog
        self.view = s.view(prep)
        self._records: list[Record] = []
        self.lives = Lives(
            prep,
            self.view,
            n=1,
            sessions=s.sessions,
            turns=s.turns,
            brain_seed=s.brain_seed,
            horizon_days=s.horizon,
            observe=self._records.append,
        )
        self.action_space = s.action_space(prep.catalog.n_items)
        self.observation_space = self.view.space(prep.catalog.n_items, s.rating_max)
        self._row = np.zeros(1, np.int64)
        self._user: int | None = None
        self._done = True
        self._last: tuple[np.ndarray, Outcome] | None = None

    @property
    def records(self) -> list[Record]:
        """The current episode's turn and session records (what a study writes)."""
        return list(self._records)

    @property
    def user(self) -> int | None:
        return self._user

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        s = self.settings
        pop_row, key = s.draw(self.np_random, dict(options or {}), "RetentionEnv.reset(options)")
        self._records.clear()
        self.lives.restart(self._row, np.array([pop_row]), np.array([key]))
        self._user, self._done, self._last = int(self.prep.population.uid[pop_row]), False, None
        mind = self.lives.mind
        info = {"user": self._user, "key": key}
        info |= {f: float(getattr(mind, f)[0]) for f in MINDSET_FIELDS}
        return self._obs(), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._user is None:
            raise ResetNeeded("RetentionEnv.step: call reset() before step()")
        if self._done:
            raise ResetNeeded(
                f"RetentionEnv.step: the life of user {self._user} has ended; call reset()"
            )
        lives, s, row = self.lives, self.settings, self._row
        where = (
            f"RetentionEnv.step(action), user {self._user}, session {int(lives.session[0])}, "
            f"turn {int(lives.turn[0])}"
        )
        # 1. the agent's slate (an invalid one raises and uses up no turn)
        a = s.check_action(action, None, self.catalog.n_items, where)[None, :]
        slates = self.view.slates_of(row, a) if s.m else a
        self.view.show(row, slates, a if s.m else None)
        # 2-6. the user's turn, settled; the session's end and the return model
        out = lives.step(row, slates)
        self._last = (slates[0], out)
        terminated, truncated = bool(out.churned[0]), bool(out.truncated[0])
        self._done = terminated or truncated
        reward = float(s.rewards(out)[0])
        return self._obs(), reward, terminated, truncated, step_info(out, 0, self._user)

    def _obs(self) -> dict[str, Any]:
        lives = self.lives
        obs = self.view.observation(
            self._row,
            session=lives.session,
            turn=lives.turn,
            day=lives.ledger.day,
            rating_max=self.settings.rating_max,
        )
        return first(obs)

    def render(self) -> str | None:
        """``"ansi"``: a text account of the last step."""
        if self.render_mode is None:
            return None
        if self._user is None:
            return "RetentionEnv: not reset yet\n"
        if self._last is None:
            return f"user {self._user}: life starts, {self.settings.sessions} sessions at most\n"
        slate, out = self._last
        cat = self.catalog
        lines = [
            f"user {self._user}, session {int(out.session[0]) + 1}, turn {int(out.turn[0]) + 1}: "
            + ", ".join(f"{f} {out.mind[i, 0]:.2f}" for i, f in enumerate(MINDSET_FIELDS))
        ]
        for p, (item, a) in enumerate(zip(slate.tolist(), out.action[0].tolist())):
            tags = ", ".join(cat.item_tags[item])
            lines.append(f"  {p + 1:>2}. {ACTIONS[a]:<5} {cat.titles[item]} [{tags}]")
        if out.words[0]:
            lines.append(f'  instruction: "{out.words[0]}"')
        if out.session_end[0]:
            back = (
                f"back in {out.gap_days[0]:.1f} days" if out.returned[0] else "does not come back"
            )
            lines.append(f"  session over (P(return) {out.p_return[0]:.2f}): {back}")
        return "\n".join(lines) + "\n"

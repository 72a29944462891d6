"""A Gymnasium environment: the agent is the recommender, the user is the parametric brain.

An episode is one session of one population user (its first: no satisfaction is carried in).
Each step is one turn of :func:`recoworld.study.simulate.simulate_arm`, with the agent in the
recommender's place:

1. the agent proposes a slate (the action: ``slate_size`` catalog rows);
2. the user goes through it item by item, its mindset moving, then reflects: writes an
   instruction? leaves? (``brain.decide``);
3-5. the turn is settled as in every loop (:class:`recoworld.study.settle.Ledger`), with the
   agent in the recommender's seat: it observes the feedback and hears the instruction;
6. when the session ends (the user left, or the turn budget is spent), it is settled: the
   return model decides whether the user comes back.

:attr:`RecoEnv.records` holds the episode's turn and session records, the very records a
study writes.

The brain is keyed by (brain seed, user uid, session, turn, position), so the same user, brain
seed and slates give exactly the events a study gives (a study's brain seed is ``cfg.seed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from recoworld.config import StudyConfig
from recoworld.env.view import TEXT_CHARSET, TEXT_MAX, text_of
from recoworld.errors import RecoWorldError
from recoworld.recommenders.base import Audience, SyncRecommender
from recoworld.records import ACTIONS, MINDSET_FIELDS, Record, SlateFeedback
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.settle import Ledger
from recoworld.users.brain import Mindset, ParametricBrain
from recoworld.world.model import World

SESSION = 0
"""Every episode is the user's first session (the study's session 0)."""

RESET_OPTIONS = ("brain_seed", "user")


class EnvError(RecoWorldError, ValueError):
    """An invalid argument, reset option or action given to :class:`RecoEnv`.

    A ``ValueError`` too, as Gymnasium code expects of a bad action."""


class _AgentSeat(SyncRecommender):
    """The agent in the recommender's seat of the turn's settlement: it keeps what the user
    did and asked for, for the next observation."""

    def __init__(self) -> None:
        self.feedback: SlateFeedback | None = None
        self.more, self.less, self.text = -1, -1, None

    def bind(self, audience: Audience) -> None:  # the env binds nothing: one user at a time
        pass

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        raise EnvError("RecoEnv: the agent's slate is the action given to step()")

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.feedback = feedback
        self.more, self.less, self.text = -1, -1, None

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        self.more, self.less, self.text = int(more_of[0]), int(less_of[0]), texts[0]


@dataclass(frozen=True, eq=False)
class _Step:
    """What the last step showed and did (for ``render``)."""

    turn: int
    slate: np.ndarray
    actions: list[str]
    watch: np.ndarray
    rating: np.ndarray
    mind: dict[str, float]
    instruction: str | None
    left: bool
    truncated: bool


class RecoEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """One user's session, slate by slate, over a study's catalog, fitted brain and population.

    Spaces (k = ``slate_size``, T = number of catalog tags):

    - action: ``MultiDiscrete([n_items] * k)``, a slate of catalog rows. Duplicates are allowed
      and shown as given: each position is a separate impression (a repeat is likely to bore).
    - observation (a ``Dict``; it never reveals the hidden mindset):
      ``clicked`` MultiBinary(k); ``watch`` Box[0, 1] (k,) watch fractions (0 for skips);
      ``rating`` Box[0, scale max] (k,), 0 where not rated; ``instruction_more`` /
      ``instruction_less`` MultiBinary(T), one-hot of the tags the user just asked for more /
      less of (zeros without an instruction); ``turn`` Box[0, max_turns] (1,), slates shown so
      far; ``user_taste`` Box[0, 1] (T,), the persona's taste (what a platform could know).
      After ``reset`` every feedback field is zero. With ``instruction_text``: ``instruction``,
      the words of that instruction ("" for none), for language agents.

    Reward: the sum of the slate's watch fractions, plus, on the last step of the episode,
    ``retention_weight * P(return)`` from the return model at the final satisfaction.
    ``terminated``: the user left. ``truncated``: ``max_turns`` slates shown and it stayed.

    ``reset(seed=..., options={"user": uid, "brain_seed": int})``: the user is drawn with
    ``np_random`` unless given; the brain seed is drawn too unless given (pass the study's
    ``cfg.seed`` to replay a study's user). Both draws are always made, in that order, so an
    option never shifts the other.
    """

    # render_fps means little for text, but Gymnasium's checker asks every env to declare it.
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        prep: Prepared,
        *,
        slate_size: int | None = None,
        max_turns: int | None = None,
        retention_weight: float = 1.0,
        render_mode: str | None = None,
        instruction_text: bool = False,
    ) -> None:
        sim = prep.cfg.simulation
        self.prep = prep
        self.catalog = prep.catalog
        self.slate_size = _positive_int(
            sim.slate_size if slate_size is None else slate_size, "slate_size"
        )
        self.max_turns = _positive_int(sim.turns if max_turns is None else max_turns, "max_turns")
        number = isinstance(retention_weight, (int, float, np.integer, np.floating))
        if isinstance(retention_weight, bool) or not number or not np.isfinite(retention_weight):
            raise EnvError(
                f"Expected a finite number, got {retention_weight!r} - at RecoEnv(retention_weight)"
            )
        self.retention_weight = float(retention_weight)
        if render_mode not in (None, *self.metadata["render_modes"]):
            modes = self.metadata["render_modes"]
            raise EnvError(
                f"Expected render_mode None or one of {modes}, got {render_mode!r} "
                "- at RecoEnv(render_mode)"
            )
        self.render_mode = render_mode

        self.n_items = self.catalog.n_items
        self.n_tags = int(self.catalog.tag_matrix.shape[1])
        k, t = self.slate_size, self.n_tags
        rating = prep.model.rating
        self._rating_max = float(rating.scale_max) if rating is not None else 1.0
        self.action_space = spaces.MultiDiscrete(np.full(k, self.n_items, dtype=np.int64))
        obs_spaces: dict[str, spaces.Space] = {
            "clicked": spaces.MultiBinary(k),
            "watch": spaces.Box(0.0, 1.0, (k,), np.float32),
            "rating": spaces.Box(0.0, self._rating_max, (k,), np.float32),
            "instruction_more": spaces.MultiBinary(t),
            "instruction_less": spaces.MultiBinary(t),
            "turn": spaces.Box(0.0, float(self.max_turns), (1,), np.float32),
            "user_taste": spaces.Box(0.0, 1.0, (t,), np.float32),
        }
        self.instruction_text = bool(instruction_text)
        if self.instruction_text:
            obs_spaces["instruction"] = spaces.Text(TEXT_MAX, min_length=0, charset=TEXT_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)
        self._uid_row = {int(u): r for r, u in enumerate(prep.population.uid.tolist())}
        self._brain: ParametricBrain | None = None
        self._mind: Mindset | None = None
        self._rows = np.zeros(1, np.int64)  # the brain's batch: this one user
        self._user: int | None = None
        self._turn = 0
        self._done = True
        self._last: _Step | None = None

    @classmethod
    def from_study(cls, cfg: StudyConfig, world: World, **options: Any) -> RecoEnv:
        """An environment over ``prepare(cfg, world)``; ``options`` go to the constructor."""
        return cls(prepare(cfg, world), **options)

    @property
    def records(self) -> list[Record]:
        """The current episode's turn records and, once it ended, its session record."""
        return list(getattr(self, "_records", []))

    @property
    def user(self) -> int | None:
        """The uid of the current episode's user (None before the first reset)."""
        return self._user

    # -- Gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        opts = dict(options or {})
        unknown = sorted(set(opts) - set(RESET_OPTIONS))
        if unknown:
            known = list(RESET_OPTIONS)
            raise EnvError(
                f"Expected reset options among {known}, got {unknown} - at RecoEnv.reset(options)"
            )
        pop = self.prep.population
        drawn_row = int(self.np_random.integers(len(pop)))
        drawn_seed = int(self.np_random.integers(2**63))
        row = self._row_of(opts["user"]) if "user" in opts else drawn_row
        brain_seed = _int_option(opts.get("brain_seed", drawn_seed), "brain_seed", "an integer")

        personas = pop.take(np.array([row]))
        self._brain = ParametricBrain(
            self.prep.model, self.prep.cfg.brain, self.catalog, personas, brain_seed
        )
        self._mind = self._brain.start_session(self._rows, SESSION)
        self._records: list[Record] = []
        self._seat = _AgentSeat()
        self._ledger = Ledger(
            arm=0,
            n=1,
            turns=self.max_turns,
            creator_mask=self.prep.creator_mask,
            tags=self.catalog.tags,
            observe=self._records.append,
        )
        self._ledger.start_session(self._rows, SESSION)
        self._user, self._turn, self._done, self._last = int(personas.uid[0]), 0, False, None
        obs = self._observation(
            np.zeros(self.slate_size, np.int8),
            np.zeros(self.slate_size, np.float32),
            np.zeros(self.slate_size, np.float32),
            -1,
            -1,
        )
        return obs, {"user": self._user, "brain_seed": brain_seed, **self._mindset()}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._brain is None or self._mind is None:
            raise ResetNeeded("RecoEnv.step: call reset() before step()")
        if self._done:
            raise ResetNeeded(
                f"RecoEnv.step: the episode of user {self._user} has ended; call reset()"
            )
        # 1. the agent's slate (an invalid one raises and uses up no turn)
        slates = self._check_action(action)[None, :]
        brain, mind, rows, turn = self._brain, self._mind, self._rows, self._turn
        # 2. the user goes through the slate item by item, then reflects
        decision = brain.decide(mind, rows, SESSION, turn, slates)
        # 3-5. settled, the agent in the recommender's seat
        seat, ledger = self._seat, self._ledger
        last = bool(ledger.settle_turn(seat, rows, SESSION, turn, slates, decision, mind)[0])
        fb, more, less, text = decision.feedback, seat.more, seat.less, seat.text
        self._turn = turn + 1
        terminated = bool(decision.leave[0])
        truncated = last and not terminated
        reward = float(fb.watch[0].sum(dtype=np.float64))
        actions = [ACTIONS[a] for a in fb.action[0].tolist()]
        info: dict[str, Any] = {
            "user": self._user,
            "turn": turn,
            "actions": actions,
            **self._mindset(),
        }
        info |= {"instruction": text, "left": terminated}
        if last:
            # 6. the session is over: the return model, as probability (reward) and draw (info)
            self._done = True
            p_return = float(brain.return_probability(ledger.final_sat[rows], rows)[0])
            ledger.settle_session(brain, rows, SESSION)
            session = self._records[-1]
            reward += self.retention_weight * p_return
            info |= {
                "p_return": p_return,
                "returned": bool(session.returned[0]),  # type: ignore[union-attr]
                "gap_days": float(session.gap_days[0]),  # type: ignore[union-attr]
            }
        rating = np.nan_to_num(fb.rating[0], nan=0.0)
        self._last = _Step(
            turn,
            slates[0].copy(),
            actions,
            fb.watch[0].copy(),
            fb.rating[0].copy(),
            self._mindset(),
            text,
            terminated,
            truncated,
        )
        obs = self._observation(
            fb.clicked[0].astype(np.int8), fb.watch[0], rating, more, less, text
        )
        return obs, reward, terminated, bool(truncated), info

    def render(self) -> str | None:
        """``"ansi"``: a text account of the last step (or of the reset)."""
        if self.render_mode is None:
            return None
        if self._user is None:
            return "RecoEnv: not reset yet\n"
        if self._last is None:
            return f"user {self._user}: session start, {self.max_turns} slates at most\n"
        s, cat = self._last, self.catalog
        mind = ", ".join(f"{k} {v:.2f}" for k, v in s.mind.items())
        lines = [f"user {self._user}, turn {s.turn + 1}/{self.max_turns}: {mind}"]
        for p, (item, act) in enumerate(zip(s.slate.tolist(), s.actions)):
            watch = f"{s.watch[p]:.2f}" if act != "skip" else "    "
            stars = f"rated {s.rating[p]:g}" if act == "rate" else ""
            tags = ", ".join(cat.item_tags[item])
            lines.append(
                f"  {p + 1:>2}. {act:<5} {watch} {cat.titles[item]} [{tags}] {stars}".rstrip()
            )
        if s.instruction:
            lines.append(f'  instruction: "{s.instruction}"')
        if s.left or s.truncated:
            lines.append("  the user left" if s.left else "  turn budget spent")
        return "\n".join(lines) + "\n"

    # -- helpers ---------------------------------------------------------------------------

    def _mindset(self) -> dict[str, float]:
        assert self._mind is not None
        return {f: float(getattr(self._mind, f)[0]) for f in MINDSET_FIELDS}

    def _observation(
        self,
        clicked: np.ndarray,
        watch: np.ndarray,
        rating: np.ndarray,
        more: int,
        less: int,
        text: str | None = None,
    ) -> dict[str, Any]:
        assert self._brain is not None
        one_hot = lambda j: (np.arange(self.n_tags) == j).astype(np.int8)  # noqa: E731  (j = -1: zeros)
        obs: dict[str, Any] = {
            "clicked": np.array(clicked, np.int8),
            "watch": np.clip(watch, 0.0, 1.0).astype(np.float32),
            "rating": np.clip(rating, 0.0, self._rating_max).astype(np.float32),
            "instruction_more": one_hot(more),
            "instruction_less": one_hot(less),
            "turn": np.array([self._turn], np.float32),
            "user_taste": np.clip(self._brain.p.taste[0], 0.0, 1.0).astype(np.float32),
        }
        if self.instruction_text:
            obs["instruction"] = text_of(text)
        return obs

    def _row_of(self, uid: Any) -> int:
        u = _int_option(uid, "user", "a population user uid")
        row = self._uid_row.get(u)
        if row is None:
            pop = self.prep.population.uid
            raise EnvError(
                f"Expected a population user uid "
                f"(one of {len(pop)}, {int(pop.min())}..{int(pop.max())}), "
                f"got {u} - at RecoEnv.reset(options['user'])"
            )
        return row

    def _check_action(self, action: Any) -> np.ndarray:
        k, n = self.slate_size, self.n_items
        expected = f"a slate of {k} catalog rows (integers in [0, {n - 1}], shape ({k},))"
        where = f"RecoEnv.step(action), user {self._user}, turn {self._turn}"
        try:
            a = np.asarray(action)
        except ValueError:
            raise EnvError(f"Expected {expected}, got {action!r} - at {where}") from None
        if a.shape != (k,):
            raise EnvError(f"Expected {expected}, got shape {a.shape} - at {where}")
        if not np.issubdtype(a.dtype, np.integer):
            raise EnvError(f"Expected {expected}, got dtype {a.dtype} - at {where}")
        bad = np.flatnonzero((a < 0) | (a >= n))
        if bad.size:
            p = int(bad[0])
            raise EnvError(
                f"Expected {expected}, got {int(a[p])} at slate position {p} - at {where}"
            )
        return a.astype(np.int64)


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise EnvError(f"Expected an integer >= 1, got {v!r} - at RecoEnv({name})")
    return int(v)


def _int_option(v: Any, name: str, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise EnvError(f"Expected {what}, got {v!r} - at RecoEnv.reset(options['{name}'])")
    return int(v)

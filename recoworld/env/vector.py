"""The native batched retention environment: thousands of lives per step, through Gymnasium's
vector API.

:class:`RetentionVectorEnv` is a ``gymnasium.vector.VectorEnv`` whose ``num_envs`` sub-
environments are rows of one :class:`recoworld.env.lives.Lives`: one vectorised brain decides
for every user at once (grouped only by (session, turn), the keys of its draws), not a Python
loop over single environments. Each sub-environment is exactly a
:class:`~recoworld.env.retention.RetentionEnv` with the same options: the same per-environment
seed and the same actions give the same observations, rewards and flags as Gymnasium's
``SyncVectorEnv`` of single environments (``tests/test_env_vector.py``).

Seeds: ``reset(seed=s)`` gives sub-environment i its own generator seeded with
``SeedSequence(s).generate_state(num_envs)[i]`` (a list of seeds sets them one by one); each
episode's user and key are drawn from that generator, as a single environment draws them.

Autoreset: ``AutoresetMode.NEXT_STEP``, Gymnasium's default: after a sub-environment's episode
ends, the next ``step`` ignores its action and resets it (reward 0, neither flag set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recoworld.env.lives import Lives
from recoworld.env.reco_env import EnvError
from recoworld.env.retention import Settings, positive_int
from recoworld.records import MINDSET_FIELDS
from recoworld.study.prepare import Prepared


class RetentionVectorEnv(VectorEnv):
    """``num_envs`` users' lives at once; options as :class:`RetentionEnv`'s.

    ``info`` after a step holds arrays over the sub-environments: ``user`` (population uid),
    ``session``, ``turn`` (of the slate just shown), ``engagement`` (its watch sum),
    ``left``, ``session_end``, ``p_return`` (NaN where no session ended), ``returned``,
    ``gap_days``, the mindset fields, and ``reset`` (the sub-environments reset by this step).
    ``instruction`` (object array, None where none) holds the words written after the slate;
    ``slate_action`` (int8 codes into ``records.ACTIONS``) and ``slate_watch`` (num_envs, k)
    what each user did with each item of its slate (the observation's feedback is cleared when
    a new session starts).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, prep: Prepared, *, num_envs: int, **options: Any) -> None:
        self.prep = prep
        self.num_envs = positive_int(num_envs, "RetentionVectorEnv", "num_envs")
        self.settings = s = Settings(prep, where="RetentionVectorEnv", **options)
        self.view = s.view(prep)
        self.lives = Lives(
            prep,
            self.view,
            n=self.num_envs,
            sessions=s.sessions,
            turns=s.turns,
            brain_seed=s.brain_seed,
            horizon_days=s.horizon,
        )
        self.single_action_space = s.action_space(prep.catalog.n_items)
        self.single_observation_space = self.view.space(prep.catalog.n_items, s.rating_max)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._rngs: list[np.random.Generator] | None = None
        self._ended = np.zeros(self.num_envs, bool)
        self._all = np.arange(self.num_envs)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Reset every sub-environment. ``seed``: an int (each gets a child seed), a list (one
        per sub-environment; None keeps its generator), or None. ``options``: ``user`` and
        ``key``, each an int array (num_envs,) (as a single environment's, per row)."""
        n = self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
            seeds: list[int | None] = [
                int(x) for x in np.random.SeedSequence(int(seed)).generate_state(n)
            ]
        elif seed is None:
            seeds = [None] * n
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise EnvError(
                    f"Expected {n} seeds (one per sub-environment), got {len(seeds)} "
                    "- at RetentionVectorEnv.reset(seed)"
                )
        if self._rngs is None:
            self._rngs = [seeding.np_random(sd)[0] for sd in seeds]
        else:
            for i, sd in enumerate(seeds):
                if sd is not None:
                    self._rngs[i] = seeding.np_random(sd)[0]
        opts = dict(options or {})
        per_row = [{k: np.asarray(v).ravel()[i] for k, v in opts.items()} for i in range(n)]
        self._restart(self._all, per_row)
        return self._obs(), {"user": self.prep.population.uid[self.lives.pop_rows].copy()}

    def _restart(self, rows: np.ndarray, options: list[dict[str, Any]] | None = None) -> None:
        assert self._rngs is not None
        s = self.settings
        drawn = [
            s.draw(
                self._rngs[i], options[j] if options else {}, "RetentionVectorEnv.reset(options)"
            )
            for j, i in enumerate(rows.tolist())
        ]
        pop_rows = np.array([d[0] for d in drawn], np.int64)
        keys = np.array([d[1] for d in drawn], np.int64)
        self.lives.restart(rows, pop_rows, keys)
        self._ended[rows] = False

    def step(
        self, actions: Any
    ) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._rngs is None:
            raise EnvError("RetentionVectorEnv.step: call reset() before step()")
        n, s = self.num_envs, self.settings
        a = s.check_action(
            actions, n, self.prep.catalog.n_items, "RetentionVectorEnv.step(actions)"
        )
        reward = np.zeros(n)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        info: dict[str, Any] = {
            "user": np.zeros(n, np.int64),
            "session": np.zeros(n, np.int64),
            "turn": np.zeros(n, np.int64),
            "engagement": np.zeros(n),
            "left": np.zeros(n, bool),
            "session_end": np.zeros(n, bool),
            "p_return": np.full(n, np.nan),
            "returned": np.zeros(n, bool),
            "gap_days": np.full(n, np.nan, np.float32),
            **{f: np.zeros(n, np.float32) for f in MINDSET_FIELDS},
            "instruction": np.full(n, None, object),
            "slate_action": np.zeros((n, s.k), np.int8),
            "slate_watch": np.zeros((n, s.k), np.float32),
            "reset": self._ended.copy(),
        }
        # Next-step autoreset: sub-environments whose episode ended last step start anew.
        self._restart(np.flatnonzero(self._ended))
        rows = np.flatnonzero(~info["reset"])
        if rows.size:
            picks = a[rows]
            slates = self.view.slates_of(rows, picks) if s.m else picks
            self.view.show(rows, slates, picks if s.m else None)
            out = self.lives.step(rows, slates)
            reward[rows] = s.rewards(out)
            terminated[rows], truncated[rows] = out.churned, out.truncated
            self._ended[rows] = out.churned | out.truncated
            for name, v in (
                ("session", out.session),
                ("turn", out.turn),
                ("engagement", out.watch),
                ("left", out.left),
                ("session_end", out.session_end),
                ("p_return", out.p_return),
                ("returned", out.returned),
                ("gap_days", out.gap_days),
                ("instruction", out.words),
            ):
                info[name][rows] = v
            for j, f in enumerate(MINDSET_FIELDS):
                info[f][rows] = out.mind[j]
            info["slate_action"][rows] = out.action
            info["slate_watch"][rows] = out.slate_watch
        info["user"][:] = self.prep.population.uid[self.lives.pop_rows]
        return self._obs(), reward, terminated, truncated, info

    def _obs(self) -> dict[str, Any]:
        lives = self.lives
        return self.view.observation(
            self._all,
            session=lives.session,
            turn=lives.turn,
            day=lives.ledger.day,
            rating_max=self.settings.rating_max,
        )

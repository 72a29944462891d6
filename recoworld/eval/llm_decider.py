"""The LLM brain as a fidelity :class:`~recoworld.eval.decider.Decider`.

Per user and candidate list (a discrimination list of protocol a):

1. the list is cut, in order, into slates of ``slate_size`` items (the study's
   ``[simulation] slate_size``);
2. each slate is put to the language model with the LLM brain's slate prompt and output schema
   (:mod:`recoworld.users.prompts`, :mod:`recoworld.users.answers`): shared instructions and
   tags, the persona, *no memory*
   (no earlier sessions, nothing earlier in this session), a neutral mindset (the start of a
   session: satisfaction 0.5, no fatigue or boredom, curiosity = the persona's variety-seeking),
   then the slate. Told the list's share (``base_rate`` given), the prompt says so before the
   slate: "about N of these L items are ones you would watch" — as the parametric decider is
   moved to the list's share; ratio-blind (``base_rate=None``) it says nothing;
3. an answer that does not decode gets one repair call (:meth:`LanguageBrain.ask`); still
   invalid, every item of that slate counts as a **skip** and the slate as a **fallback**
   (a ``fallback`` row in ``llm_calls``, and in :meth:`LLMDecider.stats`), never silently;
4. decisions "watch" and "click" are positives (the parametric decider's probability is that of
   a click, any engagement); "skip" is not.

All users' calls are in flight together: one coroutine per user (its slates one after the
other), at most ``llm.users_in_flight`` users at once. Seeds: :func:`request_seed` of (the
evaluation seed, user uid, ratio key, sample * slates + slate, "slate", attempt); call ids
``fidelity-<told|blind>/<uid>/<ratio key>/<turn>/slate/<attempt>``. The same user and list get
the same seeds told and blind (common random numbers).

``prob``: None with ``samples == 1`` (a decider that only samples: the harness reports its
``sampled`` decisions only). With ``samples = s > 1`` every slate is asked ``s`` times with
different seeds: ``prob`` is the share of positive answers (s times the calls), ``sampled`` the
first sample's decisions, and the harness also reports expected / mode / ranked decisions.

Ratings come from the same answers: where the model watched a candidate and rated it
(rated data), :meth:`LLMDecider.rate` returns that rating (``expected``: the mean over every
answer that rated the pair, ``sampled``: the first); pairs it never rated are NaN, and the
rating protocol scores the covered pairs only (with a reference on the same pairs).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from recoworld.config import BrainConfig, LLMConfig, StudyConfig
from recoworld.eval.decider import Decisions, Ratings
from recoworld.items.catalog import Catalog
from recoworld.llm.base import LanguageModel
from recoworld.llm.schemas import slack
from recoworld.llm.wrappers import CallLog, RecordingModel, call_totals
from recoworld.users.answers import slate_type
from recoworld.users.brain import ParametricBrain
from recoworld.users.choice import ChoiceModel
from recoworld.users.llm_brain import LanguageBrain
from recoworld.users.persona import Personas
from recoworld.users.prompts import slate_prompt

POSITIVE = ("click", "watch")
"""Answers that count as a positive decision."""


class LLMDecider:
    """The language model decides every candidate, slate by slate (see the module docstring).

    ``model``: a :class:`LanguageModel` the caller owns (tests: ScriptedModel), or None to open
    ``llm`` with :func:`recoworld.llm.factory.open_model` now (closed by :meth:`close`). Every
    call is recorded in :attr:`log`; :meth:`close` returns the ``llm_calls`` rows.
    """

    name = "llm"

    def __init__(
        self,
        llm: LLMConfig,
        catalog: Catalog,
        personas: Personas,
        choice_model: ChoiceModel,
        *,
        seed: int,
        slate_size: int,
        model: LanguageModel | None = None,
        samples: int = 1,
        tell_share: bool = True,
        positive: Sequence[str] = POSITIVE,
    ) -> None:
        if slate_size < 1 or samples < 1:
            raise ValueError(f"slate_size and samples must be >= 1, got {slate_size} and {samples}")
        self.llm, self.cat, self.p, self.seed = llm, catalog, personas, seed
        self.slate_size, self.samples, self.tell_share = slate_size, samples, tell_share
        self.positive = frozenset(positive)
        self._owned = model is None
        if model is None:
            from recoworld.llm.factory import open_model

            model = open_model(llm, seed=seed)
        self._tables: list[pa.Table] = []
        self.log = CallLog(sink=self._tables.append)
        self.model = RecordingModel(model, self.log)
        # The parametric brain only lends LanguageBrain its catalog, personas, rating flag and seed.
        self.brain = ParametricBrain(choice_model, BrainConfig(kind="llm"), catalog, personas, seed)
        self.rated = choice_model.rating is not None
        self._lang: dict[str, LanguageBrain] = {}
        self._ratings: dict[tuple[int, int], list[float]] = {}
        self._persona: dict[int, str] = {}
        self.answers = {"skip": 0, "click": 0, "watch": 0, "fallback_skip": 0}
        self.busy_s = 0.0
        """Wall seconds spent waiting on the model (decisions, and sessions run through
        :meth:`timed`)."""
        self._closed = False

    @classmethod
    def from_study(
        cls,
        cfg: StudyConfig,
        catalog: Catalog,
        personas: Personas,
        choice_model: ChoiceModel,
        seed: int,
        *,
        model: LanguageModel | None = None,
        samples: int = 1,
    ) -> LLMDecider:
        """The decider a study file configures: its ``[llm]`` table and ``[simulation]
        slate_size``."""
        if cfg.llm is None:
            raise ValueError(f"study {cfg.name!r} has no [llm] table")
        return cls(
            cfg.llm,
            catalog,
            personas,
            choice_model,
            seed=seed,
            slate_size=cfg.simulation.slate_size,
            model=model,
            samples=samples,
        )

    # ---- the Decider protocol -----------------------------------------------------------------

    def decide(
        self, users: np.ndarray, items: np.ndarray, *, base_rate: float | None, key: int
    ) -> Decisions:
        """Decisions on ``items`` (n, k) for ``users`` (n,): one list per row."""
        got = self.decide_lists(users, list(items), base_rate=base_rate, key=key)
        sampled = np.stack([d.sampled for d in got]) if got else np.zeros(items.shape, bool)
        prob = (
            None
            if self.samples == 1
            else (np.stack([d.prob for d in got]) if got else np.zeros(items.shape))
        )
        return Decisions(prob=prob, sampled=sampled)

    def decide_lists(
        self, users: np.ndarray, lists: Sequence[np.ndarray], *, base_rate: float | None, key: int
    ) -> list[Decisions]:
        """Decisions on ragged lists (``lists[j]`` for user ``users[j]``), every user in flight
        at once: what the harness calls, so that lists of different lengths share one batch.
        Runs its own event loop (``asyncio.run``): call it from synchronous code only."""
        return self.timed(self._decide_all(np.asarray(users), lists, base_rate, key))

    def timed(self, coro):  # noqa: ANN001, ANN201
        """Run ``coro`` to completion (``asyncio.run``), adding its wall time to :attr:`busy_s`."""
        t0 = time.perf_counter()
        try:
            return asyncio.run(coro)
        finally:
            self.busy_s += time.perf_counter() - t0

    def rate(self, users: np.ndarray, items: np.ndarray, *, key: int) -> Ratings | None:
        """The ratings the model gave (users[j], items[j]) in its slate answers; NaN where it
        gave none. None on data without ratings."""
        if not self.rated:
            return None
        expected = np.full(users.size, np.nan)
        sampled = np.full(users.size, np.nan)
        for j, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
            got = self._ratings.get((u, i))
            if got:
                expected[j], sampled[j] = float(np.mean(got)), got[0]
        return Ratings(expected=expected, sampled=sampled)

    # ---- the calls ----------------------------------------------------------------------------

    def _brain(self, arm: str) -> LanguageBrain:
        if arm not in self._lang:
            self._lang[arm] = LanguageBrain(
                self.brain, self.model, self.llm, self.log, arm=arm, turns=1
            )
        return self._lang[arm]

    async def _decide_all(
        self, users: np.ndarray, lists: Sequence[np.ndarray], base_rate: float | None, key: int
    ) -> list[Decisions]:
        lang = self._brain("fidelity-told" if base_rate is not None else "fidelity-blind")
        gate = asyncio.Semaphore(self.llm.users_in_flight)

        async def one(b: int, items: np.ndarray) -> Decisions:
            async with gate:
                return await self._one_list(lang, b, np.asarray(items, np.int64), base_rate, key)

        try:
            return list(await asyncio.gather(*(one(int(b), it) for b, it in zip(users, lists))))
        finally:
            self.log.flush()

    async def _one_list(
        self, lang: LanguageBrain, b: int, items: np.ndarray, base_rate: float | None, key: int
    ) -> Decisions:
        n, k = items.size, self.slate_size
        n_slates = max(1, math.ceil(n / k))
        pos = np.zeros((self.samples, n), bool)
        fc, ic = self.llm.feeling_chars, self.llm.instruction_chars
        for s in range(self.samples):
            for j in range(n_slates):
                slate = items[j * k : (j + 1) * k]
                t = slate_type(slate.size, self.cat.tags, self.rated, fc, ic)
                lenient = slate_type(slate.size, self.cat.tags, self.rated, slack(fc), slack(ic))
                prompt = self.prompt(b, slate, j, n_slates, n, base_rate)
                ans = await lang.ask(b, key, s * n_slates + j, "slate", prompt, t, lenient)
                if ans is None:  # still invalid after one repair: skips, counted as a fallback
                    self.answers["fallback_skip"] += slate.size
                    continue
                answers = ans.items  # type: ignore[attr-defined]
                for q, (item, it) in enumerate(zip(answers, slate.tolist())):
                    self.answers[item.decision] += 1
                    pos[s, j * k + q] = item.decision in self.positive
                    r = getattr(item, "rating", None)
                    if self.rated and r is not None and item.decision == "watch":
                        self._ratings.setdefault((b, it), []).append(float(r))
        prob = pos.mean(0) if self.samples > 1 else None
        return Decisions(prob=prob, sampled=pos[0])

    def prompt(
        self, b: int, slate: np.ndarray, j: int, n_slates: int, n: int, base_rate: float | None
    ) -> str:
        """The LLM brain's slate prompt for persona row ``b``: no memory, a neutral mindset;
        slate ``j`` of the list's ``n_slates``; the list's share of positives when told."""
        mind = np.array([0.5, 0.0, 0.0, float(self.p.diversity[b])])
        if b not in self._persona:
            self._persona[b] = self.p.describe(self.cat, b)
        note = ""
        if base_rate is not None and self.tell_share:
            m = max(1, round(base_rate * n))
            note = (
                "What you know about this list: the app shows you "
                f"{n} items in {n_slates} slate{'s' if n_slates > 1 else ''}; "
                f"about {m} of these {n} items are ones you would watch.\n"
            )
        return slate_prompt(
            self.cat,
            self._persona[b],
            [],
            [],
            session=0,
            turn=j,
            turns=n_slates,
            mind=mind,
            slate=slate,
            note=note,
        )

    # ---- results ------------------------------------------------------------------------------

    @property
    def fallbacks(self) -> int:
        return sum(lang.fallbacks for lang in self._lang.values())

    def stats(self) -> dict:
        """Calls by parse status and purpose, tokens, fallbacks, and the answers' decisions."""
        table = self.calls_table()
        calls = call_totals(pl.from_arrow(table)) if table is not None else {"calls": 0}
        return {
            "model": self.model.name,
            "slate_size": self.slate_size,
            "samples": self.samples,
            "tell_share": self.tell_share,
            "positive": sorted(self.positive),
            **calls,
            "fallbacks": self.fallbacks,
            "decisions": dict(self.answers),
            "rated_pairs": len(self._ratings),
            "seconds": self.busy_s,
            "calls_per_s": (calls["calls"] / self.busy_s) if self.busy_s > 0 else None,
        }

    def calls_table(self) -> pa.Table | None:
        """Every ``llm_calls`` row recorded so far (after :meth:`close`: all of them)."""
        self.log.flush()
        return pa.concat_tables(self._tables) if self._tables else None

    def close(self) -> None:
        """Close the model if this decider opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.log.flush()
        if self._owned:
            asyncio.run(self.model.close())

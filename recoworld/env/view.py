"""The agent's side of the table: what a recommender agent knows of each user, as observations.

:class:`AgentView` sits in the recommender's seat of the turn's settlement
(:class:`recoworld.study.settle.Ledger` calls its ``observe`` and ``instruct``) and keeps, per
user (batch row), only what a platform could know: the persona's taste and the traits its logs
give (activity, conformity, diversity, patience), the feedback on the last slate, the latest
instruction (codes and words) and, in the candidate-set mode, the session's candidate pool from
a base recommender with the items' features. It builds the observation of every environment
(single, vectorised, text) and of the policy adapter that evaluates a trained agent as a
recommender (:mod:`recoworld.eval.policy`): one definition of what an agent sees.

The candidate pool is the base recommender's (``mf``, ``popular`` or ``random`` source, as a
study's built-in recommender uses it): at the start of each session, the ``candidates`` best
items the user has not been shown in any earlier session (nor has in its real history), best
first, with the base score. Within the session the pool stays, and flags say which candidates
were shown and clicked in it. The base source learns as a study's does (it observes every
slate's feedback).

Rows can be restarted with new users (the vectorised environment's autoreset): a source keeps
per-user state behind its protocol (``bind`` a whole audience), so each group of rows restarted
together gets its own source bound to them (a *cohort*); no source's internals are touched.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from recoworld.items.catalog import Catalog
from recoworld.recommenders.base import Audience, Shown, Source, SyncRecommender, shown_items
from recoworld.recommenders.factory import base_source
from recoworld.records import SlateFeedback
from recoworld.users.persona import Personas

TRAITS = ("activity", "conformity", "diversity", "patience")
"""Persona traits in the observation: percentiles a platform computes from the user's logs."""
TEXT_CHARSET = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")
"""Characters of the instruction text observation (others are replaced by ``?``)."""
TEXT_MAX = 256
"""Longest instruction text in the observation (longer ones are cut)."""
DAY_BOUND = 1e5
"""The ``day`` observation's upper bound (clipped; lives are far shorter)."""
SCORE_BOUND = 1e6
"""Base scores are clipped to +-this (an exhausted pool pads with the lowest score - 1)."""


def text_of(words: str | None) -> str:
    """An instruction's words as the text observation holds them ("" for none)."""
    if not words:
        return ""
    ok = set(TEXT_CHARSET)
    return "".join(c if c in ok else "?" for c in words[:TEXT_MAX])


@dataclass(eq=False)
class _Cohort:
    """A base source bound to the users of the rows ``slots`` (restarted together), and what
    each of them was shown (or has in its real history), in the source's audience rows."""

    source: Source
    slots: np.ndarray  # view rows, in the source's audience order
    shown: Shown


class AgentView(SyncRecommender):
    """Per-user knowledge of a recommender agent over ``n`` rows, and its observations.

    ``candidates = 0``: the full-catalogue mode (the agent names catalog rows; no pool).
    ``candidates = N``: each session's pool of N candidates from the ``base`` source.
    ``text``: the observation carries the latest instruction's words (``instruction``).
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        slate_size: int,
        turns: int,
        sessions: int,
        candidates: int = 0,
        base: str = "mf",
        text: bool = False,
        seed: int = 0,
    ) -> None:
        self.catalog, self.k, self.turns, self.sessions = catalog, slate_size, turns, sessions
        self.m, self.base, self.text, self.seed = candidates, base, text, seed
        self.n_tags = int(catalog.tag_matrix.shape[1])
        self.dim = int(catalog.emb.shape[1])
        # the candidates' features, in the observation's dtypes and bounds, once
        f32 = np.float32
        self._emb = np.clip(catalog.emb, -1.0, 1.0).astype(f32)
        self._tags = catalog.tag_matrix.astype(f32)
        self._pop = np.clip(catalog.pop_percentile, 0.0, 1.0).astype(f32)
        self._cohorts: list[_Cohort] = []
        self.bind_rows(0)

    # -- rows ------------------------------------------------------------------------------

    def bind_rows(self, n: int) -> None:
        """Hold ``n`` empty rows (:meth:`restart` fills them with users)."""
        k, t, m = self.k, self.n_tags, self.m
        self.n = n
        self.taste = np.zeros((n, t), np.float32)
        self.traits = np.zeros((n, len(TRAITS)), np.float32)
        self.clicked = np.zeros((n, k), np.int8)
        self.watch = np.zeros((n, k), np.float32)
        self.rating = np.zeros((n, k), np.float32)
        self.more = np.full(n, -1, np.int64)
        self.less = np.full(n, -1, np.int64)
        self.words = np.full(n, None, object)
        self.pool = np.zeros((n, m), np.int64)
        self.pool_score = np.zeros((n, m), np.float32)
        self.pool_shown = np.zeros((n, m), np.int8)
        self.pool_clicked = np.zeros((n, m), np.int8)
        self._cohort_of = np.full(n, -1, np.int64)
        self._row_in = np.zeros(n, np.int64)
        self._cohorts = []

    def bind(self, audience: Audience) -> None:
        """The recommender protocol: serve ``audience`` (every row restarted)."""
        self.bind_rows(len(audience.personas))
        self.restart(np.arange(self.n), audience.personas)

    def restart(self, rows: np.ndarray, personas: Personas) -> None:
        """New users at ``rows`` (``personas`` row j for ``rows[j]``): everything known of the
        rows' earlier users is forgotten."""
        self.taste[rows] = np.clip(personas.taste, 0.0, 1.0)
        self.traits[rows] = np.stack([getattr(personas, f) for f in TRAITS], 1)
        self._clear_feedback(rows)
        self.more[rows], self.less[rows], self.words[rows] = -1, -1, None
        if not self.m:
            return
        self.pool_shown[rows] = 0
        self.pool_clicked[rows] = 0
        source = base_source(self.base)
        source.bind(
            Audience(
                personas=personas,
                catalog=self.catalog,
                seed=self.seed,
                treated=np.zeros(len(personas), bool),
            )
        )
        self._cohort_of[rows] = len(self._cohorts)
        self._row_in[rows] = np.arange(rows.size)
        shown = shown_items(personas, self.catalog.n_items)
        self._cohorts.append(_Cohort(source, np.asarray(rows, np.int64).copy(), shown))
        self._forget_empty_cohorts()

    def _forget_empty_cohorts(self) -> None:
        live = [c for j, c in enumerate(self._cohorts) if (self._cohort_of[c.slots] == j).any()]
        if len(live) == len(self._cohorts):
            return
        index = {id(c): j for j, c in enumerate(live)}
        remap = np.array([index.get(id(c), -1) for c in self._cohorts], np.int64)
        self._cohort_of = np.where(self._cohort_of >= 0, remap[self._cohort_of], -1)
        self._cohorts = live

    def _by_cohort(self, rows: np.ndarray):  # -> Iterator[tuple[_Cohort, np.ndarray, np.ndarray]]
        """(cohort, positions into ``rows``, the cohort's own rows) for each cohort in ``rows``."""
        of = self._cohort_of[rows]
        for j in np.unique(of):
            at = np.flatnonzero(of == j)
            yield self._cohorts[int(j)], at, self._row_in[rows[at]]

    def _clear_feedback(self, rows: np.ndarray) -> None:
        self.clicked[rows], self.watch[rows], self.rating[rows] = 0, 0.0, 0.0

    # -- the session and the slate ---------------------------------------------------------

    def start_session(self, rows: np.ndarray, session: int) -> None:
        """Users ``rows`` start session ``session``: a fresh candidate pool, no feedback yet."""
        self._clear_feedback(rows)
        if not self.m or rows.size == 0:
            return
        for cohort, at, own in self._by_cohort(rows):
            r = rows[at]
            cand, score = cohort.source.candidates(own, session, self.m, cohort.shown)
            finite = np.isfinite(score)
            low = np.where(finite, score, np.inf).min(1, keepdims=True)
            low = np.where(np.isfinite(low), low - 1.0, 0.0)
            score = np.clip(np.where(finite, score, low), -SCORE_BOUND, SCORE_BOUND)
            self.pool[r], self.pool_score[r] = cand, score.astype(np.float32)
        self.pool_shown[rows] = 0
        self.pool_clicked[rows] = 0

    def show(self, rows: np.ndarray, slates: np.ndarray, picks: np.ndarray | None = None) -> None:
        """Users ``rows`` are shown ``slates`` (catalog rows); ``picks``: the candidate
        positions they came from (candidate mode)."""
        if not self.m:
            return
        for cohort, at, own in self._by_cohort(rows):
            cohort.shown.add(own, slates[at])
        if picks is not None:
            self.pool_shown[np.repeat(rows, picks.shape[1]), picks.ravel()] = 1

    def slates_of(self, rows: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """Catalog rows of candidate positions ``picks`` (n, k) of users ``rows``."""
        return np.take_along_axis(self.pool[rows], picks, axis=1)

    # -- the recommender's seat (the settlement calls these) -------------------------------

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        raise NotImplementedError("the agent's slate is the environment's action")

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        clicked = feedback.clicked
        self.clicked[idx] = clicked
        self.watch[idx] = np.clip(feedback.watch, 0.0, 1.0)
        self.rating[idx] = np.nan_to_num(feedback.rating, nan=0.0)
        self.more[idx], self.less[idx], self.words[idx] = -1, -1, None
        if not self.m:
            return
        # candidates clicked this session: any pool position whose item was clicked
        hit = (self.pool[idx][:, :, None] == np.where(clicked, slates, -1)[:, None, :]).any(2)
        self.pool_clicked[idx] |= hit.astype(np.int8)
        for cohort, at, own in self._by_cohort(idx):
            fb = SlateFeedback(
                action=feedback.action[at],
                watch=feedback.watch[at],
                rating=feedback.rating[at],
                mind=feedback.mind[:, at],
            )
            cohort.source.observe(own, slates[at], fb)

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        self.more[idx], self.less[idx] = more_of, less_of
        for j, row in enumerate(idx.tolist()):
            self.words[row] = texts[j]

    # -- observations ----------------------------------------------------------------------

    def space(self, n_items: int, rating_max: float) -> spaces.Dict:
        """The observation space of one user."""
        k, t, m, f32 = self.k, self.n_tags, self.m, np.float32
        d: dict[str, spaces.Space] = {
            "clicked": spaces.MultiBinary(k),
            "watch": spaces.Box(0.0, 1.0, (k,), f32),
            "rating": spaces.Box(0.0, rating_max, (k,), f32),
            "instruction_more": spaces.MultiBinary(t),
            "instruction_less": spaces.MultiBinary(t),
            "turn": spaces.Box(0.0, float(self.turns), (1,), f32),
            "session": spaces.Box(0.0, float(self.sessions), (1,), f32),
            "day": spaces.Box(0.0, DAY_BOUND, (1,), f32),
            "user_taste": spaces.Box(0.0, 1.0, (t,), f32),
            "user_traits": spaces.Box(0.0, 1.0, (len(TRAITS),), f32),
        }
        if m:
            d |= {
                "candidates": spaces.Box(0, n_items - 1, (m,), np.int64),
                "cand_score": spaces.Box(-SCORE_BOUND, SCORE_BOUND, (m,), f32),
                "cand_popularity": spaces.Box(0.0, 1.0, (m,), f32),
                "cand_embedding": spaces.Box(-1.0, 1.0, (m, self.dim), f32),
                "cand_tags": spaces.Box(0.0, 1.0, (m, t), f32),
                "cand_shown": spaces.MultiBinary(m),
                "cand_clicked": spaces.MultiBinary(m),
            }
        if self.text:
            d["instruction"] = spaces.Text(TEXT_MAX, min_length=0, charset=TEXT_CHARSET)
        return spaces.Dict(d)

    def observation(
        self,
        rows: np.ndarray,
        *,
        session: np.ndarray,
        turn: np.ndarray,
        day: np.ndarray,
        rating_max: float,
    ) -> dict[str, object]:
        """The observations of users ``rows``, batched (leading axis: ``rows``); the text, a
        tuple of strings. ``session``, ``turn``, ``day``: where each user is."""
        f32 = np.float32
        n, t = rows.size, self.n_tags
        more, less = self.more[rows], self.less[rows]
        tag_ix = np.arange(t)[None, :]
        obs: dict[str, object] = {
            "clicked": self.clicked[rows].copy(),
            "watch": self.watch[rows].copy(),
            "rating": np.clip(self.rating[rows], 0.0, rating_max).astype(f32),
            "instruction_more": (tag_ix == more[:, None]).astype(np.int8),
            "instruction_less": (tag_ix == less[:, None]).astype(np.int8),
            "turn": np.asarray(turn, f32).reshape(n, 1),
            "session": np.asarray(session, f32).reshape(n, 1),
            "day": np.clip(np.asarray(day, f32), 0.0, DAY_BOUND).reshape(n, 1),
            "user_taste": self.taste[rows].copy(),
            "user_traits": np.clip(self.traits[rows], 0.0, 1.0).astype(f32),
        }
        if self.m:
            pool = self.pool[rows]
            obs |= {
                "candidates": pool,
                "cand_score": self.pool_score[rows].copy(),
                "cand_popularity": self._pop[pool],
                "cand_embedding": self._emb[pool],
                "cand_tags": self._tags[pool],
                "cand_shown": self.pool_shown[rows].copy(),
                "cand_clicked": self.pool_clicked[rows].copy(),
            }
        if self.text:
            obs["instruction"] = tuple(text_of(w) for w in self.words[rows].tolist())
        return obs


def first(obs: dict[str, object]) -> dict[str, object]:
    """Row 0 of a batched observation: one user's."""
    return {k: v[0] for k, v in obs.items()}  # type: ignore[index]

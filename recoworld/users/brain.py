"""The parametric brain: vectorised over users, item by item along a slate.

Per slate position p (a loop of k steps; every step is whole-array work over the users):
1. click logit = fitted static logit - position bias - fatigue + curiosity x novelty
                 - boredom x repetition;
2. click ~ Bernoulli(sigmoid(logit)); a click's watch fraction is a logit-normal around the
   item's appeal; under ``watch_threshold`` it is a bounce ("click"), else "watch"; a watcher
   rates with ``rate_probability`` ("rate"), the rating drawn from the fitted rating model;
3. mindset update: satisfaction moves toward the item's experience relative to the user's
   expected hit rate; fatigue grows with every item and with watching; boredom moves toward
   the item's overlap with what was consumed this session; curiosity toward
   diversity x (1 - boredom).
After the slate the user may write a reflective instruction (satisfaction under
``instruct_below``) and may leave (logit in satisfaction, fatigue, patience); an instruction
halves the chance of leaving: the user gives the recommender a chance. At the end of a session
the return model decides whether, and after how many days, the user comes back.

Every random draw is keyed by (seed, stream, user uid, session, turn, position), so a user's
behaviour does not depend on batch, shard or the other users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld.config import BrainConfig
from recoworld.items.catalog import Catalog
from recoworld.rng import Stream, normals, uniforms
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import simulate_ratings
from recoworld.users.persona import Personas

ACTIONS = ("skip", "click", "watch", "rate")
SKIP, CLICK, WATCH, RATE = range(4)
MINDSET_FIELDS = ("satisfaction", "fatigue", "boredom", "curiosity")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(eq=False)
class Mindset:
    """Per-session state of n users (arrays, updated in place by the brain)."""

    satisfaction: np.ndarray
    fatigue: np.ndarray
    boredom: np.ndarray
    curiosity: np.ndarray
    profile: np.ndarray  # (n, n_tags) what was consumed this session, decayed
    last_instruct_turn: np.ndarray  # int, -9 if none this session

    def take(self, keep: np.ndarray) -> "Mindset":
        return Mindset(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


@dataclass(frozen=True, eq=False)
class SlateFeedback:
    """What n users did with their (n, k) slates."""

    action: np.ndarray  # (n, k) int8 codes into ACTIONS
    watch: np.ndarray  # (n, k) float32, 0 for skips
    rating: np.ndarray  # (n, k) float32, NaN where not rated
    mind: np.ndarray  # (4, n, k) float32 mindset after each item, in MINDSET_FIELDS order

    @property
    def clicked(self) -> np.ndarray:
        return self.action != SKIP


@dataclass(frozen=True, eq=False)
class Instructions:
    """Reflective instructions of the users that wrote one (rows into the batch)."""

    rows: np.ndarray  # batch rows that instructed
    more_of: np.ndarray  # tag index wanted more of
    less_of: np.ndarray  # tag index wanted less of, -1 if none stands out

    def texts(self, tags: tuple[str, ...]) -> list[str]:
        """The text rendering of each instruction."""
        out = []
        for m, l in zip(self.more_of.tolist(), self.less_of.tolist()):
            if l >= 0:
                out.append(f"Too much {tags[l]} lately. Show me more {tags[m]}.")
            else:
                out.append(f"Nothing here grabs me. Something different: more {tags[m]}, please.")
        return out


@dataclass(frozen=True, eq=False)
class TurnOutcome:
    leave: np.ndarray  # (n,) bool
    instructions: Instructions


@dataclass(frozen=True, eq=False)
class ReturnDecision:
    returns: np.ndarray  # (n,) bool
    gap_days: np.ndarray  # (n,) float32, inf where not returning


class ParametricBrain:
    """Decisions of many users at once. Stateless apart from its fitted model and config:
    the per-user state lives in :class:`Mindset` and is passed in."""

    def __init__(self, model: ChoiceModel, cfg: BrainConfig, catalog: Catalog, personas: Personas, seed: int) -> None:
        self.model, self.cfg, self.cat, self.p, self.seed = model, cfg, catalog, personas, seed
        self._coef = np.asarray(model.coef, dtype=np.float32)
        # The user's expected hit rate: what satisfaction is measured against.
        self._expect = np.clip(model.base_rate * (0.5 + personas.activity), 0.02, 0.5).astype(np.float32)

    def start_session(self, rows: np.ndarray, session: int, carry: np.ndarray | None = None) -> Mindset:
        """Fresh mindsets for ``rows``; ``carry`` = last session's final satisfaction (or None)."""
        n = rows.size
        sat = np.full(n, 0.5, np.float32)
        if carry is not None:
            sat += (0.3 * (carry - 0.5)).astype(np.float32)
        sat += 0.05 * normals(self.seed, Stream.MINDSET, self.p.uid[rows], session).astype(np.float32)
        return Mindset(
            satisfaction=np.clip(sat, 0.05, 0.95),
            fatigue=np.zeros(n, np.float32),
            boredom=np.zeros(n, np.float32),
            curiosity=self.p.diversity[rows].astype(np.float32).copy(),
            profile=np.zeros((n, self.cat.tag_matrix.shape[1]), np.float32),
            last_instruct_turn=np.full(n, -9, np.int32),
        )

    def react(self, mind: Mindset, rows: np.ndarray, session: int, turn: int, slates: np.ndarray) -> SlateFeedback:
        """Users ``rows`` go through their slates item by item; ``mind`` is updated in place."""
        cfg, cat = self.cfg, self.cat
        n, k = slates.shape
        uid = self.p.uid[rows][:, None]
        pos = np.arange(k)[None, :]
        static = self.model.static_logit(self.p, rows, slates, cat)
        aff = self.model.affinity(self.p, rows, slates, cat)
        tags = cat.tag_matrix[slates]  # (n, k, T)
        tag_norm = np.sqrt((tags * tags).sum(-1)) + 1e-6
        taste_norm = np.sqrt((self.p.taste[rows] ** 2).sum(-1))[:, None] + 1e-6
        novelty = 1.0 - np.einsum("nt,nkt->nk", self.p.taste[rows], tags) / (taste_norm * tag_norm)
        u_click = uniforms(self.seed, Stream.CLICK, uid, session, turn, pos)
        z_watch = normals(self.seed, Stream.WATCH, uid, session, turn, pos)
        u_rate = uniforms(self.seed, Stream.RATE, uid, session, turn, pos)
        z_rating = normals(self.seed, Stream.RATING, uid, session, turn, pos)
        ratings_if = (
            simulate_ratings(self.model.rating, self.p.mean_rating[rows][:, None], slates, aff, z_rating)
            if self.model.rating is not None
            else np.full((n, k), np.nan, np.float32)
        )
        lo = self.model.rating.scale_min if self.model.rating else 0.0
        span = (self.model.rating.scale_max - lo) if self.model.rating else 1.0

        action = np.zeros((n, k), np.int8)
        watch = np.zeros((n, k), np.float32)
        rating = np.full((n, k), np.nan, np.float32)
        mind_log = np.empty((4, n, k), np.float32)
        for p in range(k):
            # 1. the click logit with position bias and the current mindset
            pnorm = np.sqrt((mind.profile * mind.profile).sum(-1)) + 1e-6
            rep = (mind.profile * tags[:, p]).sum(-1) / (pnorm * tag_norm[:, p])
            logit = (
                static[:, p]
                - cfg.position_bias * np.log2(1.0 + p)
                - cfg.fatigue_weight * mind.fatigue
                - cfg.boredom_weight * mind.boredom * rep
                + cfg.curiosity_weight * mind.curiosity * (novelty[:, p] - 0.5)
            )
            # 2. decisions
            click = u_click[:, p] < _sigmoid(logit)
            appeal = self.model.watch_intercept + self.model.watch_slope * (logit - self._coef[0])
            wf = np.where(click, _sigmoid(appeal + 0.8 * z_watch[:, p]), 0.0).astype(np.float32)
            watched = click & (wf >= cfg.watch_threshold)
            rated = watched & (u_rate[:, p] < cfg.rate_probability) & ~np.isnan(ratings_if[:, p])
            action[:, p] = np.where(rated, RATE, np.where(watched, WATCH, np.where(click, CLICK, SKIP)))
            watch[:, p] = wf
            rating[:, p] = np.where(rated, ratings_if[:, p], np.nan)
            # 3. mindset update
            liked = np.where(rated, (rating[:, p] - lo) / span, wf)
            experience = np.where(watched, liked, 0.0)
            mind.satisfaction += cfg.satisfaction_rate * np.where(
                click, experience - self._expect[rows], -self._expect[rows] * 0.5
            ).astype(np.float32)
            np.clip(mind.satisfaction, 0.0, 1.0, out=mind.satisfaction)
            mind.fatigue += cfg.fatigue_per_item + cfg.fatigue_per_watch * wf
            weight = np.where(click, 1.0, 0.3)
            mind.boredom += (cfg.boredom_rate * weight * (rep - mind.boredom)).astype(np.float32)
            mind.curiosity += (0.2 * (self.p.diversity[rows] * (1.0 - mind.boredom) - mind.curiosity)).astype(np.float32)
            mind.profile = np.where(click[:, None], 0.7 * mind.profile + 0.3 * tags[:, p], mind.profile)
            mind_log[0, :, p] = mind.satisfaction
            mind_log[1, :, p] = mind.fatigue
            mind_log[2, :, p] = mind.boredom
            mind_log[3, :, p] = mind.curiosity
        return SlateFeedback(action=action, watch=watch, rating=rating, mind=mind_log)

    def after_slate(
        self, mind: Mindset, rows: np.ndarray, session: int, turn: int, slates: np.ndarray, fb: SlateFeedback
    ) -> TurnOutcome:
        """Instruct? Leave? (``mind.last_instruct_turn`` is updated in place.)"""
        cfg = self.cfg
        uid = self.p.uid[rows]
        # Reflection: under the threshold, at most once every two turns.
        u_ins = uniforms(self.seed, Stream.INSTRUCT, uid, session, turn)
        instruct = (
            (mind.satisfaction < cfg.instruct_below)
            & (u_ins < cfg.instruct_probability)
            & (turn - mind.last_instruct_turn >= 2)
        )
        ir = np.flatnonzero(instruct)
        tags = self.cat.tag_matrix[slates[ir]]  # (m, k, T)
        shown = tags.mean(1)
        skipped = (tags * (~fb.clicked[ir])[:, :, None]).sum(1) / fb.action.shape[1]
        taste = self.p.taste[rows[ir]]
        more = np.argmax(taste - shown, axis=1)
        surplus = skipped - taste
        less = np.where(surplus.max(1) > 0.15, np.argmax(surplus, axis=1), -1)
        less = np.where(less == more, -1, less)
        mind.last_instruct_turn[ir] = turn
        # Leaving.
        logit = (
            cfg.leave_bias
            + cfg.leave_satisfaction * (0.5 - mind.satisfaction)
            + cfg.leave_fatigue * mind.fatigue
            - cfg.leave_patience * (self.p.patience[rows] - 0.5)
        )
        p_leave = _sigmoid(logit) * np.where(instruct, 0.5, 1.0)
        leave = uniforms(self.seed, Stream.LEAVE, uid, session, turn) < p_leave
        return TurnOutcome(leave=leave, instructions=Instructions(rows=ir, more_of=more, less_of=less))

    def end_session(self, satisfaction: np.ndarray, rows: np.ndarray, session: int) -> ReturnDecision:
        """The return model: given final ``satisfaction``, does each user come back, and when."""
        r, cfg = self.model.returns, self.cfg
        uid = self.p.uid[rows]
        logit = (
            r.base_logit
            + cfg.return_satisfaction * (satisfaction - 0.5)
            + cfg.return_activity * (self.p.activity[rows] - 0.5)
        )
        back = uniforms(self.seed, Stream.RETURN, uid, session) < _sigmoid(logit)
        mean_gap = r.mean_gap_days * (1.5 - self.p.activity[rows])
        gap = -np.log1p(-uniforms(self.seed, Stream.RETURN_GAP, uid, session)) * mean_gap
        return ReturnDecision(returns=back, gap_days=np.where(back, gap, np.inf).astype(np.float32))

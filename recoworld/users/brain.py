"""The parametric brain: vectorised over users, item by item along a slate.

Per slate position p (a loop of k steps; every step is whole-array work over the users):
1. click logit = fitted static logit - position bias - fatigue + curiosity x novelty
                 + (fitted session repetition - boredom) x repetition
                 - satiation (an item consumed before: a lasting part
                 from the world's repeat share, a short-term part that fades over days;
                 :mod:`recoworld.users.satiation`);
2. click ~ Bernoulli(sigmoid(logit)); a click's watch fraction is a logit-normal around the
   item's appeal; under ``watch_threshold`` it is a bounce ("click"), else "watch"; a watcher
   rates with ``rate_probability`` ("rate"), the rating drawn from the fitted rating model;
3. mindset update: satisfaction moves toward the item's experience relative to the user's
   expected hit rate; fatigue grows with every item and with watching; boredom moves toward
   the item's overlap with what was consumed this session; curiosity toward
   diversity x (1 - boredom).
After the slate the user may write a reflective instruction (satisfaction under
``instruct_below``) and may leave (logit in satisfaction, fatigue, patience, plus the fitted
``leave_offset``); an instruction halves the chance of leaving: the user gives the recommender a
chance. Where the fit found the logs' sittings shorter than these dynamics give, a user has had
enough after each item it consumes with the fitted chance ``enough``: it sees nothing more of
the slate and leaves (``recoworld.study.sittings``). At the end of a session
the return model decides whether, and after how many days, the user comes back.

Every random draw is keyed by the user's uid, so a user's behaviour does not depend on batch,
shard or the other users. The draws of an item's decision (click, watch, rate) are keyed by
(user, session, item): shown an item again in the same session, a user decides about it as it
did (its mindset having moved), rather than drawing a fresh chance; its rating of an item is
keyed by (user, item). Leaving, instructing and returning are keyed by (user, session, turn);
having had enough by (user, session, turn, position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld.config import BrainConfig
from recoworld.items.catalog import Catalog
from recoworld.records import (
    ACTIONS,
    CLICK,
    MINDSET_FIELDS,
    RATE,
    SKIP,
    WATCH,
    Instructions,
    SlateFeedback,
    TurnDecision,
)
from recoworld.rng import Stream, normals, uniform_pair, uniforms
from recoworld.users.choice import FEATURES, ChoiceModel
from recoworld.users.fit import simulate_ratings
from recoworld.users.neighbours import NeighbourTable
from recoworld.users.persona import Personas
from recoworld.users.satiation import ItemMemory, SlateMemory, lasting_penalty

__all__ = [
    "ACTIONS",
    "CLICK",
    "MINDSET_FIELDS",
    "RATE",
    "SKIP",
    "WATCH",
    "Instructions",
    "Mindset",
    "ParametricBrain",
    "ReturnDecision",
    "SlateFeedback",
    "TurnDecision",
]


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
    day: np.ndarray  # float32, the day the session started (the calendar of the run)

    def take(self, keep: np.ndarray) -> Mindset:
        return Mindset(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


@dataclass(frozen=True, eq=False)
class ReturnDecision:
    returns: np.ndarray  # (n,) bool
    gap_days: np.ndarray  # (n,) float32, inf where not returning


NEIGHBOURHOOD = FEATURES.index("neighbourhood")


class ParametricBrain:
    """Decisions of many users at once. Stateless apart from its fitted model and config:
    the per-user state lives in :class:`Mindset` and is passed in."""

    def __init__(
        self,
        model: ChoiceModel,
        cfg: BrainConfig,
        catalog: Catalog,
        personas: Personas,
        seed: int,
        memory: ItemMemory | None = None,
    ) -> None:
        """``memory``: an item memory of these personas to share (built here by default: it
        indexes their real histories)."""
        self.model, self.cfg, self.cat, self.p, self.seed = model, cfg, catalog, personas, seed
        self._coef = model.coefficients()
        # The user's expected hit rate: what satisfaction is measured against.
        self._expect = np.clip(model.base_rate * (0.5 + personas.activity), 0.02, 0.5).astype(
            np.float32
        )
        self._tag_norm = (np.sqrt((catalog.tag_matrix**2).sum(1)) + 1e-6).astype(np.float32)
        self._taste_norm = (np.sqrt((personas.taste**2).sum(1)) + 1e-6).astype(np.float32)
        self.memory = (
            ItemMemory(personas, catalog.n_items, lasting_penalty(model.repeat_share))
            if memory is None
            else memory
        )
        # built once for the batch; none where the fitted model gives the feature no weight
        # (a fit made before it existed)
        self._neighbours = NeighbourTable(
            catalog.neighbours if self._coef[NEIGHBOURHOOD] else None,
            personas.history,
            personas.template,
        )

    def start_session(
        self,
        rows: np.ndarray,
        session: int,
        carry: np.ndarray | None = None,
        day: np.ndarray | None = None,
    ) -> Mindset:
        """Fresh mindsets for ``rows``; ``carry`` = last session's final satisfaction (or None);
        ``day`` = the day each session starts (None: day 0)."""
        n = rows.size
        sat = np.full(n, 0.5, np.float32)
        if carry is not None:
            sat += (0.3 * (carry - 0.5)).astype(np.float32)
        sat += 0.05 * normals(self.seed, Stream.MINDSET, self.p.uid[rows], session).astype(
            np.float32
        )
        return Mindset(
            satisfaction=np.clip(sat, 0.05, 0.95),
            fatigue=np.zeros(n, np.float32),
            boredom=np.zeros(n, np.float32),
            curiosity=self.p.diversity[rows].astype(np.float32).copy(),
            profile=np.zeros((n, self.cat.tag_matrix.shape[1]), np.float32),
            last_instruct_turn=np.full(n, -9, np.int32),
            day=np.zeros(n, np.float32) if day is None else day.astype(np.float32),
        )

    def react(
        self, mind: Mindset, rows: np.ndarray, session: int, turn: int, slates: np.ndarray
    ) -> SlateFeedback:
        """Users ``rows`` go through their slates item by item; ``mind`` is updated in place."""
        cfg, cat = self.cfg, self.cat
        n, k = slates.shape
        uid = self.p.uid[rows][:, None]
        static, aff = self.model.static_logit(self.p, rows, slates, cat, table=self._neighbours)
        tags = cat.tag_matrix[slates]  # (n, k, T)
        tag_norm = self._tag_norm[slates]
        taste = self.p.taste[rows]
        novelty = 1.0 - np.einsum("nt,nkt->nk", taste, tags) / (
            self._taste_norm[rows][:, None] * tag_norm
        )
        u_click, u_rate = uniform_pair(self.seed, Stream.CLICK, uid, session, slates)
        z_watch = normals(self.seed, Stream.WATCH, uid, session, slates)
        z_rating = normals(self.seed, Stream.RATING, uid, slates)
        ratings_if = (
            simulate_ratings(
                self.model.rating,
                self.p.mean_rating[rows][:, None],
                slates,
                aff,
                z_rating,
                self.p.n_history[rows][:, None],
            )
            if self.model.rating is not None
            else np.full((n, k), np.nan, np.float32)
        )
        lo = self.model.rating.scale_min if self.model.rating else 0.0
        span = (self.model.rating.scale_max - lo) if self.model.rating else 1.0
        # Everything that does not depend on the evolving mindset, for all positions at once.
        f32 = np.float32
        base = (static - (cfg.position_bias * np.log2(1.0 + np.arange(k)))[None, :]).astype(f32)
        base += np.where(self.memory.in_history(rows, slates), self.memory.lasting, f32(0.0))
        nov = (cfg.curiosity_weight * (novelty - 0.5)).astype(f32)
        u_click = u_click.astype(f32)
        noise_w = (0.8 * z_watch).astype(f32)
        may_rate = (u_rate < cfg.rate_probability) & ~np.isnan(ratings_if)
        liked = np.where(may_rate, (ratings_if - lo) / span, np.nan).astype(f32)
        center = self.model.appeal_center
        w0 = f32(
            self.model.watch_intercept
            - self.model.watch_slope * (self._coef[0] if center is None else center)
        )
        w1 = f32(self.model.watch_slope)
        step = _MindStep(self, mind, rows, slates)
        lingering = f32(self.model.session_repetition)

        click = np.zeros((n, k), bool)
        watched = np.zeros((n, k), bool)
        watch = np.zeros((n, k), f32)
        done = self.enough_draws(rows, session, turn, k)  # (n, k) or None: had enough after p
        gone = np.zeros(n, bool)  # had enough earlier in the slate: sees nothing more
        for p in range(k):
            # 1. the click logit: position bias, fatigue, boredom with repeats, curiosity,
            #    satiation with items clicked before
            rep = step.repetition(p)
            logit = (
                base[:, p]
                - cfg.fatigue_weight * mind.fatigue
                + (lingering - cfg.boredom_weight * mind.boredom) * rep
                - step.satiation(p)
            )
            logit += mind.curiosity * nov[:, p]
            # 2. decisions: click, watch fraction, bounce, rate
            c = (u_click[:, p] < _sigmoid(logit)) & ~gone
            wf = np.where(c, _sigmoid(w0 + w1 * logit + noise_w[:, p]), f32(0.0))
            w = c & (wf >= cfg.watch_threshold)
            click[:, p], watched[:, p], watch[:, p] = c, w, wf
            # 3. the mindset moves (not for a user gone from the slate)
            step.update(p, rep, c, w, wf, liked[:, p], None if done is None else ~gone)
            if done is not None:
                gone |= w & done[:, p]
        rated = watched & may_rate
        action = (click.astype(np.int8) + watched + rated).astype(np.int8)  # SKIP < ... < RATE
        rating = np.where(rated, ratings_if, np.nan).astype(f32)
        return SlateFeedback(action=action, watch=watch, rating=rating, mind=step.log)

    def apply_choices(
        self,
        mind: Mindset,
        rows: np.ndarray,
        slates: np.ndarray,
        action: np.ndarray,
        watch: np.ndarray,
        rating: np.ndarray,
    ) -> np.ndarray:
        """Move ``mind`` item by item after choices made elsewhere (a language model's), with
        the same dynamics as :meth:`react`; returns the (4, n, k) mindset log."""
        step = _MindStep(self, mind, rows, slates)
        r = self.model.rating
        lo, span = (r.scale_min, r.scale_max - r.scale_min) if r is not None else (0.0, 1.0)
        liked = ((rating - lo) / span).astype(np.float32)  # NaN where not rated
        for p in range(slates.shape[1]):
            c, w = action[:, p] != SKIP, action[:, p] >= WATCH
            step.update(p, step.repetition(p), c, w, watch[:, p], liked[:, p])
        return step.log

    def decide(
        self, mind: Mindset, rows: np.ndarray, session: int, turn: int, slates: np.ndarray
    ) -> TurnDecision:
        """The fitted model's decide step: :meth:`react`, then :meth:`after_slate`."""
        fb = self.react(mind, rows, session, turn, slates)
        return self.after_slate(mind, rows, session, turn, slates, fb)

    def after_slate(
        self,
        mind: Mindset,
        rows: np.ndarray,
        session: int,
        turn: int,
        slates: np.ndarray,
        fb: SlateFeedback,
    ) -> TurnDecision:
        """Leave? Instruct? (after ``fb``, what the users did with the slate)
        (``mind.last_instruct_turn`` is updated in place.) In a world without tags
        there is nothing to ask for by name: nobody instructs."""
        cfg = self.cfg
        uid = self.p.uid[rows]
        # Reflection: under the threshold, at most once every two turns.
        u_ins = uniforms(self.seed, Stream.INSTRUCT, uid, session, turn)
        instruct = (
            (mind.satisfaction < cfg.instruct_below)
            & (u_ins < cfg.instruct_probability)
            & (turn - mind.last_instruct_turn >= 2)
            & (self.cat.tag_matrix.shape[1] > 0)
        )
        ir = np.flatnonzero(instruct)
        more = less = np.zeros(0, np.int64)
        if ir.size:
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
            + self.model.leave_offset
            + cfg.leave_satisfaction * (0.5 - mind.satisfaction)
            + cfg.leave_fatigue * mind.fatigue
            - cfg.leave_patience * (self.p.patience[rows] - 0.5)
        )
        p_leave = _sigmoid(logit) * np.where(instruct, 0.5, 1.0)
        leave = uniforms(self.seed, Stream.LEAVE, uid, session, turn) < p_leave
        done = self.enough_draws(rows, session, turn, slates.shape[1])
        if done is not None:  # had enough after an item it consumed (react's draws)
            leave |= (done & (fb.action >= WATCH)).any(1)
        instructions = Instructions(rows=ir, more_of=more, less_of=less)
        return TurnDecision(feedback=fb, leave=leave, instructions=instructions)

    def enough_draws(self, rows: np.ndarray, session: int, turn: int, k: int) -> np.ndarray | None:
        """(n, k) bool: whether users ``rows`` would have had enough after consuming the item
        at each position of this turn's slate (``ChoiceModel.enough``); None where the model
        has no such chance."""
        if self.model.enough <= 0:
            return None
        uid = self.p.uid[rows][:, None]
        u = uniforms(self.seed, Stream.ENOUGH, uid, session, turn, np.arange(k)[None, :])
        return u < self.model.enough

    def end_session(
        self, satisfaction: np.ndarray, rows: np.ndarray, session: int
    ) -> ReturnDecision:
        """The return model: given final ``satisfaction``, does each user come back, and when."""
        uid = self.p.uid[rows]
        back = uniforms(self.seed, Stream.RETURN, uid, session) < self.return_probability(
            satisfaction, rows
        )
        mean_gap = self.model.returns.mean_gap_days * (1.5 - self.p.activity[rows])
        gap = -np.log1p(-uniforms(self.seed, Stream.RETURN_GAP, uid, session)) * mean_gap
        return ReturnDecision(returns=back, gap_days=np.where(back, gap, np.inf).astype(np.float32))

    def return_probability(self, satisfaction: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """P(users ``rows`` come back) given their final ``satisfaction``."""
        cfg = self.cfg
        logit = (
            self.model.returns.base_logit
            + cfg.return_satisfaction * (satisfaction - 0.5)
            + cfg.return_activity * (self.p.activity[rows] - 0.5)
        )
        return _sigmoid(logit)


class _MindStep:
    """The mindset dynamics along one slate (the one definition, used by :meth:`react` and
    :meth:`apply_choices`): satisfaction moves toward the item's experience relative to the
    user's expected hit rate; fatigue grows with every item and with watching; boredom moves
    toward the item's overlap with what was consumed this session; curiosity toward
    diversity x (1 - boredom); a clicked item's tags enter the session profile."""

    def __init__(self, brain: ParametricBrain, mind: Mindset, rows: np.ndarray, slates: np.ndarray):
        f32 = np.float32
        self.cfg, self.mind = brain.cfg, mind
        self.fatigue_scale = np.float32(brain.model.fatigue_scale)
        self.memory, self.rows, self.slates = brain.memory, rows, slates
        self.tags = brain.cat.tag_matrix[slates]  # (n, k, T)
        self.tag_norm = brain._tag_norm[slates]
        self.expect = brain._expect[rows]
        self.diversity = brain.p.diversity[rows].astype(f32)
        self.pnorm = np.sqrt(np.einsum("nt,nt->n", mind.profile, mind.profile)) + f32(1e-6)
        self.log = np.empty((4, *slates.shape), f32)
        self._seen: SlateMemory | None = None  # the slate's satiation lookups, on first use

    def repetition(self, p: int) -> np.ndarray:
        """How much item ``p`` repeats what each user consumed this session (cosine)."""
        m = self.mind
        return np.einsum("nt,nt->n", m.profile, self.tags[:, p]) / (
            self.pnorm * self.tag_norm[:, p]
        )

    def satiation(self, p: int) -> np.ndarray:
        """(n,) logit penalty of item ``p`` for users who clicked it earlier in the simulation:
        the lasting part (the world's repeat share) plus the short-term part, fading over days.
        """
        if self._seen is None:  # every position's lookup at once, kept in step by update()
            self._seen = self.memory.slate(self.rows, self.slates, self.mind.day)
        since = self._seen.at(p)
        cfg = self.cfg
        short = cfg.satiation_weight * np.exp(-np.maximum(since, 0.0) / cfg.satiation_days)
        return np.where(np.isfinite(since), short - self.memory.lasting, 0.0).astype(np.float32)

    def update(
        self,
        p: int,
        rep: np.ndarray,
        c: np.ndarray,
        w: np.ndarray,
        wf: np.ndarray,
        liked: np.ndarray,
        live: np.ndarray | None = None,
    ) -> None:
        """After item ``p``: clicked ``c``, watched ``w``, watch fraction ``wf``, ``liked`` the
        scaled rating (NaN where not rated: the watch fraction stands in). ``live``: the users
        who saw the item (None: all); the others' mindsets stay as they are."""
        cfg, mind, f32 = self.cfg, self.mind, np.float32
        if live is not None and not live.all():
            keep = [a.copy() for a in (mind.satisfaction, mind.fatigue, mind.boredom)]
            keep.append(mind.curiosity.copy())
            self.update(p, rep, c, w, wf, liked)
            for a, old in zip(
                (mind.satisfaction, mind.fatigue, mind.boredom, mind.curiosity), keep
            ):
                np.copyto(a, old, where=~live)
            log = self.log
            log[0, :, p], log[1, :, p] = mind.satisfaction, mind.fatigue
            log[2, :, p], log[3, :, p] = mind.boredom, mind.curiosity
            return
        experience = np.where(w, np.where(np.isnan(liked), wf, liked), f32(0.0))
        expect = self.expect
        mind.satisfaction += cfg.satisfaction_rate * np.where(c, experience - expect, -0.5 * expect)
        np.clip(mind.satisfaction, 0.0, 1.0, out=mind.satisfaction)
        mind.fatigue += self.fatigue_scale * (cfg.fatigue_per_item + cfg.fatigue_per_watch * wf)
        mind.boredom += cfg.boredom_rate * np.where(c, f32(1.0), f32(0.3)) * (rep - mind.boredom)
        mind.curiosity += f32(0.2) * (self.diversity * (1.0 - mind.boredom) - mind.curiosity)
        hit = np.flatnonzero(c)
        if hit.size:  # only clickers' session profiles (and item memories) move
            if self._seen is not None:
                self._seen.clicked(p, hit)
            else:
                self.memory.remember(self.rows[hit], self.slates[hit, p], mind.day[hit])
            mind.profile[hit] = 0.7 * mind.profile[hit] + 0.3 * self.tags[hit, p]
            prof = mind.profile[hit]
            self.pnorm[hit] = np.sqrt(np.einsum("nt,nt->n", prof, prof)) + 1e-6
        log = self.log
        log[0, :, p], log[1, :, p] = mind.satisfaction, mind.fatigue
        log[2, :, p], log[3, :, p] = mind.boredom, mind.curiosity

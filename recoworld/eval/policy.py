"""``recoworld eval policy``: any recommender on held-out simulated users, on the two axes of
the seed paper: ranking accuracy and retention, with engagement, diversity and instruction
following beside them, each with an interval over seeds.

The bench (:func:`build_bench`) keeps evaluation honest:

1. each real user's latest interactions are held out (``eval.split.holdout_split``: by time
   where the world has times); the catalog, the fitted brain and the personas see only the
   training part, so the held-out items are recommendable and unknown to every recommender;
2. a share of the real users (:data:`HELDOUT_SHARE`, drawn by a stable hash of the user's row)
   is held out whole: population users drawn from them (:attr:`Bench.test_users`) are never
   simulated in training (:attr:`Bench.train_users` is what a trainer may use).

Each recommender (a built-in kind, a ``kind = "python"`` plug-in, or a trained scorer
checkpoint through :class:`PolicyRecommender`) runs the study's own loop (``simulate_arm``: up
to ``sessions`` sessions of the return model's lives) over the held-out users, once per seed
(the seed of the users' draws and of the recommenders'; every recommender sees the same users
with the same draws in a seed). Per user (the unit of analysis):

- ``retention``: sessions in the life (``study.metrics`` ``sessions``); ``return_rate``: came
  back after the first session;
- ``engagement``: watch fractions summed per session (``watch_time``); ``life_watch``: over
  the whole life; ``ctr``;
- ``ndcg``: NDCG@k of the first slate against the user's held-out items (binary relevance;
  users whose real user has none are left out);
- ``diversity``: intra-list diversity, 1 - the mean cosine between the embeddings of two items
  of a slate, averaged over the user's slates;
- ``instruction_following``: the share of the user's instructions honoured by the next slate of
  the session: it holds an item tagged with what the user asked for more of, and, where it
  asked for less of a tag, fewer items with that tag than the slate it complained about (users
  who never instructed before a next slate are left out).

A seed's estimate is the mean over users; seeds are pooled as a study pools replicates
(``study.pooling.pool``: the spread between seeds, floored at user noise).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from recoworld.config import RecommenderConfig, StudyConfig
from recoworld.env.scorer import CandidateScorer, candidate_features
from recoworld.env.view import AgentView
from recoworld.errors import ConfigError, RecommenderError
from recoworld.eval.split import Split, holdout_split
from recoworld.recommenders.base import Audience, SyncRecommender
from recoworld.recommenders.treatments import InstructionReranker
from recoworld.records import Record, SlateFeedback, TurnRecord
from recoworld.rng import Stream, uniforms
from recoworld.study.metrics import METRICS
from recoworld.study.pooling import pool
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.simulate import simulate_arm
from recoworld.world.model import World

HELDOUT_SHARE = 0.2
"""Share of the real users held out whole (their personas are never simulated in training)."""
SPLIT_STREAM = 18
"""The key of the held-out users' draw (``uniforms(seed, Stream.SAMPLE, user row, this)``)."""
POLICY_METRICS = (
    "retention",
    "return_rate",
    "engagement",
    "life_watch",
    "ctr",
    "ndcg",
    "diversity",
    "instruction_following",
)
"""The metrics of an evaluation, in order."""
CHECKPOINT_TARGET = "recoworld.eval.policy:PolicyRecommender"


@dataclass(frozen=True, eq=False)
class Bench:
    """A world prepared for training and evaluating recommenders (see the module docstring)."""

    prep: Prepared
    split: Split
    held_codes: np.ndarray  # sorted codes real user row * n_items + item of held-out items
    held_count: np.ndarray  # (world users,) held-out items per real user
    train_users: np.ndarray  # population rows a trainer may simulate
    test_users: np.ndarray  # population rows of held-out real users

    @property
    def train_uids(self) -> np.ndarray:
        return self.prep.population.uid[self.train_users]

    @property
    def test_uids(self) -> np.ndarray:
        return self.prep.population.uid[self.test_users]


def held_out_real_users(n_users: int, seed: int, share: float = HELDOUT_SHARE) -> np.ndarray:
    """(n_users,) bool: the real users (world rows) held out whole."""
    return uniforms(seed, Stream.SAMPLE, np.arange(n_users), SPLIT_STREAM) < share


def build_bench(cfg: StudyConfig, world: World, *, heldout_share: float = HELDOUT_SHARE) -> Bench:
    """Split ``world`` (held-out items per user, and held-out users), prepare ``cfg`` on the
    training part, and divide its population by real user."""
    split = holdout_split(world, seed=cfg.seed)
    prep = prepare(cfg, split.train)
    n_items = world.items.height
    test = split.test
    codes = np.unique(test.user.astype(np.int64) * n_items + test.item.astype(np.int64))
    count = np.bincount(codes // n_items, minlength=world.users.height)
    held = held_out_real_users(world.users.height, cfg.seed, heldout_share)
    template = prep.population.template
    is_test = (template >= 0) & held[np.maximum(template, 0)]
    return Bench(
        prep=prep,
        split=split,
        held_codes=codes,
        held_count=count,
        train_users=np.flatnonzero(~is_test),
        test_users=np.flatnonzero(is_test),
    )


class PolicyRecommender(SyncRecommender):
    """A trained candidate scorer (:class:`recoworld.env.scorer.CandidateScorer` checkpoint)
    as a recommender: a ``kind = "python"`` plug-in, ``target =
    "recoworld.eval.policy:PolicyRecommender"``, ``options = {checkpoint = "path.npz"}``.

    It sees what the environment showed the scorer in training (the same
    :class:`~recoworld.env.view.AgentView`: the base recommender's candidate pool of the
    checkpoint's size, the feedback, the instructions) and shows the best-scored candidates not
    shown yet in the session. ``follow_instructions``: the built-in instruction re-ranker
    (:class:`~recoworld.recommenders.treatments.InstructionReranker`, ``instruction_weight``)
    shifts the scorer's scores, as it shifts a built-in recommender's."""

    def __init__(
        self,
        checkpoint: str,
        slate_size: int | None = None,
        follow_instructions: bool = False,
        instruction_weight: float = 1.5,
    ) -> None:
        self.scorer = CandidateScorer.load(checkpoint)
        s = self.scorer.settings
        self.candidates, self.base = int(s["candidates"]), str(s.get("base", "mf"))
        self.k = int(slate_size if slate_size is not None else s["slate_size"])
        self.view: AgentView | None = None
        self.follow = InstructionReranker(instruction_weight) if follow_instructions else None

    def bind(self, audience: Audience) -> None:
        self.view = AgentView(
            audience.catalog,
            slate_size=self.k,
            turns=1,
            sessions=1,
            candidates=self.candidates,
            base=self.base,
            seed=audience.seed,
        )
        self.view.bind(audience)
        if self.follow is not None:
            self.follow.bind(audience)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        view = self.view
        assert view is not None, "bind() first"
        if k != self.k:
            raise RecommenderError(
                f"Expected slates of {self.k} (the scorer's slate_size option), got a request "
                f"for {k} - at PolicyRecommender.recommend"
            )
        if turn == 0:
            view.start_session(idx, session)
            if self.follow is not None:
                self.follow.start_session(idx)
        n = idx.size
        obs = view.observation(
            idx,
            session=np.full(n, session),
            turn=np.full(n, turn),
            day=np.zeros(n),  # a recommender does not see the calendar; the scorer ignores it
            rating_max=np.inf,
        )
        scores = self.scorer.scores(candidate_features(obs))
        if self.follow is not None:
            spread = np.maximum(scores.std(1), 1e-6)
            scores = self.follow.adjust(idx, view.pool[idx], scores, spread)
        picks = self.scorer.pick_from(scores, obs, k)
        slates = view.slates_of(idx, picks)
        view.show(idx, slates, picks)
        return slates

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        assert self.view is not None
        self.view.observe(idx, slates, feedback)

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        assert self.view is not None
        self.view.instruct(idx, more_of, less_of, texts)
        if self.follow is not None:
            self.follow.instruct(idx, more_of, less_of)


def checkpoint_recommender(path: str | Path, **options: Any) -> RecommenderConfig:
    """The recommender config that evaluates a scorer checkpoint."""
    return RecommenderConfig(
        kind="python",
        target=CHECKPOINT_TARGET,
        options={"checkpoint": str(path), **options},
        fallback="none",
    )


class _Tally:
    """Hears a simulated arm's records: per user, the first slate's NDCG, the slates'
    diversity, and instructions and whether the next slate honoured them."""

    def __init__(self, bench: Bench, users: np.ndarray, k: int) -> None:
        cat = bench.prep.catalog
        n = users.size
        self.emb, self.tags, self.n_items = cat.emb, cat.tag_matrix > 0, cat.n_items
        self.template = bench.prep.population.template[users].astype(np.int64)
        self.codes, self.count = bench.held_codes, bench.held_count
        self.ndcg = np.full(n, np.nan)
        self.ild_sum, self.slates = np.zeros(n), np.zeros(n)
        self.asked, self.honoured = np.zeros(n), np.zeros(n)
        self.want = np.full(n, -1, np.int64)  # pending instruction: tag wanted more of
        self.avoid = np.full(n, -1, np.int64)  # tag wanted less of (-1: none)
        self.avoid_before = np.zeros(n, np.int64)  # that tag's items in the complained-of slate
        self.at = np.full((n, 2), -1, np.int64)  # (session, turn) of the pending instruction
        self.discount = 1.0 / np.log2(np.arange(k) + 2.0)

    def __call__(self, record: Record) -> None:
        if not isinstance(record, TurnRecord):
            return
        rows, slates, s, t = record.rows, record.slates, record.session, record.turn
        if s == 0 and t == 0:
            self._ndcg(rows, slates)
        emb = self.emb[slates]
        k = slates.shape[1]
        sim = np.einsum("nkd,njd->nkj", emb, emb)
        off = (sim.sum((1, 2)) - np.einsum("nkk->n", sim)) / max(k * (k - 1), 1)
        self.ild_sum[rows] += 1.0 - off
        self.slates[rows] += 1
        tags = self.tags[slates]  # (n, k, T)
        # the instructions written after the previous slate of this session: honoured?
        due = (self.at[rows, 0] == s) & (self.at[rows, 1] == t - 1)
        d = np.flatnonzero(due)
        if d.size:
            r = rows[d]
            has_more = tags[d, :, self.want[r]].any(1)
            avoid = self.avoid[r]
            fewer = np.where(
                avoid >= 0, tags[d, :, np.maximum(avoid, 0)].sum(1) < self.avoid_before[r], True
            )
            self.asked[r] += 1
            self.honoured[r] += has_more & fewer
        self.at[rows] = -1
        ins = record.instructions
        if ins.rows.size:
            r = rows[ins.rows]
            self.want[r], self.avoid[r] = ins.more_of, ins.less_of
            less = np.maximum(ins.less_of, 0)
            self.avoid_before[r] = tags[ins.rows, :, less].sum(1)
            self.at[r] = (s, t)

    def _ndcg(self, rows: np.ndarray, slates: np.ndarray) -> None:
        tmpl = self.template[rows]
        count = np.where(tmpl >= 0, self.count[np.maximum(tmpl, 0)], 0)
        keys = tmpl[:, None] * self.n_items + slates
        at = np.minimum(np.searchsorted(self.codes, keys), max(self.codes.size - 1, 0))
        rel = (self.codes[at] == keys) if self.codes.size else np.zeros(keys.shape, bool)
        disc = self.discount[: slates.shape[1]]
        dcg = (rel * disc).sum(1)
        ideal = np.cumsum(disc)[np.clip(count, 1, disc.size) - 1]
        self.ndcg[rows] = np.where(count > 0, dcg / ideal, np.nan)

    def values(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "ndcg": self.ndcg,
                "diversity": self.ild_sum / self.slates,
                "instruction_following": np.where(
                    self.asked > 0, self.honoured / self.asked, np.nan
                ),
            }


def user_values(bench: Bench, rec: RecommenderConfig, seed: int, users: np.ndarray) -> dict:
    """Per-user values of every metric of :data:`POLICY_METRICS` for ``rec`` over population
    rows ``users`` at ``seed`` (NaN where a metric does not apply to a user)."""
    prep = bench.prep
    cfg = msgspec.structs.replace(prep.cfg, seed=seed, recommender=rec)
    tally = _Tally(bench, users, cfg.simulation.slate_size)
    totals = simulate_arm(replace(prep, cfg=cfg), 0, users, tally).as_dict()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "retention": METRICS["sessions"].of(totals),
            "return_rate": METRICS["return_rate"].of(totals),
            "engagement": METRICS["watch_time"].of(totals),
            "life_watch": np.asarray(totals["watch_time"], np.float64),
            "ctr": METRICS["ctr"].of(totals),
        }
    return out | tally.values()


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of one recommender, pooled over seeds."""

    recommender: str
    metric: str
    mean: float
    lo: float
    hi: float
    seeds: int
    users: int
    per_seed: list[float]


class PolicyResult(msgspec.Struct, frozen=True, kw_only=True):
    """An evaluation: every (recommender, metric) estimate, and what it was run on."""

    world: str
    seeds: list[int]
    users: int
    sessions: int
    turns: int
    slate_size: int
    estimates: list[Estimate]
    seconds: dict[str, float]

    def get(self, recommender: str, metric: str) -> Estimate:
        for e in self.estimates:
            if e.recommender == recommender and e.metric == metric:
                return e
        raise KeyError((recommender, metric))

    def table(self) -> str:
        """A plain-text table: one row per metric, ``mean [lo, hi]`` per recommender."""
        names = list(dict.fromkeys(e.recommender for e in self.estimates))
        rows = [["metric", *names]]
        for m in POLICY_METRICS:
            cells = [m]
            for name in names:
                e = self.get(name, m)
                cells.append(f"{e.mean:.3f} [{e.lo:.3f}, {e.hi:.3f}]")
            rows.append(cells)
        width = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows)


def evaluate(
    bench: Bench,
    recommenders: Mapping[str, RecommenderConfig | Sequence[RecommenderConfig]],
    seeds: Sequence[int],
    *,
    users: np.ndarray | None = None,
) -> PolicyResult:
    """Every recommender over the held-out users (``users``: population rows, default
    :attr:`Bench.test_users`), at every seed; a sequence of configs gives one per seed (a
    policy trained at each seed)."""
    users = bench.test_users if users is None else users
    if users.size == 0:
        raise ConfigError("no held-out users to evaluate (population too small?)")
    values: dict[str, list[dict[str, np.ndarray]]] = {}
    seconds: dict[str, float] = {}
    for name, rec in recommenders.items():
        per_seed = [rec] * len(seeds) if isinstance(rec, RecommenderConfig) else list(rec)
        if len(per_seed) != len(seeds):
            raise ConfigError(
                f"recommender {name!r}: expected one config per seed ({len(seeds)}), "
                f"got {len(per_seed)}"
            )
        t = time.perf_counter()
        values[name] = [user_values(bench, r, s, users) for r, s in zip(per_seed, seeds)]
        seconds[name] = round(time.perf_counter() - t, 2)
    estimates = []
    for name, runs in values.items():
        for metric in POLICY_METRICS:
            xs = [v[metric][np.isfinite(v[metric])] for v in runs]
            n = np.array([x.size for x in xs], np.float64)
            mean = np.array([x.mean() if x.size else np.nan for x in xs])
            m2 = np.array([((x - x.mean()) ** 2).sum() if x.size else 0.0 for x in xs])
            p = pool(n, np.nan_to_num(mean), m2)
            lo, hi = p.interval()
            estimates.append(
                Estimate(
                    recommender=name,
                    metric=metric,
                    mean=float(p.mean),
                    lo=float(lo),
                    hi=float(hi),
                    seeds=len(xs),
                    users=int(n.sum()),
                    per_seed=[float(x) for x in mean],
                )
            )
    sim = bench.prep.cfg.simulation
    return PolicyResult(
        world=bench.prep.world_name,
        seeds=list(seeds),
        users=int(users.size),
        sessions=sim.sessions,
        turns=sim.turns,
        slate_size=sim.slate_size,
        estimates=estimates,
        seconds=seconds,
    )


def recommender_of(spec: str) -> RecommenderConfig:
    """A ``--recommender`` value: ``mf`` | ``popular`` | ``random`` (built-ins, with the
    instruction re-ranker), ``mf-plain`` (without it), ``python:module:Factory`` (a plug-in),
    ``checkpoint:PATH`` (a trained scorer) or ``checkpoint+follow:PATH`` (with the instruction
    re-ranker on its scores)."""
    kind, _, rest = spec.partition(":")
    match kind:
        case "mf" | "popular" | "random" if not rest:
            return RecommenderConfig(kind=kind)
        case "mf-plain" | "popular-plain" | "random-plain" if not rest:
            return RecommenderConfig(kind=kind.split("-")[0], follow_instructions=False)
        case "python" if rest:
            return RecommenderConfig(kind="python", target=rest)
        case "checkpoint" if rest:
            return checkpoint_recommender(rest)
        case "checkpoint+follow" if rest:
            return checkpoint_recommender(rest, follow_instructions=True)
    raise ConfigError(
        f"--recommender: expected mf, popular, random (optionally -plain), python:module:Factory, "
        f"checkpoint:PATH or checkpoint+follow:PATH, got {spec!r}"
    )

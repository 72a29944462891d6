"""Recommenders: the pool machinery, the baselines, the instruction re-ranker, creator treatments.

Recommenders are driven directly, without the brain: a scripted user clicks by a rule of its
own (uid, slate), so a test controls feedback and instructions exactly. Affinity is measured
against the synthetic world's generating vectors (``SyntheticTruth``), not the catalog the
recommenders learn from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import pytest

from recoworld.config import ArmConfig, RecommenderConfig
from recoworld.items.catalog import Catalog, NewItem, build_catalog
from recoworld.recommenders import Recommender
from recoworld.recommenders.base import Adjuster, Audience, PoolRecommender, PostProcessor, Source
from recoworld.recommenders.baselines import MFSource, PopularSource, RandomSource
from recoworld.recommenders.factory import base_source, build_recommender
from recoworld.recommenders.treatments import CreatorBoost, CreatorInjector, InstructionReranker
from recoworld.records import SKIP, WATCH, SlateFeedback
from recoworld.users.persona import Personas, personas_from_history
from recoworld.world.synthetic import SyntheticTruth, synthetic_world_with_truth

N_USERS, N_ITEMS, N_CREATOR = 300, 400, 10
K, TURNS = 10, 5

Clicks = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (uids, slates) -> clicked (n, k)
# (uids, session, turn) -> (more_of, less_of) tag indices, or None for no instruction
Instruct = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray] | None]
Leaves = Callable[[np.ndarray, int, int], np.ndarray]  # uids, session, turn -> left (n,)


@dataclass(frozen=True)
class Setup:
    catalog: Catalog
    personas: Personas
    truth: SyntheticTruth

    @property
    def creator_rows(self) -> np.ndarray:
        return np.flatnonzero(self.catalog.is_creator_item)

    def has_tag(self, slates: np.ndarray, tag: np.ndarray | int) -> np.ndarray:
        """Whether each slate item carries ``tag`` (one tag, or one per user: (n,) on axis -2)."""
        t = np.asarray(tag)
        if t.ndim:
            t = t.reshape((1,) * (slates.ndim - 2) + (-1, 1))
        return self.catalog.tag_matrix[slates, t] > 0


@pytest.fixture(scope="module")
def setup() -> Setup:
    world, truth = synthetic_world_with_truth(N_USERS, N_ITEMS, seed=5)
    tags = world.tag_vocabulary
    news = tuple(
        NewItem(f"nova:{j}", f"Nova {j}", "", (tags[j % len(tags)],), "Nova")
        for j in range(N_CREATOR)
    )
    catalog = build_catalog(world, dim=8, new_items=news, seed=0)
    return Setup(catalog, personas_from_history(world, catalog), truth)


def feedback(clicked: np.ndarray) -> SlateFeedback:
    n, k = clicked.shape
    return SlateFeedback(
        action=np.where(clicked, WATCH, SKIP).astype(np.int8),
        watch=np.where(clicked, 0.8, 0.0).astype(np.float32),
        rating=np.full((n, k), np.nan, np.float32),
        mind=np.zeros((4, n, k), np.float32),
    )


def run(
    rec: Recommender,
    s: Setup,
    *,
    users: np.ndarray | None = None,
    sessions: int = 1,
    turns: int = TURNS,
    treated: np.ndarray | None = None,
    clicks: Clicks | None = None,
    instruct: Instruct | None = None,
    leaves: Leaves | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Slates (sessions, turns, n, K) of ``users`` (population rows), -1 after a user left.

    ``treated`` is over the whole population; every callback gets users' uids, so a user's
    script is the same whichever batch it is simulated in."""
    personas = s.personas if users is None else s.personas.take(users)
    n = len(personas)
    treat = np.ones(N_USERS, bool) if treated is None else treated
    rec.bind(Audience(personas, s.catalog, seed, treat[personas.uid]))
    out = np.full((sessions, turns, n, K), -1, np.int64)
    for session in range(sessions):
        idx = np.arange(n)
        for turn in range(turns):
            if idx.size == 0:
                break
            uid = personas.uid[idx]
            slates = rec.recommend(idx, session, turn, K)
            out[session, turn, idx] = slates
            if clicks is not None:
                rec.observe(idx, slates, feedback(clicks(uid, slates)))
            if instruct is not None and (ins := instruct(uid, session, turn)) is not None:
                rec.instruct(idx, *ins, ["words"] * idx.size)
            if leaves is not None:
                idx = idx[~leaves(uid, session, turn)]
    return out


def pool(
    source: Source,
    *adjusters: Adjuster,
    post: tuple[PostProcessor, ...] = (),
    candidates: int = 100,
) -> PoolRecommender:
    return PoolRecommender(source, tuple(adjusters), tuple(post), candidates=candidates)


def per_user(slates: np.ndarray) -> np.ndarray:
    """(n, sessions * turns * K): each user's items in the order shown."""
    return np.moveaxis(slates, 2, 0).reshape(slates.shape[2], -1)


def history(s: Setup) -> np.ndarray:
    return s.personas.history_of(s.catalog.n_items).toarray()


# --- the pool machinery and the random baseline ---------------------------------------------------


def test_random_slates_are_distinct_valid_and_never_repeat_across_turns_and_sessions(
    setup: Setup,
) -> None:
    slates = run(pool(RandomSource()), setup, sessions=3)
    assert ((slates >= 0) & (slates < setup.catalog.n_items)).all()
    for s in slates.reshape(-1, K):
        assert len(set(s.tolist())) == K
    hist = history(setup)
    for u, shown in enumerate(per_user(slates)):
        assert len(set(shown.tolist())) == shown.size, f"user {u} was shown an item twice"
        assert not hist[u, shown].any(), f"user {u} was recommended an item from its history"


def test_random_is_reproducible_by_seed_and_differs_between_users_and_sessions(
    setup: Setup,
) -> None:
    a = run(pool(RandomSource()), setup, sessions=2, seed=1)
    np.testing.assert_array_equal(a, run(pool(RandomSource()), setup, sessions=2, seed=1))
    assert (a != run(pool(RandomSource()), setup, sessions=2, seed=2)).mean() > 0.9
    first = a[0, 0]
    overlap = np.mean([len(set(first[u]) & set(first[u + 1])) for u in range(N_USERS - 1)])
    assert overlap < 1.0  # two users' first slates share about K * K / N_ITEMS = 0.25 items
    cover = np.unique(a[:, 0]).size
    assert cover > 0.9 * N_ITEMS  # first slates spread over the catalog, not a fixed subset


def test_random_draws_uniformly_among_each_users_unseen_items(setup: Setup) -> None:
    slates = run(pool(RandomSource()), setup)
    counts = np.bincount(slates.ravel(), minlength=setup.catalog.n_items)
    unseen = ~history(setup)
    # Expected showings of item i: over users who have not seen it, K * TURNS / their unseen count.
    expected = (unseen * (K * TURNS / unseen.sum(1, keepdims=True))).sum(0)
    assert (np.abs(counts - expected) < 5 * np.sqrt(expected)).all()


@pytest.mark.parametrize("kind", ["random", "popular", "mf"])
def test_exhausted_users_see_every_unseen_pool_item_before_repeats(setup: Setup, kind: str) -> None:
    # A pool as large as the catalog and more impressions than unseen items: each slate takes
    # all the unseen items left (up to K), fills up with repeats, and never repeats within a slate.
    n_items = setup.catalog.n_items
    slates = run(pool(base_source(kind), candidates=n_items), setup, users=np.arange(20), turns=40)
    seen = history(setup)[:20]
    for t in range(slates.shape[1]):
        s = slates[0, t]
        for u in range(20):
            assert len(set(s[u].tolist())) == K
            new = int((~seen[u, s[u]]).sum())
            assert new == min(K, int((~seen[u]).sum())), (kind, t, u)
            seen[u, s[u]] = True
    assert seen.all()


# --- popular --------------------------------------------------------------------------------------


def test_popular_shows_the_most_popular_unseen_items_in_order(setup: Setup) -> None:
    slates = run(pool(PopularSource()), setup)
    pop = setup.catalog.popularity
    hist = history(setup)
    for u, shown in enumerate(per_user(slates)):
        assert (np.diff(pop[shown]) <= 0).all(), f"user {u}: slates not in popularity order"
        best = np.sort(pop[~hist[u]])[::-1][: shown.size]
        np.testing.assert_array_equal(pop[shown], best)


# --- matrix factorisation -------------------------------------------------------------------------


def mean_true_affinity(s: Setup, slates: np.ndarray) -> float:
    """Mean generating-model affinity <user, item> over the world items shown."""
    world = slates < N_ITEMS  # creator items have no generating vector
    v = s.truth.item_vectors[np.where(world, slates, 0)]
    a = (v * s.truth.user_vectors[:, None, :]).sum(-1)
    return float(a[world].mean())


def test_mf_recommends_items_of_higher_true_affinity_than_random_or_popular(setup: Setup) -> None:
    mf = mean_true_affinity(setup, run(pool(MFSource()), setup)[0, 0])
    rnd = mean_true_affinity(setup, run(pool(RandomSource()), setup)[0, 0])
    pop = mean_true_affinity(setup, run(pool(PopularSource()), setup)[0, 0])
    assert abs(rnd) < 0.05  # random: about the catalog mean, ~0
    assert mf > rnd + 0.2 and mf > pop + 0.2, (mf, rnd, pop)


def test_mf_observe_raises_scores_of_clicked_items_for_clickers_only(setup: Setup) -> None:
    src = MFSource(learning_rate=0.5)
    src.bind(Audience(setup.personas, setup.catalog, 0, np.ones(N_USERS, bool)))
    idx = np.arange(N_USERS)
    items = np.broadcast_to(np.arange(N_ITEMS), (N_USERS, N_ITEMS))
    before = src.score(idx, items)
    slates = np.stack([np.roll(np.arange(N_ITEMS), -7 * u)[:K] for u in idx])
    clicked = np.zeros((N_USERS, K), bool)
    clicked[::2, :3] = True  # even users click their first three items; odd users click nothing
    src.observe(idx, slates, feedback(clicked))
    after = src.score(idx, items)
    np.testing.assert_array_equal(after[1::2], before[1::2])
    rise = after - before
    gain_clicked = np.take_along_axis(rise, slates[:, :3], axis=1).mean(1)[::2]
    assert (gain_clicked > rise[::2].mean(1)).all()
    assert (gain_clicked > 0).mean() > 0.95


def test_mf_learns_during_the_simulation_from_clicks(setup: Setup) -> None:
    # Each user clicks only items of "its" tag in session 0; in session 1 it sees more of them
    # than the same user who clicked nothing.
    tag = np.arange(N_USERS) % len(setup.catalog.tags)
    likes: Clicks = lambda uid, slates: setup.has_tag(slates, tag[uid])
    learnt = run(pool(MFSource()), setup, sessions=2, clicks=likes)
    ignored = run(
        pool(MFSource()), setup, sessions=2, clicks=lambda uid, sl: np.zeros(sl.shape, bool)
    )
    np.testing.assert_array_equal(learnt[0, 0], ignored[0, 0])
    share_learnt = setup.has_tag(learnt[1], tag).mean()
    share_ignored = setup.has_tag(ignored[1], tag).mean()
    assert share_learnt > share_ignored + 0.04, (share_learnt, share_ignored)


def test_mf_without_history_falls_back_to_popularity(setup: Setup) -> None:
    # Personas without a real user behind them (template -1): the platform knows nothing.
    empty = replace(setup.personas.take(np.arange(5)), template=np.full(5, -1))
    rec = pool(MFSource())
    rec.bind(Audience(empty, setup.catalog, 0, np.ones(5, bool)))
    slates = rec.recommend(np.arange(5), 0, 0, K)
    top = np.argsort(-setup.catalog.popularity, kind="stable")[:K]
    np.testing.assert_array_equal(
        np.sort(setup.catalog.popularity[slates], axis=1)[:, ::-1],
        np.broadcast_to(setup.catalog.popularity[top], (5, K)),
    )


# --- the instruction-following re-ranker ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "popular", "mf"])
def test_instruction_shifts_slates_toward_more_of_and_away_from_less_of(
    setup: Setup, kind: str
) -> None:
    more, less = 0, 1  # the two most frequent tags: present in every kind's pools
    told: Instruct = lambda uid, s, t: (
        (np.full(uid.size, more), np.full(uid.size, less)) if t == 0 else None
    )
    plain = run(pool(base_source(kind), InstructionReranker()), setup)
    instructed = run(pool(base_source(kind), InstructionReranker()), setup, instruct=told)
    np.testing.assert_array_equal(
        plain[:, 0], instructed[:, 0]
    )  # the instruction comes after turn 0
    after_plain, after_told = plain[:, 1:], instructed[:, 1:]
    assert setup.has_tag(after_told, more).mean() > setup.has_tag(after_plain, more).mean() + 0.1
    assert setup.has_tag(after_told, less).mean() < 0.5 * setup.has_tag(after_plain, less).mean()


def test_instruction_without_a_less_of_tag_only_promotes(setup: Setup) -> None:
    told: Instruct = lambda uid, s, t: (
        (np.full(uid.size, 0), np.full(uid.size, -1)) if t == 0 else None
    )
    plain = run(pool(MFSource(), InstructionReranker()), setup)
    instructed = run(pool(MFSource(), InstructionReranker()), setup, instruct=told)
    assert setup.has_tag(instructed[:, 1:], 0).mean() > setup.has_tag(plain[:, 1:], 0).mean() + 0.1
    both: Instruct = lambda uid, s, t: (
        (np.full(uid.size, 0), np.full(uid.size, 1)) if t == 0 else None
    )
    demoted = run(pool(MFSource(), InstructionReranker()), setup, instruct=both)
    assert setup.has_tag(demoted[:, 1:], 1).mean() < setup.has_tag(instructed[:, 1:], 1).mean()


def test_an_empty_instruction_changes_nothing(setup: Setup) -> None:
    none: Instruct = lambda uid, s, t: (np.full(uid.size, -1), np.full(uid.size, -1))
    plain = run(pool(MFSource(), InstructionReranker()), setup, sessions=2)
    np.testing.assert_array_equal(
        run(pool(MFSource(), InstructionReranker()), setup, sessions=2, instruct=none), plain
    )


def test_instruction_shift_is_weight_times_spread_and_halves_every_session(setup: Setup) -> None:
    r = InstructionReranker(weight=2.0)
    r.bind(Audience(setup.personas, setup.catalog, 0, np.ones(N_USERS, bool)))
    tags = setup.catalog.tag_matrix
    one_tag = np.flatnonzero((tags > 0).sum(1) == 1)
    a = one_tag[tags[one_tag, 0] > 0][:3]  # items tagged with tag 0 only
    b = one_tag[tags[one_tag, 1] > 0][:3]  # ... tag 1 only
    c = one_tag[(tags[one_tag, 0] == 0) & (tags[one_tag, 1] == 0)][:3]  # neither
    cand = np.concatenate([a, b, c])[None, :]
    idx = np.array([4])
    base, scale = np.zeros((1, 9), np.float32), np.array([0.5], np.float32)
    np.testing.assert_array_equal(r.adjust(idx, cand, base, scale), base)
    r.instruct(idx, np.array([0]), np.array([1]))
    np.testing.assert_allclose(
        r.adjust(idx, cand, base, scale)[0], [1.0] * 3 + [-1.0] * 3 + [0.0] * 3
    )
    r.start_session(idx)
    np.testing.assert_allclose(
        r.adjust(idx, cand, base, scale)[0], [0.5] * 3 + [-0.5] * 3 + [0.0] * 3
    )
    assert (r.adjust(np.array([5]), cand, base, scale) == 0).all()  # another user: untouched


# --- creator injection ----------------------------------------------------------------------------


def inject(position: int, rate: float, s: Setup) -> CreatorInjector:
    return CreatorInjector(position, rate, s.creator_rows)


def creator_at(s: Setup, slates: np.ndarray, position: int) -> np.ndarray:
    return s.catalog.is_creator_item[slates[..., position]]


def test_popular_alone_never_shows_creator_items(setup: Setup) -> None:
    # The premise of the injection tests below: creator items sit at the median popularity,
    # far below the popular pool, so every creator item they see was injected.
    assert not setup.catalog.is_creator_item[run(pool(PopularSource()), setup, sessions=2)].any()


@pytest.mark.parametrize(("position", "rate"), [(2, 0.3), (0, 0.7), (K - 1, 0.5)])
def test_inject_puts_a_creator_item_at_position_in_about_rate_of_slates(
    setup: Setup, position: int, rate: float
) -> None:
    slates = run(pool(PopularSource(), post=(inject(position, rate, setup),)), setup)
    n = N_USERS * TURNS  # fewer injections per user than creator items: none runs out
    hits = int(creator_at(setup, slates, position).sum())
    sd = np.sqrt(n * rate * (1 - rate))
    assert abs(hits - n * rate) < 4 * sd, (hits, n * rate)
    assert setup.catalog.is_creator_item[slates].sum() == hits  # nowhere else
    for s in slates.reshape(-1, K):
        assert len(set(s.tolist())) == K


def test_injected_slate_is_the_base_slate_shifted_down_with_the_best_matching_creator_item(
    setup: Setup,
) -> None:
    p = 3
    base = run(pool(PopularSource()), setup, turns=1)[0, 0]
    out = run(pool(PopularSource(), post=(inject(p, 1.0, setup),)), setup, turns=1)[0, 0]
    np.testing.assert_array_equal(out[:, :p], base[:, :p])
    np.testing.assert_array_equal(out[:, p + 1 :], base[:, p:-1])
    c = setup.creator_rows
    best = c[np.argmax(setup.personas.pref @ setup.catalog.emb[c].T, axis=1)]
    np.testing.assert_array_equal(out[:, p], best)


def test_inject_shows_each_creator_item_once_then_stops(setup: Setup) -> None:
    # rate 1 over 3 sessions x 5 turns = 15 slates, but only 10 creator items to inject.
    slates = run(pool(PopularSource(), post=(inject(1, 1.0, setup),)), setup, sessions=3)
    for u, shown in enumerate(per_user(slates)):
        creator = shown[setup.catalog.is_creator_item[shown]]
        assert sorted(creator.tolist()) == setup.creator_rows.tolist(), u
    assert (
        creator_at(setup, slates, 1).reshape(-1, N_USERS).sum(0).tolist() == [N_CREATOR] * N_USERS
    )


def test_inject_never_duplicates_a_creator_item_the_base_already_put_in_the_slate(
    setup: Setup,
) -> None:
    # MF puts creator items in slates on its own; the injector must pick another one.
    slates = run(pool(MFSource(), post=(inject(0, 1.0, setup),)), setup, sessions=2)
    assert setup.catalog.is_creator_item[slates].sum(-1).max() >= 2  # the case does arise
    for s in slates.reshape(-1, K):
        assert len(set(s.tolist())) == K
    for shown in per_user(slates):
        assert len(set(shown.tolist())) == shown.size


def test_inject_applies_to_treated_users_only(setup: Setup) -> None:
    treated = np.arange(N_USERS) % 2 == 0
    control = run(pool(PopularSource()), setup, sessions=2)
    slates = run(
        pool(PopularSource(), post=(inject(2, 0.5, setup),)), setup, sessions=2, treated=treated
    )
    np.testing.assert_array_equal(slates[:, :, ~treated], control[:, :, ~treated])
    share = creator_at(setup, slates[:, :, treated], 2).mean()
    assert 0.4 < share < 0.6


def test_inject_rate_zero_changes_nothing(setup: Setup) -> None:
    control = run(pool(MFSource()), setup, sessions=2)
    np.testing.assert_array_equal(
        run(pool(MFSource(), post=(inject(2, 0.0, setup),)), setup, sessions=2), control
    )


# --- creator boost --------------------------------------------------------------------------------


def first_creator_slot(s: Setup, slates: np.ndarray) -> np.ndarray:
    """Per user, the first slot (0.. in order shown) holding a creator item; inf if none."""
    shown = per_user(slates)
    hit = s.catalog.is_creator_item[shown]
    return np.where(hit.any(1), np.argmax(hit, axis=1), np.inf)


def boosted(
    s: Setup, boost: float, base: str = "mf", treated: np.ndarray | None = None
) -> np.ndarray:
    return run(
        pool(CreatorBoost(base_source(base), s.catalog.is_creator_item, boost)), s, treated=treated
    )


@pytest.mark.parametrize("base", ["mf", "popular"])
def test_boost_zero_is_the_same_as_no_boost(setup: Setup, base: str) -> None:
    np.testing.assert_array_equal(boosted(setup, 0.0, base), run(pool(base_source(base)), setup))


@pytest.mark.parametrize("base", ["mf", "popular"])
def test_boost_raises_creator_items_monotonically_in_the_boost(setup: Setup, base: str) -> None:
    levels = [0.0, 0.5, 1.0, 2.0, 4.0]
    runs = [boosted(setup, b, base) for b in levels]
    impressions = [int(setup.catalog.is_creator_item[r].sum()) for r in runs]
    first = [first_creator_slot(setup, r) for r in runs]
    assert all(a <= b for a, b in pairwise(impressions)), impressions
    assert impressions[-1] > impressions[0] + N_USERS, impressions
    for lo, hi in pairwise(first):  # per user: the first creator item comes no later
        assert (hi <= lo).all()
    assert np.mean(first[-1] < np.inf) >= np.mean(first[0] < np.inf)
    assert np.median(first[-1]) < np.median(first[0])


def test_boost_applies_to_treated_users_only(setup: Setup) -> None:
    treated = np.arange(N_USERS) % 3 == 0
    plain = run(pool(PopularSource()), setup)
    slates = boosted(setup, 4.0, "popular", treated=treated)
    np.testing.assert_array_equal(slates[:, :, ~treated], plain[:, :, ~treated])
    assert setup.catalog.is_creator_item[slates[:, :, treated]].any(-1).any(1).all()


# --- per-user determinism -------------------------------------------------------------------------


def tag_clicks(s: Setup) -> Clicks:
    tag = np.arange(N_USERS) % len(s.catalog.tags)
    return lambda uid, slates: s.has_tag(slates, tag[uid])


def instructions(uid: np.ndarray, session: int, turn: int) -> tuple[np.ndarray, np.ndarray] | None:
    if turn % 2 == 0:
        return None
    return (uid + session) % 12, np.where(uid % 4 == 0, -1, (uid + 5) % 12)


def leaving(uid: np.ndarray, session: int, turn: int) -> np.ndarray:
    return (uid + session + turn) % 5 == 0


BUILDS: dict[str, Callable[[Setup], PoolRecommender]] = {
    "random": lambda s: pool(RandomSource(), InstructionReranker()),
    "popular": lambda s: pool(PopularSource(), InstructionReranker(), post=(inject(2, 0.5, s),)),
    "mf": lambda s: pool(MFSource(), InstructionReranker()),
    "mf+inject": lambda s: pool(MFSource(), InstructionReranker(), post=(inject(4, 0.4, s),)),
    "mf+boost": lambda s: pool(
        CreatorBoost(MFSource(), s.catalog.is_creator_item, 1.5), InstructionReranker()
    ),
    "random+boost": lambda s: pool(CreatorBoost(RandomSource(), s.catalog.is_creator_item, 1.0)),
}


@pytest.mark.parametrize("name", list(BUILDS))
def test_a_users_slates_do_not_depend_on_who_shares_its_batch(setup: Setup, name: str) -> None:
    treated = np.arange(N_USERS) % 3 != 0
    clicks = tag_clicks(setup)

    def play(users: np.ndarray | None = None) -> np.ndarray:
        rec = BUILDS[name](setup)
        return run(
            rec,
            setup,
            users=users,
            sessions=3,
            treated=treated,
            clicks=clicks,
            instruct=instructions,
            leaves=leaving,
        )

    full = play()
    assert (full == -1).any() and (full != -1).any()  # users left at different turns
    order = np.random.default_rng(0).permutation(N_USERS)[: N_USERS // 2]
    np.testing.assert_array_equal(play(order), full[:, :, order])
    for u in (0, 7, 150):
        alone = play(np.array([u]))
        np.testing.assert_array_equal(alone[:, :, 0], full[:, :, u])


# --- the factory ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "treatment", "name"),
    [("random", "none", "random"), ("popular", "inject", "popular"), ("mf", "boost", "mf+boost")],
)
def test_factory_builds_recommenders_that_satisfy_the_protocol(
    setup: Setup, kind: str, treatment: str, name: str
) -> None:
    rec = build_recommender(
        RecommenderConfig(kind=kind),
        ArmConfig(name="a", treatment=treatment),
        setup.catalog.is_creator_item,
    )
    assert isinstance(rec, Recommender)
    assert rec.name == name
    slates = run(rec, setup, turns=2)
    assert ((slates >= 0) & (slates < setup.catalog.n_items)).all()


def test_factory_unknown_kind_is_an_error() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape("unknown recommender kind 'svd'; expected random, popular or mf"),
    ):
        base_source("svd")


def test_factory_arm_recommender_overrides_the_study_one(setup: Setup) -> None:
    arm = ArmConfig(
        name="a", recommender=RecommenderConfig(kind="popular", follow_instructions=False)
    )
    rec = build_recommender(RecommenderConfig(kind="mf"), arm, setup.catalog.is_creator_item)
    np.testing.assert_array_equal(run(rec, setup), run(pool(PopularSource()), setup))


@pytest.mark.parametrize("follow", [True, False])
def test_factory_follow_instructions_switches_the_reranker(setup: Setup, follow: bool) -> None:
    told: Instruct = lambda uid, s, t: (np.full(uid.size, 0), np.full(uid.size, 1))
    cfg = RecommenderConfig(kind="mf", follow_instructions=follow)
    make = lambda: build_recommender(cfg, ArmConfig(name="a"), setup.catalog.is_creator_item)
    same = np.array_equal(run(make(), setup, instruct=told), run(make(), setup))
    assert same is not follow


def test_factory_inject_arm_uses_its_position_and_rate(setup: Setup) -> None:
    arm = ArmConfig(name="inject", treatment="inject", position=6, rate=1.0)
    rec = build_recommender(RecommenderConfig(kind="popular"), arm, setup.catalog.is_creator_item)
    slates = run(rec, setup)
    assert creator_at(setup, slates, 6).all()

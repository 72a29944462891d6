"""Candidate retrieval that does not grow with the catalogue (recoworld/recommenders/retrieval.py)
and the per-user "already shown" sets that replace the users x items matrix.

The approximate index must be deterministic and batch-invariant (a user's slates never depend
on who shares its batch), find nearly what the exact path finds, and never recommend what a
user saw; the sparse shown-set must answer exactly as the dense matrix does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import recoworld.recommenders.base as base
from recoworld.items.catalog import Catalog, NewItem, build_catalog
from recoworld.recommenders.base import (
    Audience,
    DenseShown,
    PoolRecommender,
    SparseShown,
    shown_items,
)
from recoworld.recommenders.baselines import MFSource, PopularSource, RandomSource
from recoworld.recommenders.retrieval import ANN_ABOVE, ItemIndex, item_vectors, uses_index
from recoworld.recommenders.treatments import CreatorBoost, CreatorInjector, InstructionReranker
from recoworld.records import SKIP, WATCH, SlateFeedback
from recoworld.users.persona import Personas, personas_from_history
from recoworld.world.synthetic import synthetic_world

N_USERS, N_ITEMS, K, TURNS = 240, 900, 10, 5


@dataclass(frozen=True)
class World:
    catalog: Catalog
    personas: Personas


@pytest.fixture(scope="module")
def world() -> World:
    w = synthetic_world(N_USERS, N_ITEMS, seed=3, dim=8)
    tags = w.tag_vocabulary
    news = tuple(NewItem(f"c:{j}", f"C {j}", "", (tags[j],), "C") for j in range(4))
    catalog = build_catalog(w, dim=8, new_items=news, seed=0)
    return World(catalog, personas_from_history(w, catalog))


def play(rec: PoolRecommender, w: World, users: np.ndarray | None = None) -> np.ndarray:
    """Slates (sessions, turns, n, K) of ``users`` under a scripted user: it clicks items whose
    id is odd for its uid, instructs every other turn and leaves now and then (keyed by uid)."""
    personas = w.personas if users is None else w.personas.take(users)
    n, sessions = len(personas), 3
    rec.bind(Audience(personas, w.catalog, 0, personas.uid % 3 != 0))
    out = np.full((sessions, TURNS, n, K), -1, np.int64)
    for session in range(sessions):
        idx = np.arange(n)
        for turn in range(TURNS):
            if idx.size == 0:
                break
            uid = personas.uid[idx]
            slates = rec.recommend(idx, session, turn, K)
            out[session, turn, idx] = slates
            clicked = (slates + uid[:, None]) % 3 == 0
            rec.observe(idx, slates, feedback(clicked))
            if turn % 2:
                rec.instruct(idx, (uid + session) % 8, np.full(idx.size, -1), ["w"] * idx.size)
            idx = idx[(uid + session + turn) % 5 != 0]
    return out


def feedback(clicked: np.ndarray) -> SlateFeedback:
    n, k = clicked.shape
    return SlateFeedback(
        action=np.where(clicked, WATCH, SKIP).astype(np.int8),
        watch=np.where(clicked, 0.8, 0.0).astype(np.float32),
        rating=np.full((n, k), np.nan, np.float32),
        mind=np.zeros((4, n, k), np.float32),
    )


def injector(w: World) -> CreatorInjector:
    return CreatorInjector(2, 0.5, np.flatnonzero(w.catalog.is_creator_item))


BUILDS = {
    "mf": lambda w, r: PoolRecommender(MFSource(retrieval=r), (InstructionReranker(),)),
    "mf+inject": lambda w, r: PoolRecommender(MFSource(retrieval=r), post=(injector(w),)),
    "mf+boost": lambda w, r: PoolRecommender(
        CreatorBoost(MFSource(retrieval=r), w.catalog.is_creator_item, 1.5), candidates=60
    ),
    "popular": lambda w, r: PoolRecommender(PopularSource(), post=(injector(w),)),
    "random": lambda w, r: PoolRecommender(RandomSource(), (InstructionReranker(),)),
}


# --- the sparse shown-set answers as the dense matrix does ---------------------------------------


def test_sparse_and_dense_shown_sets_agree_on_every_question(world: World) -> None:
    n_items = world.catalog.n_items
    dense = DenseShown(world.personas.history_of(n_items).toarray())
    sparse = SparseShown(world.personas, n_items)
    rng = np.random.default_rng(0)
    everyone = np.arange(N_USERS)
    for step in range(30):  # a growing list: past the first capacity, asked short and long
        idx = np.sort(rng.choice(N_USERS, 120, replace=False))
        items = rng.integers(0, n_items, (idx.size, K))
        dense.add(idx, items)
        sparse.add(idx, items)
        for j in (3, 40, 400):
            q = rng.integers(0, n_items, (idx.size, j))
            np.testing.assert_array_equal(sparse.contains(idx, q), dense.contains(idx, q))
        if step % 10 == 9:
            np.testing.assert_array_equal(sparse.rows(everyone), dense.rows(everyone))
            assert (sparse.count(everyone) >= dense.count(everyone)).all()


@pytest.mark.parametrize("name", list(BUILDS))
def test_a_sparse_shown_set_gives_the_same_slates_as_the_dense_matrix(
    world: World, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dense = play(BUILDS[name](world, "exact"), world)
    monkeypatch.setattr(base, "DENSE_SHOWN_ITEMS", 0)
    rec = BUILDS[name](world, "exact")
    sparse = play(rec, world)
    assert isinstance(rec.shown, SparseShown)
    np.testing.assert_array_equal(sparse, dense)


def test_popular_looks_only_at_the_head_of_its_order_and_finds_the_same_items(
    world: World,
) -> None:
    src = PopularSource()
    src.bind(Audience(world.personas, world.catalog, 0, np.zeros(N_USERS, bool)))
    shown = shown_items(world.personas, world.catalog.n_items)
    idx = np.arange(N_USERS)
    cand, scores = src.candidates(idx, 0, 50, shown)
    pop = world.catalog.popularity
    hist = shown.rows(idx)
    for u in idx:  # the 50 most popular items not in the history, in order
        best = np.argsort(-pop, kind="stable")
        np.testing.assert_array_equal(cand[u], best[~hist[u, best]][:50])
    assert np.isfinite(scores).all()


# --- the index ------------------------------------------------------------------------------------


def test_the_rule_uses_the_index_above_the_threshold_or_when_asked() -> None:
    assert not uses_index("auto", ANN_ABOVE)
    assert uses_index("auto", ANN_ABOVE + 1)
    assert uses_index("ann", 10) and not uses_index("exact", 10**7)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """20,000 item vectors in 40 clusters (+ a popularity column) and 300 queries."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 16))
    x = centres[rng.integers(0, 40, 20_000)] + 0.35 * rng.normal(size=(20_000, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vectors = np.hstack([x, 0.15 * rng.random((20_000, 1))]).astype(np.float32)
    q = x[rng.integers(0, 20_000, 300)] + 0.2 * rng.normal(size=(300, 16))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vectors, np.hstack([q, np.ones((300, 1))]).astype(np.float32)


def test_the_index_finds_most_of_the_exact_best_items(clustered) -> None:  # noqa: ANN001
    vectors, queries = clustered
    index = ItemIndex(vectors)
    found = index.search(queries, 200)
    exact = np.argsort(-(queries.astype(np.float64) @ vectors.T.astype(np.float64)), axis=1)
    recall = np.mean([np.isin(exact[i, :200], found[i]).mean() for i in range(len(queries))])
    assert recall > 0.9, recall


def test_the_index_is_deterministic_and_a_querys_answer_ignores_its_batch(clustered) -> None:  # noqa: ANN001
    vectors, queries = clustered
    a = ItemIndex(vectors).search(queries, 100)
    b = ItemIndex(vectors).search(queries, 100)
    np.testing.assert_array_equal(a, b)
    for rows in (np.arange(1), np.arange(7, 40), np.arange(299, 20, -3)):
        np.testing.assert_array_equal(ItemIndex(vectors).search(queries[rows], 100), a[rows])


def test_the_index_holds_the_mf_score_as_an_inner_product(world: World) -> None:
    src = MFSource()
    src.bind(Audience(world.personas, world.catalog, 0, np.zeros(N_USERS, bool)))
    idx = np.arange(5)
    items = np.tile(np.arange(50), (5, 1))
    unit = src._unit(idx)
    q = np.hstack([unit, np.ones((5, 1), np.float32)]).astype(np.float64)
    direct = q @ item_vectors(world.catalog, src.pw)[:50].T.astype(np.float64)
    np.testing.assert_allclose(src.score(idx, items), direct, rtol=1e-5, atol=1e-6)


# --- recommenders on the index --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mf", "mf+inject", "mf+boost"])
def test_ann_slates_do_not_depend_on_who_shares_the_batch(world: World, name: str) -> None:
    full = play(BUILDS[name](world, "ann"), world)
    part = np.random.default_rng(2).permutation(N_USERS)[: N_USERS // 3]
    np.testing.assert_array_equal(play(BUILDS[name](world, "ann"), world, part), full[:, :, part])
    alone = play(BUILDS[name](world, "ann"), world, np.array([17]))
    np.testing.assert_array_equal(alone[:, :, 0], full[:, :, 17])


def test_ann_never_repeats_an_item_or_shows_the_history_and_agrees_with_exact(
    world: World,
) -> None:
    ann = play(BUILDS["mf"](world, "ann"), world)
    exact = play(BUILDS["mf"](world, "exact"), world)
    hist = world.personas.history_of(world.catalog.n_items).toarray()
    for u in range(N_USERS):
        items = ann[:, :, u].ravel()
        items = items[items >= 0]
        assert len(set(items.tolist())) == items.size, u
        assert not hist[u, items].any(), u
    first = np.mean([np.isin(ann[0, 0, u], exact[0, 0, u]).mean() for u in range(N_USERS)])
    assert first > 0.8, first  # the first slate: mostly the same items as the exact path


def test_ann_users_who_exhaust_their_shortlist_search_again(world: World) -> None:
    src = MFSource(retrieval="ann", shortlist=1)
    rec = PoolRecommender(src, candidates=K * TURNS)
    out = play(rec, world, np.arange(30))
    assert (src.group[:30] == -2).any()  # some shortlists were redone per user
    for u in range(30):
        items = out[:, :, u].ravel()
        items = items[items >= 0]
        assert len(set(items.tolist())) == items.size

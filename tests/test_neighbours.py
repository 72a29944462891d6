"""Item neighbours and the choice model's neighbourhood feature (recoworld/users/neighbours.py):
the similarities are the cosine over users, kept for each item's most similar items; the
feature is the log of one plus the similarities of the item to the user's own items; the fit
reads them from the histories alone, so a target's own consumption gives nothing away."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

import recoworld.users.fit as fit_module
import recoworld.users.neighbours as nb
from recoworld.items.catalog import build_catalog
from recoworld.users.choice import FEATURES
from recoworld.users.fit import fit_choice_model
from recoworld.world.synthetic import synthetic_world

NB = FEATURES.index("neighbourhood")


def _log(seed: int = 0, n_users: int = 40, n_items: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n_users, n_items)) < 0.2
    x[:, 7] = False  # an item nobody consumed
    u, i = np.nonzero(x)
    return np.r_[u, u[:5]], np.r_[i, i[:5]]  # a few repeats: counted once


def _brute_similarity(u: np.ndarray, i: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    x = np.zeros((n_users, n_items))
    x[u, i] = 1.0
    norm = np.sqrt(x.sum(0))
    xn = x / np.where(norm > 0, norm, 1.0)
    s = xn.T @ xn
    np.fill_diagonal(s, 0.0)
    return s  # (i, j)


def test_the_neighbours_are_each_items_most_similar_by_cosine() -> None:
    u, i = _log()
    full = _brute_similarity(u, i, 40, 30)
    k = 5
    got = nb.item_neighbours(u, i, 40, 30, k=k)
    assert got is not None and got.shape == (30, 30)
    dense = got.toarray()  # (j, i)
    assert (np.diag(dense) == 0).all() and (dense[:, 7] == 0).all() and (dense[7] == 0).all()
    for item in range(30):
        kept = np.flatnonzero(dense[:, item])
        assert kept.size <= k
        np.testing.assert_allclose(dense[kept, item], full[item, kept], rtol=1e-5)
        if kept.size:  # nothing left out is more similar than what was kept
            rest = np.setdiff1d(np.arange(30), kept)
            assert full[item, rest].max() <= dense[kept, item].min() + 1e-6
    every = nb.item_neighbours(u, i, 40, 30, k=29).toarray()
    np.testing.assert_allclose(every.T, full, rtol=1e-5, atol=1e-7)


def test_the_neighbours_are_the_same_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    u, i = _log(1)
    whole = nb.item_neighbours(u, i, 40, 30, k=6).toarray()
    monkeypatch.setattr(nb, "CELLS", 64)  # two items' rows at a time
    np.testing.assert_allclose(nb.item_neighbours(u, i, 40, 30, k=6).toarray(), whole)


def test_no_neighbours_beyond_the_work_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    u, i = _log(2)
    assert nb.item_neighbours(u, i, 40, 30) is not None
    monkeypatch.setattr(nb, "MAX_PAIRS", 10)
    assert nb.item_neighbours(u, i, 40, 30) is None
    assert nb.item_neighbours(np.zeros(0, int), np.zeros(0, int), 40, 30) is None


def test_the_neighbourhood_sums_the_items_similarities_to_the_users_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    u, i = _log(3)
    sim = nb.item_neighbours(u, i, 40, 30, k=8)
    history = sp.csr_matrix((np.ones(u.size, bool), (u, i)), shape=(40, 34))  # 4 new items
    rng = np.random.default_rng(0)
    templates = np.r_[rng.integers(0, 40, 10), -1]  # the last: a persona without history
    items = rng.integers(0, 34, (11, 6))  # items 30-33: beyond the neighbours' catalogue
    got = nb.neighbourhood(sim, history, templates, items)
    dense, h = sim.toarray(), history.toarray()[:, :30].astype(float)
    for r in range(11):
        for c in range(6):
            it = items[r, c]
            want = 0.0 if templates[r] < 0 or it >= 30 else np.log1p(h[templates[r]] @ dense[:, it])
            assert got[r, c] == pytest.approx(want, abs=1e-6)
    monkeypatch.setattr(nb, "CELLS", 30)  # one user's row at a time
    np.testing.assert_allclose(nb.neighbourhood(sim, history, templates, items), got, rtol=1e-6)
    assert not nb.neighbourhood(None, history, templates, items).any()
    assert not nb.neighbourhood(sim, None, templates, items).any()


def _private_ends():
    """A synthetic world in which each user's last 3 interactions are items no one else
    consumed: nothing in the logs before them says they will be chosen."""
    world = synthetic_world(150, 100, seed=3)
    inter = world.interactions
    users = world.users["user_id"].to_list()
    last = inter["timestamp"].max()
    extra = pl.DataFrame(
        {
            "user_id": [u for u in users for _ in range(3)],
            "item_id": [f"private-{u}-{k}" for u in users for k in range(3)],
            "rating": [5.0] * (3 * len(users)),
            "weight": [1.0] * (3 * len(users)),
            "timestamp": [last + 1000 * (k + 1) for _ in users for k in range(3)],
        }
    ).cast({c: inter.schema[c] for c in ("rating", "weight", "timestamp")})
    items = pl.DataFrame(
        {
            "item_id": [f"private-{u}-{k}" for u in users for k in range(3)],
            "title": ["private"] * (3 * len(users)),
            "text": [""] * (3 * len(users)),
            "creator": [""] * (3 * len(users)),
            "tags": [["private"]] * (3 * len(users)),
        }
    )
    return replace(
        world,
        interactions=pl.concat([inter, extra.select(inter.columns)]),
        items=pl.concat([world.items, items.select(world.items.columns)]),
    ).validate()


def test_the_fit_reads_neighbours_from_the_histories_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each user's private last items are its targets; read from the whole log, their only
    consumer makes them neighbours of its own items and the fit learns a strong pull that
    predicts nothing in the future. Read from the histories, they have none."""
    world = _private_ends()
    catalog = build_catalog(world, dim=8, seed=0)
    honest = fit_choice_model(world, catalog, seed=0, logged_exposure=0.0).model
    monkeypatch.setattr(fit_module, "item_neighbours", lambda *a, **k: catalog.neighbours)
    leaky = fit_choice_model(world, catalog, seed=0, logged_exposure=0.0).model
    assert leaky.logged_coef[NB] > 1.5 * honest.logged_coef[NB], (
        honest.logged_coef[NB],
        leaky.logged_coef[NB],
    )


def test_the_fit_learns_that_users_consume_their_items_neighbours() -> None:
    world = synthetic_world(300, 200, seed=4)
    model = fit_choice_model(world, build_catalog(world, dim=8, seed=0), seed=0).model
    assert model.logged_coef[NB] > 0.1, model.logged_coef


def test_a_table_gives_what_the_call_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    u, i = _log(4)
    sim = nb.item_neighbours(u, i, 40, 30, k=8)
    history = sp.csr_matrix((np.ones(u.size, bool), (u, i)), shape=(40, 32))
    rng = np.random.default_rng(1)
    population = np.r_[rng.integers(0, 40, 25), -1, -1]  # the population's templates
    templates = population[rng.integers(0, population.size, 50)]
    items = rng.integers(0, 32, (50, 7))
    want = nb.neighbourhood(sim, history, templates, items)
    table = nb.NeighbourTable(sim, history, population)
    assert table.dense is not None
    np.testing.assert_array_equal(table(templates, items), want)
    monkeypatch.setattr(nb, "TABLE_CELLS", 10)  # too large a population: call by call
    small = nb.NeighbourTable(sim, history, population)
    assert small.dense is None
    np.testing.assert_array_equal(small(templates, items), want)
    assert not nb.NeighbourTable(None, history, population)(templates, items).any()

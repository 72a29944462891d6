"""The era of consumption: the index, the timeliness feature, the fit's own-interaction rule,
and a world whose users consume the items of their own time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from recoworld.items.catalog import Catalog, build_catalog
from recoworld.users.choice import FEATURES
from recoworld.users.era import (
    ERA_BINS,
    ERA_WIDTHS,
    era_index,
    own_counts,
    timeliness,
    user_windows,
)
from recoworld.users.fit import _target_timeliness, fit_choice_model
from recoworld.users.persona import personas_from_history
from recoworld.world.model import World


def _index(n_items: int = 3, n: int = 4000, seed: int = 0):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 1_000_000, n))
    items = rng.integers(0, n_items, n)
    return items, ts, era_index(items, ts, n_items)


def test_bins_hold_equal_shares_and_the_counts_add_up() -> None:
    items, ts, index = _index()
    assert index is not None
    assert index.edges.shape == (ERA_BINS + 1,) and index.cum.shape == (ERA_BINS + 1, 3)
    per_bin = np.diff(index.cum.sum(1))
    assert per_bin.sum() == ts.size
    assert per_bin.min() >= 0.8 * ts.size / ERA_BINS and per_bin.max() <= 1.2 * ts.size / ERA_BINS
    assert np.array_equal(index.cum[-1], np.bincount(items, minlength=3))
    assert index.share[0] == 0.0 and abs(index.share[-1] - 1.0) < 1e-12


def test_no_era_without_times_or_with_too_many_items() -> None:
    items = np.zeros(100, np.int64)
    assert era_index(items, np.full(100, -1), 5) is None  # undated
    assert era_index(items, np.arange(100), 10_000_000) is None  # too large an index
    assert user_windows(None, items, np.arange(100), 3, 2) is None
    _, _, index = _index()
    assert user_windows(index, items, np.arange(100), 3, 0) is None  # width 0: no era


def test_timeliness_reads_the_users_own_time() -> None:
    # item 0 only in the first half of the time, item 1 only in the second, item 2 throughout
    n = 4000
    ts = np.arange(n, dtype=np.int64)
    items = np.where(np.arange(n) % 2 == 0, 2, np.where(ts < n // 2, 0, 1))
    index = era_index(items, ts, 3)
    assert index is not None
    users = np.array([0, 1, 2])
    last = np.array([100, 3900, -1])  # early, late, undated
    win = user_windows(index, users, last, 3, 2)
    assert win is not None and (win[2] == 0).all()
    t = timeliness(index, win, np.tile(np.arange(4), (3, 1)))  # item 3: unknown (a new item)
    assert t[0, 0] > 0.5 and t[0, 1] < -0.5  # the early user: item 0 of its time, item 1 not
    assert t[1, 1] > 0.5 and t[1, 0] < -0.5
    assert abs(t[0, 2]) < 0.05 and abs(t[1, 2]) < 0.05  # consumed evenly: neutral
    assert (t[2] == 0).all() and (t[:, 3] == 0).all()  # no era known: 0
    assert (timeliness(None, win, np.zeros((3, 2), np.int64)) == 0).all()


def test_a_targets_own_interaction_leaves_its_counts() -> None:
    # an item consumed once, by the user itself, in its window: no evidence of the era at all
    n = 400
    ts = np.arange(n, dtype=np.int64)
    items = np.zeros(n, np.int64)
    items[200] = 1
    users = np.full(n, 1, np.int64)
    users[200] = 0
    index = era_index(items, ts, 2)
    assert index is not None
    win = user_windows(index, np.array([0]), np.array([190]), 2, 1)
    assert win is not None
    w, t = own_counts(index, win, (users, items, ts), np.array([0, 0]), np.array([1, 0]))
    assert w.tolist() == [1.0, 0.0] and t.tolist() == [1.0, 0.0]
    raw = timeliness(index, win[[0]], np.array([[1]]))[0, 0]
    assert raw > 0.3  # counted with its own interaction, the item looks of the user's era
    cat = type("C", (), {"era": index})()
    fixed = _target_timeliness(cat, win, (users, items, ts), np.array([0]), np.array([1]))
    assert fixed[0] == 0.0


ERAS = 16


def _era_world(n_users: int = 320, n_items: int = 160, per_user: int = 30, seed: int = 0) -> World:
    """Users active in one of ERAS eras, each consuming items of its era 85% of the time (the
    rest uniformly); item appeal otherwise uniform."""
    rng = np.random.default_rng(seed)
    era_of_item = np.arange(n_items) % ERAS
    rows = []
    for u in range(n_users):
        era = u % ERAS
        start = era * 10_000_000 + int(rng.integers(0, 1_000_000))
        own = np.flatnonzero(era_of_item == era)
        picks = np.where(
            rng.random(per_user) < 0.85,
            rng.choice(own, per_user),
            rng.integers(0, n_items, per_user),
        )
        seen: set[int] = set()
        for k, it in enumerate(picks):
            if int(it) in seen:
                continue
            seen.add(int(it))
            rows.append((f"u{u}", f"i{it}", 4.0, start + k * 86_400))
    inter = pl.DataFrame(
        rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"
    ).select(
        "user_id",
        "item_id",
        pl.col("rating").cast(pl.Float64),
        pl.lit(1.0).alias("weight"),
        pl.col("timestamp").cast(pl.Int64),
    )
    users = pl.DataFrame({"user_id": [f"u{u}" for u in range(n_users)]})
    items = pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"item {i}" for i in range(n_items)],
            "text": [""] * n_items,
            "creator": [""] * n_items,
            "tags": [["t"]] * n_items,
        }
    )
    return World(
        name="era-world", items=items, interactions=inter, users=users, rating_scale=(1.0, 5.0)
    ).validate()


def _without_neighbours(catalog: Catalog) -> Catalog:
    """The catalog without item neighbours: users of one era consume its items together, so
    the neighbourhood feature carries the era too; these tests look at what time alone says."""
    return replace(catalog, neighbours=None)


def test_the_fit_finds_an_era_where_users_consume_their_times_items() -> None:
    # 16 eras in a 4-dimensional embedding: taste cannot carry every era, time can
    world = _era_world()
    catalog = _without_neighbours(build_catalog(world, dim=4, seed=0))
    fitted = fit_choice_model(world, catalog, seed=0)
    model = fitted.model
    assert model.era_width in ERA_WIDTHS
    k = FEATURES.index("timeliness")
    assert model.logged_coef[k] > 0.3, model.logged_coef
    personas = personas_from_history(
        world, catalog, half_life=model.recent_half_life, era_width=model.era_width
    )
    assert personas.era is not None
    taken = personas.take(np.array([3, 1]))
    assert taken.era is not None and np.array_equal(taken.era, personas.era[[3, 1]])


def test_no_era_where_time_says_nothing() -> None:
    # the same world with its times shuffled across users: time carries no taste, and whatever
    # the fit makes of it is noise, far weaker than the era it finds in the world itself
    world = _era_world()
    rng = np.random.default_rng(1)
    inter = world.interactions
    shuffled = inter.with_columns(
        pl.Series("timestamp", rng.permutation(inter["timestamp"].to_numpy()))
    )
    blind = World(
        name="era-blind",
        items=world.items,
        interactions=shuffled,
        users=world.users,
        rating_scale=(1.0, 5.0),
    ).validate()
    k = FEATURES.index("timeliness")
    real = fit_choice_model(world, _without_neighbours(build_catalog(world, dim=4, seed=0))).model
    noise = fit_choice_model(blind, _without_neighbours(build_catalog(blind, dim=4, seed=0))).model
    assert noise.era_width == 0 or abs(noise.logged_coef[k]) < real.logged_coef[k] / 2, (
        noise.logged_coef[k],
        real.logged_coef[k],
    )

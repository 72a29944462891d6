"""The faster paths give the answers of the plain ones: satiation looked up a slate at a time,
histories in a dense table or by binary search, lean events (docs/speed.md)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import recoworld.users.satiation as satiation
from recoworld.config import (
    OutputConfig,
    PopulationConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import scan_table
from recoworld.items.catalog import build_catalog
from recoworld.records import MINDSET_FIELDS
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study
from recoworld.users.persona import personas_from_history
from recoworld.users.satiation import CAPACITY, HistoryIndex, ItemMemory, KeySet
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def personas():  # noqa: ANN201
    world = synthetic_world(120, 300, seed=4, dim=4)
    return personas_from_history(world, build_catalog(world, dim=4, seed=0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_slates_satiation_lookups_equal_asking_position_by_position(personas, seed: int) -> None:  # noqa: ANN001
    # Small item ids so that slates repeat items and rings overflow (more than CAPACITY clicks).
    rng = np.random.default_rng(seed)
    n, k, few = len(personas), 12, 40
    fast, plain = ItemMemory(personas, 300, -4.6), ItemMemory(personas, 300, -4.6)
    for turn in range(20):
        rows = np.sort(rng.choice(n, 90, replace=False))
        slates = rng.integers(0, few, (rows.size, k))
        day = np.full(rows.size, float(turn // 4), np.float32)
        seen = fast.slate(rows, slates, day)
        for p in range(k):
            expect = plain.clicked_since(rows, slates[:, p], day)
            np.testing.assert_array_equal(seen.at(p), expect, err_msg=f"turn {turn} pos {p}")
            hit = np.flatnonzero(rng.random(rows.size) < 0.6)
            if hit.size:
                seen.clicked(p, hit)
                plain.remember(rows[hit], slates[hit, p], day[hit])
    assert (fast.next > CAPACITY).any()
    np.testing.assert_array_equal(fast.item, plain.item)


def test_history_lookups_agree_dense_and_by_binary_search(personas, monkeypatch) -> None:  # noqa: ANN001
    n_items = 300
    dense = HistoryIndex(personas.history, n_items)
    monkeypatch.setattr(satiation, "DENSE_HISTORY_CELLS", 0)
    keys = HistoryIndex(personas.history, n_items)
    assert dense.dense is not None and keys.dense is None
    template = np.where(np.arange(len(personas)) % 7 == 0, -1, personas.template)
    items = np.random.default_rng(0).integers(0, n_items, (len(personas), 50))
    expect = personas.history_of(n_items).toarray()
    expect[template < 0] = False
    np.testing.assert_array_equal(
        dense.contains(template[:, None], items), keys.contains(template[:, None], items)
    )
    np.testing.assert_array_equal(
        dense.contains(template[:, None], items), np.take_along_axis(expect, items, axis=1)
    )
    np.testing.assert_array_equal(keys.rows(template), expect)
    np.testing.assert_array_equal(keys.count(template), expect.sum(1))


def test_lean_events_leave_only_the_mindset_columns_null(tmp_path: Path) -> None:
    cfg = StudyConfig(
        name="lean",
        seed=5,
        world=WorldConfig(dataset="synthetic", synthetic_users=60, synthetic_items=80),
        population=PopulationConfig(size=40),
        simulation=SimulationConfig(sessions=2, turns=3, slate_size=5),
    )
    world = load_world_for(cfg.world, cfg.seed)
    lean_cfg = msgspec.structs.replace(cfg, output=OutputConfig(mindset=False))
    full = run_study(cfg, world, run_id="full", out_dir=tmp_path)
    lean = run_study(lean_cfg, world, run_id="lean", out_dir=tmp_path)

    def events(path: Path) -> pl.DataFrame:
        return scan_table(path, "events").collect().sort("user", "session", "turn", "position")

    a, b = events(full.path), events(lean.path)
    assert a.schema == b.schema
    assert b.select(pl.col(MINDSET_FIELDS).null_count()).sum_horizontal().item() == 4 * b.height
    assert a.select(pl.col(MINDSET_FIELDS).null_count()).sum_horizontal().item() == 0
    assert_frame_equal(a.drop(MINDSET_FIELDS), b.drop(MINDSET_FIELDS))
    assert_frame_equal(full.summary, lean.summary)


@pytest.mark.parametrize("n", [0, 1, 1000, 50_000])
def test_the_key_set_answers_as_membership_in_the_keys(n: int) -> None:
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 10 * n + 10, n)  # duplicates included
    s = KeySet(keys)
    known = np.resize(keys, 100) if n else np.zeros(0, np.int64)  # some that are in it
    ask = np.concatenate([rng.integers(-5, 10 * n + 20, 5000), known]).reshape(-1, 5)
    np.testing.assert_array_equal(s.contains(ask), np.isin(ask, keys) & (ask >= 0))

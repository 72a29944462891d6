"""Streaming populations: a population drawn block by block is the population drawn whole, and
a study whose population is streamed writes the same tables as one that holds it whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    Targeting,
    WorldConfig,
    decode_study,
)
from recoworld.io.runs import scan_table
from recoworld.items.catalog import build_catalog
from recoworld.recommenders.base import DENSE_SHOWN_ITEMS
from recoworld.study import lifecycle, preflight, runner
from recoworld.study import prepare as prepare_module
from recoworld.study.prepare import load_world_for, prepare_all
from recoworld.study.runner import run_study
from recoworld.study.shard import FULL_BATCH
from recoworld.users.persona import _ROW_FIELDS, personas_from_history
from recoworld.users.population import build_population, population_draw
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def world():  # noqa: ANN201
    w = synthetic_world(300, 120, seed=3)
    catalog = build_catalog(w, dim=8)
    return catalog, personas_from_history(w, catalog)


POPULATIONS = {
    "resampled": PopulationConfig(size=1000),
    "every match": PopulationConfig(size=0),
    "synthetic": PopulationConfig(size=700, source="synthetic"),
    "from the description": PopulationConfig(
        size=500, source="synthetic", target=Targeting(age=(5, 12), gender="F", activity="high")
    ),
    "targeted": PopulationConfig(size=600, target=Targeting(diversity="low")),
}


@pytest.mark.parametrize("cfg", POPULATIONS.values(), ids=list(POPULATIONS))
@pytest.mark.parametrize("block", [1, 97, 4096])
def test_a_population_drawn_by_blocks_is_the_population_drawn_whole(
    world, cfg: PopulationConfig, block: int
) -> None:
    catalog, base = world
    whole = build_population(base, catalog, cfg, seed=7)
    draw = population_draw(base, catalog, cfg, seed=7)
    rows, parts = zip(*draw.blocks(block))
    np.testing.assert_array_equal(np.concatenate(rows), np.arange(len(whole)))
    for f in _ROW_FIELDS:
        np.testing.assert_array_equal(
            np.concatenate([getattr(p, f) for p in parts]), getattr(whole, f), err_msg=f
        )
    # any rows, in any order, alone: a shard of the population
    pick = np.array([len(whole) - 1, 3, 0, len(whole) // 2])
    np.testing.assert_array_equal(draw.rows(pick).pref, whole.pref[pick])
    assert whole.targeted_likes == parts[0].targeted_likes


# ---- a study whose population is streamed ------------------------------------------------------

STUDY = StudyConfig(
    name="streamed",
    seed=5,
    world=WorldConfig(
        dataset="synthetic", synthetic_users=120, synthetic_items=80, embedding_dim=4
    ),
    population=PopulationConfig(size=300, segment_by="activity"),
    simulation=SimulationConfig(sessions=2, turns=3, slate_size=5, replicates=2),
    recommender=RecommenderConfig(kind="mf", candidates=20),
    creator=CreatorConfig(id="indie", items=[CreatorItem(title="Small Hours", tags=["drama"])]),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="boost", treatment="boost", target=Targeting(diversity="high")),
    ],
)
"""Two replicates, a targeted arm, segments by a jittered trait: every per-user thing that a
streamed population keeps apart (segment codes, treatment flags, uids across replicates)."""


def tables(path: Path) -> dict[str, pl.DataFrame]:
    out = {
        t: scan_table(path, t).collect().with_columns(pl.col(pl.Categorical).cast(pl.String))
        for t in ("events", "sessions", "user_metrics")
    }
    out["users"] = pl.read_parquet(path / "users.parquet")
    out["summary"] = pl.read_parquet(path / "summary.parquet")
    return {t: f.sort(f.columns[:6]) if t != "summary" else f for t, f in out.items()}


def test_a_streamed_population_gives_the_same_run_as_one_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = load_world_for(STUDY.world, STUDY.seed)
    whole = run_study(STUDY, world, run_id="whole", out_dir=tmp_path, workers=1)
    held = prepare_all(STUDY, world)
    assert all(p.population is not None for p in held)
    monkeypatch.setattr(runner, "STREAM_USERS", 10)
    monkeypatch.setattr(prepare_module, "STREAM_BLOCK", 7)
    monkeypatch.setattr(lifecycle, "STREAM_BLOCK", 7)
    streamed = prepare_all(STUDY, world, stream_above=10)
    assert all(p.population is None and p.segments is None for p in streamed)
    assert [p.size for p in streamed] == [len(p.population) for p in held]  # type: ignore[arg-type]
    for a, b in zip(held, streamed):
        for t, u in zip(a.treated, b.treated):
            np.testing.assert_array_equal(t, u)
        assert a.segment_names() == b.segment_names()
    run = run_study(STUDY, world, run_id="streamed", out_dir=tmp_path, workers=2)
    assert run.events == whole.events > 0
    for name, frame in tables(whole.path).items():
        assert_frame_equal(tables(run.path)[name], frame, check_row_order=True), name
    assert pq.ParquetFile(run.path / "users.parquet").num_row_groups > 1  # written by block


# ---- the memory pre-flight -------------------------------------------------------------------


def test_the_preflight_keeps_in_step_with_what_it_models() -> None:
    assert (preflight.STREAM_USERS, preflight.STREAM_BLOCK) == (
        prepare_module.STREAM_USERS,
        prepare_module.STREAM_BLOCK,
    )
    assert (preflight.FULL_BATCH, preflight.DENSE_SHOWN_ITEMS) == (FULL_BATCH, DENSE_SHOWN_ITEMS)


def scale_study(users: int, items: int = 0) -> StudyConfig:
    world = f'dataset = "synthetic"\nsynthetic_items = {items}' if items else 'dataset = "ml-100k"'
    return decode_study(f'name = "s"\n[world]\n{world}\n[population]\nsize = {users}\n')


def test_a_streamed_population_costs_the_preflight_a_block_and_a_few_bytes_per_user() -> None:
    terms = {n: preflight.memory_terms(scale_study(n), workers=2) for n in (10**6, 10**7)}
    per_user = (terms[10**7]["population"] - terms[10**6]["population"]) / (10**7 - 10**6)
    assert per_user == 2 + 1  # a segment code and one arm's treatment flag
    preflight.check_memory(scale_study(10**7), source="s.toml", workers=2, available=24 * 2**30)


def test_a_catalogue_free_batch_does_not_grow_with_the_catalogue() -> None:
    batches = [
        preflight.memory_terms(scale_study(10**5, items), workers=2)["batches"]
        for items in (10**5, 10**6, 10**7)
    ]
    assert batches[0] == batches[1] == batches[2] == 2 * FULL_BATCH * preflight.PER_FREE_USER
    dense = preflight.memory_terms(scale_study(10**5, 2000), workers=2)["batches"]
    assert dense == 2 * preflight.batch_users(2000) * 2000 * preflight.PER_CELL

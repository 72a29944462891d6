"""Streaming populations: a population drawn block by block is the population drawn whole, and
a study whose population is streamed writes the same tables as one that holds it whole."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld.config import PopulationConfig, Targeting
from recoworld.items.catalog import build_catalog
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

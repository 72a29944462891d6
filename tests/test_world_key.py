"""A world's random streams follow its content (World.key), not its name or folder: the same
data under two folder names gives identical fits, evaluations and studies; any change of
content changes the key."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import SimulationConfig, StudyConfig, WorldConfig
from recoworld.eval.fidelity import FidelitySettings, evaluate
from recoworld.io.runs import scan_table
from recoworld.items.catalog import build_catalog
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study
from recoworld.users.fit import fit_choice_model
from recoworld.world.loaders import load_world
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


def write_generic(world: World, folder: Path) -> Path:
    """``world`` as a generic folder (interactions, items, users as CSV)."""
    folder.mkdir(parents=True)
    world.interactions.write_csv(folder / "interactions.csv")
    world.items.with_columns(pl.col("tags").list.join("|")).write_csv(folder / "items.csv")
    world.users.select("user_id").write_csv(folder / "users.csv")
    return folder


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, World]:
    src = synthetic_world(60, 300, seed=3)
    root = tmp_path_factory.mktemp("twins")
    a = load_world("generic", write_generic(src, root / "alpha"))
    b = load_world("generic", write_generic(src, root / "some" / "other-name"))
    return a, b


def test_the_same_data_under_two_folder_names_has_one_key(twins: tuple[World, World]) -> None:
    a, b = twins
    assert (a.name, b.name) == ("alpha", "other-name")
    assert a.source != b.source
    assert a.key == b.key
    assert len(a.key) == 64 and int(a.key, 16) >= 0


def test_the_key_ignores_name_and_source_but_not_content(twins: tuple[World, World]) -> None:
    a, _ = twins
    assert replace(a, name="x", source="/elsewhere").key == a.key
    inter = a.interactions
    changed = {
        "a rating": inter.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("rating") + 1)
            .otherwise(pl.col("rating"))
            .alias("rating")
        ),
        "a timestamp": inter.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(pl.col("timestamp") + 1)
            .otherwise(pl.col("timestamp"))
            .alias("timestamp")
        ),
        "a dropped row": inter.slice(1),
        "the row order": inter.reverse(),
    }
    keys = {what: replace(a, interactions=frame).key for what, frame in changed.items()}
    assert a.key not in keys.values()
    assert len(set(keys.values())) == len(keys)
    items = a.items.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(["other"]))
        .otherwise(pl.col("tags"))
        .alias("tags")
    )
    assert replace(a, items=items).key != a.key
    assert replace(a, rating_scale=(0.0, 10.0)).key != a.key
    # string boundaries are part of the key: ("ab", "c") is not ("a", "bc")
    two = a.items.head(2).with_columns(pl.Series("title", ["ab", "c"]))
    other = a.items.head(2).with_columns(pl.Series("title", ["a", "bc"]))
    assert replace(a, items=two).key != replace(a, items=other).key


def test_the_same_data_under_two_names_fits_identically(twins: tuple[World, World]) -> None:
    fits = []
    for w in twins:
        cat = build_catalog(w, dim=4, seed=5)
        fits.append(fit_choice_model(w, cat, seed=5))
    a, b = ({**msgspec.to_builtins(f.report), "dataset": "", "seconds": 0} for f in fits)
    assert a == b
    np.testing.assert_array_equal(fits[0].model.coef, fits[1].model.coef)


def test_a_random_split_evaluation_is_the_same_under_two_names(
    twins: tuple[World, World],
) -> None:
    s = FidelitySettings(seed=2, split_order="random", simulate=False, embedding_dim=4)
    a, b = (evaluate(w, s) for w in twins)
    assert a.meta["world_key"] == b.meta["world_key"] == twins[0].key
    for name in ("discrimination", "ratings", "hit"):
        assert a.tables[name].drop("dataset").equals(b.tables[name].drop("dataset")), name


def test_a_study_on_the_same_data_under_two_names_is_identical(
    twins: tuple[World, World], tmp_path: Path
) -> None:
    results = []
    for w in twins:
        cfg = StudyConfig(
            name="twin",
            seed=4,
            world=WorldConfig(dataset="generic", path=w.source, embedding_dim=4),
            simulation=SimulationConfig(sessions=2, turns=2, slate_size=4),
        )
        world = load_world_for(cfg.world, cfg.seed)
        results.append(run_study(cfg, world, run_id=w.name, out_dir=tmp_path))
    ev = [
        scan_table(r.path, "events")
        .collect()
        .drop("run_id", strict=False)
        .with_columns(pl.col(pl.Categorical).cast(pl.String))
        for r in results
    ]
    keys = ["arm", "user", "session", "turn", "position"]
    assert ev[0].height > 0
    assert ev[0].sort(keys).equals(ev[1].sort(keys))

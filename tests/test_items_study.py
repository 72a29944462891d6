"""Done when: in a creator study, new items with the same tags and different descriptions get
measurably different placements and outcomes (issue 17).

ML-100K, sci-fi fans, a creator whose new items are all tagged Sci-Fi: half described as a
space opera in the spirit of Star Wars, half as a children's animated musical. Each new item's
placement is one draw among the items its content describes (``build_catalog``), so the test
compares the two descriptions over several items each (several draws), in one study:

- with ``[items] text = "embedding"`` the description moves the content prediction, and the
  donors are the Sci-Fi films whose texts are nearest (Star Wars, The Empire Strikes Back ...
  for the space opera); the space-opera items are expected to be clicked far more by sci-fi
  fans (the fitted choice model over the population) and are clicked more in the simulation;
- with ``text = "tags"`` both descriptions are the same content: identical predictions.

Needs ../shared/data/ml-100k and the embeddings extra; skipped with the reason otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed")

import recoworld.study.prepare as prepare_module  # noqa: E402
from recoworld.config import (  # noqa: E402
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    ItemsConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    Targeting,
    WorldConfig,
    check_study,
)
from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.items.catalog import build_catalog  # noqa: E402
from recoworld.items.text_embed import TextEncoder  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402
from recoworld.world.loaders import load_world  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "u.data").exists(), reason="needs ../shared/data/ml-100k"),
]

OPERA = (
    "An epic space opera: rebels, starships, laser swords and a galactic empire, in the "
    "spirit of Star Wars."
)
MUSICAL = (
    "A gentle animated musical for young children about a singing princess and her talking "
    "animal friends."
)
K = 6


def study(text: str) -> StudyConfig:
    items = [
        CreatorItem(item_id=f"{g}:{k}", title="Untitled", text=t, tags=["Sci-Fi"])
        for g, t in (("opera", OPERA), ("musical", MUSICAL))
        for k in range(K)
    ]
    cfg = StudyConfig(
        name="descriptions",
        seed=5,
        world=WorldConfig(dataset="ml-100k", path=str(DATA)),
        population=PopulationConfig(size=800, target=Targeting(likes=["sci-fi"])),
        simulation=SimulationConfig(sessions=2, turns=3, slate_size=10, replicates=1),
        recommender=RecommenderConfig(kind="mf", candidates=50),
        creator=CreatorConfig(id="c", items=items),
        items=ItemsConfig(text=text),  # type: ignore[arg-type]
        arms=[
            ArmConfig(name="control"),
            ArmConfig(name="inject", treatment="inject", position=0, rate=1.0),
        ],
    )
    check_study(cfg)
    return cfg


@pytest.fixture(scope="module")
def world():
    return load_world("ml-100k", DATA)


@pytest.fixture(scope="module")
def wired(text_encoder: TextEncoder):
    """The study's catalogue is built with the session's encoder (one model load, embeddings
    cached by content hash in .cache/embeddings: a rerun encodes nothing)."""
    mp = pytest.MonkeyPatch()
    real = build_catalog

    def patched(world, **kw):  # noqa: ANN001, ANN003
        return real(world, encoder=text_encoder, **kw)

    mp.setattr(prepare_module, "build_catalog", patched)
    yield
    mp.undo()


def prepared(cfg: StudyConfig, world):  # noqa: ANN001
    return prepare_module.prepare(cfg, world)


def expected_clicks(prep) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Per creator item, the population's mean click probability for it (the fitted choice
    model, top slot, before any dynamics): the opera items', the musical items'."""
    cat, pop = prep.catalog, prep.population
    items = np.flatnonzero(cat.is_creator_item)
    logit, _ = prep.model.static_logit(pop, np.arange(len(pop)), np.tile(items, (len(pop), 1)), cat)
    p = (1.0 / (1.0 + np.exp(-logit.astype(np.float64)))).mean(axis=0)
    return p[:K], p[K:]


def test_descriptions_move_placements_with_text_embeddings_only(world, wired) -> None:
    emb = prepared(study("embedding"), world).catalog
    tags = prepared(study("tags"), world).catalog
    assert emb.content == "embedding" and tags.content == "tags"
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    e, t = unit(emb.new_content), unit(tags.new_content)
    assert np.allclose(t[0], t[K])  # tags only: one prediction for both descriptions
    assert float(e[0] @ e[K]) < 0.99  # the description moved it
    # the space opera's placements are nearer the Star Wars films than the musical's
    sw = [emb.index_of(i) for i in ("50", "172", "181")]  # Star Wars, Empire, Jedi
    n = emb.n_items
    opera, musical = emb.emb[n - 2 * K : n - K], emb.emb[n - K :]
    assert (opera @ emb.emb[sw].T).mean() > (musical @ emb.emb[sw].T).mean() + 0.1


def test_descriptions_change_expected_and_simulated_outcomes(world, wired, tmp_path) -> None:
    cfg = study("embedding")
    prep = prepared(cfg, world)
    opera, musical = expected_clicks(prep)
    assert opera.mean() > 1.5 * musical.mean()

    result = run_study(cfg, world, run_id="descriptions", out_dir=tmp_path)
    events = scan_table(result.path, "events").collect()
    shown = (
        events.with_columns(pl.col("item_id").cast(pl.String))
        .filter((pl.col("arm") == "inject") & pl.col("is_creator_item"))
        .with_columns(pl.col("item_id").str.split(":").list.first().alias("description"))
    )
    by = shown.group_by("description").agg(pl.col("clicked").mean().alias("ctr"), pl.len())
    ctr = dict(zip(by["description"], by["ctr"]))
    n = dict(zip(by["description"], by["len"]))
    se = np.sqrt(sum(ctr[d] * (1 - ctr[d]) / n[d] for d in ctr))
    assert min(n.values()) > 300
    assert ctr["opera"] - ctr["musical"] > 2 * se, (ctr, n, se)

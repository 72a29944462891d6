"""Re-showing what a user already consumed must not pay in a study either (issue 15): a plug-in
recommender that serves every user the same best slate on every turn and session loses, on
engagement and on return, to one that serves fresh items of the same relevance order, in a
world whose logs hold no repeats and in one whose logs are all repeats."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from recoworld.config import decode_study
from recoworld.items.catalog import build_catalog
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study
from recoworld.users.fit import fit_choice_model

STUDY = """
name = "repeats"
seed = 5
[world]
dataset = "synthetic"
synthetic_users = 300
synthetic_items = 400
embedding_dim = 8
[population]
size = 600
[simulation]
sessions = 3
turns = 5
slate_size = 5
replicates = 1
""" + "".join(
    f"""[[arms]]
name = "{mode}"
[arms.recommender]
kind = "python"
target = "recoworld.testing.plugins:Relevant"
options = {{ mode = "{mode}" }}
"""
    for mode in ("fresh", "repeat")
)


@pytest.mark.parametrize("plays", [1.0, 20.0])
def test_a_recommender_that_repeats_loses_to_fresh_relevant_items(
    tmp_path: Path, plays: float
) -> None:
    """``plays``: every logged pair's play count (1: films, no repeats; 20: listening, 95% of
    consumptions are repeats, so the lasting satiation penalty is all but gone)."""
    cfg = decode_study(STUDY)
    world = load_world_for(cfg.world, cfg.seed)
    world = replace(world, interactions=world.interactions.with_columns(weight=pl.lit(plays)))
    assert fit_choice_model(
        world, build_catalog(world, dim=8, seed=0), seed=0
    ).model.repeat_share == pytest.approx(1 - 1 / plays)
    run = run_study(cfg, world, run_id="r", out_dir=tmp_path).path
    um = pl.read_parquet(run / "user_metrics" / "arm=*" / "*.parquet", hive_partitioning=True)
    per = um.group_by("arm").agg(
        clicks=(pl.col("clicks") / pl.col("impressions")).mean(),
        watch=(pl.col("watch_time") / pl.col("sessions")).mean(),
        back=pl.col("returned_first").mean(),
    )
    f = per.filter(pl.col("arm") == "fresh").row(0, named=True)
    r = per.filter(pl.col("arm") == "repeat").row(0, named=True)
    assert f["clicks"] > r["clicks"] and f["watch"] > r["watch"]
    assert f["back"] >= r["back"]

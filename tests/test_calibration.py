"""Calibration on a small study (the full check: benchmarks/bench_calibration.py): across many
seeds, each seed's pooled 95% interval covers the all-seed mean of the creator metrics and
their differences in most seeds, where one replicate's user-level interval does not."""

from __future__ import annotations

from pathlib import Path

import msgspec
import polars as pl
import pytest

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study

STUDY = StudyConfig(
    name="calibration",
    seed=1,
    world=WorldConfig(
        dataset="synthetic", synthetic_users=150, synthetic_items=120, embedding_dim=8
    ),
    population=PopulationConfig(size=1000, segment_by="none"),
    simulation=SimulationConfig(sessions=2, turns=3, slate_size=6),
    recommender=RecommenderConfig(kind="mf", candidates=30),
    creator=CreatorConfig(id="c", items=[CreatorItem(title="New", tags=["drama"])]),
    arms=[ArmConfig(name="control"), ArmConfig(name="boost", treatment="boost", boost=1.0)],
)
SEEDS = 16


def coverage(tmp: Path, replicates: int) -> pl.DataFrame:
    rows = []
    world = load_world_for(STUDY.world, 0)  # one world, as a real dataset is; the seeds vary
    for seed in range(1, SEEDS + 1):
        sim = msgspec.structs.replace(STUDY.simulation, replicates=replicates)
        cfg = msgspec.structs.replace(STUDY, seed=seed, simulation=sim)
        r = run_study(cfg, world, run_id=f"r{replicates}-{seed}", out_dir=tmp)
        rows.append(r.summary.filter(pl.col("segment") == "all"))
    f = pl.concat(rows).filter(pl.col("metric").is_in(["creator_reach", "creator_engagement"]))
    truth = f.group_by("arm", "metric").agg(t=pl.col("mean").mean(), d=pl.col("diff").mean())
    f = f.join(truth, on=["arm", "metric"])
    return f.group_by("arm", "metric").agg(
        value=((pl.col("ci_low") <= pl.col("t")) & (pl.col("t") <= pl.col("ci_high"))).mean(),
        diff=(
            (pl.col("diff_ci_low") <= pl.col("d")) & (pl.col("d") <= pl.col("diff_ci_high"))
        ).mean(),
    )


@pytest.mark.slow
def test_pooled_replicates_cover_the_all_seed_mean_where_one_replicate_does_not(
    tmp_path: Path,
) -> None:
    pooled, single = coverage(tmp_path, 8), coverage(tmp_path, 1)
    values = lambda f: [v for c in ("value", "diff") for v in f[c].to_list() if v is not None]  # noqa: E731
    assert min(values(pooled)) >= 0.75, pooled  # 16 seeds: 0.75 is 2 sd under 0.95
    assert sum(values(pooled)) > sum(values(single)), (pooled, single)

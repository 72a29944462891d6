"""Benchmark: are the summary's intervals honest? One study run at many seeds.

For each seed the study runs in full (world fit, placement of the creator's new items,
population, simulation) and its summary gives, per metric and per difference from control, a
95% interval. The mean over all seeds stands for the truth; a calibrated interval covers it in
about 95% of the seeds. Printed per quantity: the share of seeds whose interval covers the
all-seed mean, and the median interval width, for the study as configured (replicates pooled,
``simulation.replicates = 0``: automatic) beside the baseline in the same run: the same seeds
with one replicate (intervals over users only, as before replicates). The two are alternated
seed by seed.

    python benchmarks/bench_calibration.py [STUDY.toml] [--seeds 20] [--users 3000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recoworld.config import load_study  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402

HEADLINE = ("creator_reach", "creator_engagement", "ctr", "return_rate")


def coverage(frame: pl.DataFrame) -> pl.DataFrame:
    """Per arm x metric: the share of seeds whose interval covers the all-seed mean (of the
    value, and of the difference from control), and the median widths."""
    truth = frame.group_by("arm", "metric").agg(
        pl.col("mean").mean().alias("truth"), pl.col("diff").mean().alias("diff_truth")
    )
    f = frame.join(truth, on=["arm", "metric"])
    return (
        f.with_columns(
            ((pl.col("ci_low") <= pl.col("truth")) & (pl.col("truth") <= pl.col("ci_high"))).alias(
                "covers"
            ),
            (
                (pl.col("diff_ci_low") <= pl.col("diff_truth"))
                & (pl.col("diff_truth") <= pl.col("diff_ci_high"))
            ).alias("diff_covers"),
            (pl.col("ci_high") - pl.col("ci_low")).alias("width"),
            (pl.col("diff_ci_high") - pl.col("diff_ci_low")).alias("diff_width"),
        )
        .group_by("arm", "metric")
        .agg(
            pl.col("covers").mean(),
            pl.col("width").median(),
            pl.col("diff_covers").mean(),
            pl.col("diff_width").median(),
            pl.col("mean").std().alias("seed_sd"),
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("study", nargs="?", default=str(ROOT / "studies" / "creator_scifi.toml"))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--users", type=int, default=3000)
    args = ap.parse_args()
    study = Path(args.study)
    t0 = time.perf_counter()
    pooled, single = [], []
    for seed_block in range(args.seeds):  # alternate: one seed of each, in turn
        s = seed_block + 1
        pooled.append(summaries_one(study, s, args.users, 0))
        single.append(summaries_one(study, s, args.users, 1))
    a, b = coverage(pl.concat(pooled)), coverage(pl.concat(single))
    t = a.join(b, on=["arm", "metric"], suffix="_1rep").sort("arm", "metric")
    print(
        f"{study.name}, {args.users:,} users, {args.seeds} seeds "
        f"({time.perf_counter() - t0:.0f}s): share of seeds whose 95% interval covers the "
        "all-seed mean, and the median interval width; pooled replicates vs one replicate"
    )
    print(
        f"{'arm':<16} {'metric':<19} {'covers':>7} {'width':>9} {'1 rep':>7} {'width':>9}"
        f"   {'diff covers':>11} {'width':>9} {'1 rep':>7} {'width':>9}"
    )
    fmt = lambda x: "      -" if x is None else f"{x:7.2f}"  # noqa: E731
    wid = lambda x: "        -" if x is None else f"{x:9.4f}"  # noqa: E731
    for r in t.iter_rows(named=True):
        if r["metric"] not in HEADLINE:
            continue
        print(
            f"{r['arm']:<16} {r['metric']:<19} {fmt(r['covers'])} {wid(r['width'])} "
            f"{fmt(r['covers_1rep'])} {wid(r['width_1rep'])}   "
            f"{fmt(r['diff_covers']):>11} {wid(r['diff_width'])} "
            f"{fmt(r['diff_covers_1rep'])} {wid(r['diff_width_1rep'])}"
        )
    creator = t.filter(pl.col("metric").is_in(["creator_reach", "creator_engagement"]))

    def lowest(suffix: str) -> float:
        cols = [f"covers{suffix}", f"diff_covers{suffix}"]
        return min(v for c in cols for v in creator[c].to_list() if v is not None)

    print(
        "\nlowest coverage over creator_reach / creator_engagement and their differences: "
        f"{lowest(''):.2f} with pooled replicates (goal >= 0.90), {lowest('_1rep'):.2f} with one"
    )


def summaries_one(study: Path, seed: int, users: int | None, replicates: int) -> pl.DataFrame:
    """One seed's headline summary rows."""
    cfg = load_study(study)
    if users:
        cfg = msgspec.structs.replace(
            cfg, population=msgspec.structs.replace(cfg.population, size=users)
        )
    sim = msgspec.structs.replace(cfg.simulation, replicates=replicates)
    cfg = msgspec.structs.replace(cfg, seed=seed, simulation=sim)
    world = load_world_for(cfg.world, cfg.seed, base_dir=study.parent)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_study(cfg, world, run_id="s", out_dir=Path(tmp), workers=2)
    return r.summary.filter(pl.col("segment") == "all").with_columns(seed=pl.lit(seed))


if __name__ == "__main__":
    main()

"""Benchmark: are the summary's intervals honest? One study run at many seeds.

For each seed the study runs in full (world fit, placement of the creator's new items,
population, simulation) and its summary gives, per metric and per difference from control, a
95% interval. The mean over all seeds stands for the truth; a calibrated interval covers it in
about 95% of the seeds. Printed per quantity: the share of seeds whose interval covers the
all-seed mean with its own 95% interval (Clopper-Pearson: with 20 seeds a coverage figure is
itself uncertain), and the median interval width, for the study as configured (replicates
pooled, ``simulation.replicates = 0``: automatic) beside the baseline in the same run: the same
seeds with one replicate (intervals over users only, as before replicates). The two are
alternated seed by seed.

Then, for the creator metrics, a check of what the pooled interval assumes: that a seed's
replicates are independent draws of the same thing a seed is. If they are, the variance of the
seed means is the mean of the seeds' squared standard errors (ratio 1), and the one-way ANOVA
of the replicate means by seed has F near 1 (printed with its p-value); a ratio well above 1
would mean something shared by the replicates of a seed that the interval does not see.

    python benchmarks/bench_calibration.py [STUDY.toml] [--seeds 20] [--first 1] [--users 3000]
        [--world DATASET] [--save DIR]

``--world`` runs the study on another world (e.g. ml-latest-small: data cache or
../shared/data). ``--save DIR`` keeps each seed's summary rows (and its replicates' creator
metrics) in DIR and reuses them on a re-run, so a long benchmark can be resumed or extended.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recoworld.config import load_study  # noqa: E402
from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.report.data import replicate_means  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402

HEADLINE = ("creator_reach", "creator_engagement", "ctr", "return_rate")
CREATOR = ("creator_reach", "creator_engagement")


def coverage(frame: pl.DataFrame) -> pl.DataFrame:
    """Per arm x metric: the number of seeds and how many of their intervals cover the all-seed
    mean (of the value, and of the difference from control), and the median widths."""
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
            pl.len().alias("seeds"),
            pl.col("covers").sum(),
            pl.col("width").median(),
            pl.col("diff_covers").count().alias("diff_seeds"),
            pl.col("diff_covers").sum(),
            pl.col("diff_width").median(),
        )
        .with_columns(  # the control has no difference
            diff_covers=pl.when(pl.col("diff_seeds") > 0).then(pl.col("diff_covers"))
        )
    )


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of a coverage k / n."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(sps.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def cover_text(k: int | None, n: int) -> str:
    if k is None or n == 0:
        return f"{'-':>17}"
    lo, hi = clopper_pearson(k, n)
    return f"{k / n:5.2f} [{lo:.2f},{hi:.2f}]"


def spread_check(reps: pl.DataFrame, summary: pl.DataFrame, draws: int = 20000) -> pl.DataFrame:
    """Per arm x creator metric, of the value and of the difference from control: the variance
    of the seeds' means over the mean of their squared standard errors (1 when the replicates
    of a seed vary as seeds do), the one-way ANOVA of replicate means by seed (F, p), and the
    coverage the interval has when a seed's replicates are drawn at random from every seed's
    (``draws`` times; the replicates' t interval without the user-noise floor, so a lower bound
    on the summary's): what the interval gives for this distribution of replicate means, known
    to about +-0.003 rather than the +-0.05 of the seeds' own coverage."""
    rows = []
    rng = np.random.default_rng(0)
    for (arm, metric, kind), g in reps.group_by("arm", "metric", "kind", maintain_order=True):
        by_seed = [x["value"].to_numpy() for _, x in g.group_by("seed", maintain_order=True)]
        by_seed = [x for x in by_seed if x.size >= 2]
        if len(by_seed) < 2 or np.var(np.concatenate(by_seed)) == 0:
            continue
        f, p = sps.f_oneway(*by_seed)
        s = summary.filter((pl.col("arm") == arm) & (pl.col("metric") == metric))
        col, se = ("mean", "se") if kind == "value" else ("diff", "diff_se")
        ratio = s[col].var() / (s[se] ** 2).mean() if s.height > 1 else float("nan")
        v = np.concatenate(by_seed)
        r = int(np.median([x.size for x in by_seed]))
        x = v[rng.random((draws, v.size)).argsort(axis=1)[:, :r]]  # r distinct replicates
        half = sps.t.ppf(0.975, r - 1) * x.std(axis=1, ddof=1) / np.sqrt(r)
        resampled = float((np.abs(x.mean(axis=1) - v.mean()) <= half).mean())
        rows.append(
            {
                "arm": arm,
                "metric": metric,
                "kind": kind,
                "ratio": ratio,
                "F": f,
                "p": p,
                "resampled": resampled,
                "skew": float(sps.skew(v)),
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("study", nargs="?", default=str(ROOT / "studies" / "creator_scifi.toml"))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first", type=int, default=1, help="the first seed (default 1)")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--world", help="run the study on this dataset instead of its own")
    ap.add_argument("--save", type=Path, help="keep (and reuse) each seed's rows in this folder")
    args = ap.parse_args()
    study = Path(args.study)
    t0 = time.perf_counter()
    pooled, single, reps = [], [], []
    for s in range(args.first, args.first + args.seeds):  # alternate: one seed of each, in turn
        p, r = summaries_one(study, s, args.users, 0, args.world, args.save)
        pooled.append(p)
        reps.append(r)
        single.append(summaries_one(study, s, args.users, 1, args.world, args.save)[0])
    a, b = coverage(pl.concat(pooled)), coverage(pl.concat(single))
    t = a.join(b, on=["arm", "metric"], suffix="_1rep").sort("arm", "metric")
    world = args.world or load_study(study).world.dataset
    print(
        f"{study.name} on {world}, {args.users:,} users, {args.seeds} seeds "
        f"({time.perf_counter() - t0:.0f}s): share of seeds whose 95% interval covers the "
        "all-seed mean [its 95% Clopper-Pearson interval], and the median interval width; "
        "pooled replicates vs one replicate"
    )
    print(
        f"{'arm':<15} {'metric':<19} {'covers':>17} {'width':>7} {'1 rep':>17} {'width':>7}"
        f" | {'diff covers':>17} {'width':>7} {'1 rep':>17} {'width':>7}"
    )
    wid = lambda x: "      -" if x is None else f"{x:7.4f}"  # noqa: E731
    for r in t.iter_rows(named=True):
        if r["metric"] not in HEADLINE:
            continue
        n = r["seeds"]
        print(
            f"{r['arm']:<15} {r['metric']:<19} {cover_text(r['covers'], n)} {wid(r['width'])} "
            f"{cover_text(r['covers_1rep'], n)} {wid(r['width_1rep'])} | "
            f"{cover_text(r['diff_covers'], r['diff_seeds'])} {wid(r['diff_width'])} "
            f"{cover_text(r['diff_covers_1rep'], r['diff_seeds_1rep'])} "
            f"{wid(r['diff_width_1rep'])}"
        )
    creator = t.filter(pl.col("metric").is_in(CREATOR))

    def lowest(suffix: str) -> float:
        cols = [f"covers{suffix}", f"diff_covers{suffix}"]
        return min(
            v / n for c in cols for v, n in zip(creator[c], creator["seeds"]) if v is not None
        )

    print(
        "\nlowest coverage over creator_reach / creator_engagement and their differences: "
        f"{lowest(''):.2f} with pooled replicates (goal >= 0.90), {lowest('_1rep'):.2f} with one"
    )
    check = spread_check(pl.concat(reps), pl.concat(pooled))
    if check.height:
        print(
            "\nare a seed's replicates draws of what a seed is? var(seed means) / mean(se^2) "
            "(1 if so) and the one-way ANOVA of replicate means by seed; and the coverage of "
            "the replicates' t interval with replicates resampled from all seeds (a lower bound "
            "on the summary's), with the skewness of the replicate means"
        )
        for r in check.iter_rows(named=True):
            print(
                f"{r['arm']:<15} {r['metric']:<19} {r['kind']:<5} ratio {r['ratio']:5.2f}  "
                f"F {r['F']:5.2f}  p {r['p']:.3f}   resampled {r['resampled']:.3f}  "
                f"skew {r['skew']:+.2f}"
            )


def summaries_one(
    study: Path, seed: int, users: int | None, replicates: int, world: str | None, save: Path | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One seed's headline summary rows, and its replicates' means of the creator metrics and
    of their paired differences from control (arm, metric, kind, replicate, value)."""
    keep = save / f"r{replicates}-s{seed}" if save else None
    if keep and (keep / "reps.parquet").is_file():
        return pl.read_parquet(keep / "summary.parquet"), pl.read_parquet(keep / "reps.parquet")
    cfg = load_study(study)
    if users:
        cfg = msgspec.structs.replace(
            cfg, population=msgspec.structs.replace(cfg.population, size=users)
        )
    if world:
        cfg = msgspec.structs.replace(
            cfg, world=msgspec.structs.replace(cfg.world, dataset=world, path=None)
        )
    sim = msgspec.structs.replace(cfg.simulation, replicates=replicates)
    cfg = msgspec.structs.replace(cfg, seed=seed, simulation=sim)
    w = load_world_for(cfg.world, cfg.seed, base_dir=study.parent)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_study(cfg, w, run_id="s", out_dir=Path(tmp), workers=2)
        um = scan_table(r.path, "user_metrics").collect()
    summary = r.summary.filter(pl.col("segment") == "all").with_columns(seed=pl.lit(seed))
    reps = _replicate_values(um, cfg.arms[0].name).with_columns(seed=pl.lit(seed))
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        summary.write_parquet(keep / "summary.parquet")
        reps.write_parquet(keep / "reps.parquet")  # last: its presence marks the seed done
    return summary, reps


def _replicate_values(user_metrics: pl.DataFrame, control: str) -> pl.DataFrame:
    """arm, metric, kind (value | diff), replicate, value: each replicate's mean of the creator
    metrics, and of their difference from the control arm's (the same users)."""
    m = replicate_means(user_metrics).filter(pl.col("metric").is_in(CREATOR))
    base = m.filter(pl.col("arm") == control).select("replicate", "metric", c=pl.col("mean"))
    value = m.select("arm", "metric", "replicate", value=pl.col("mean"), kind=pl.lit("value"))
    diff = (
        m.filter(pl.col("arm") != control)
        .join(base, on=["replicate", "metric"])
        .select("arm", "metric", "replicate", value=pl.col("mean") - pl.col("c"))
        .with_columns(kind=pl.lit("diff"))
    )
    return pl.concat([value, diff]).select("arm", "metric", "kind", "replicate", "value")


if __name__ == "__main__":
    main()

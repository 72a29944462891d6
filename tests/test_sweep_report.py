"""The sweep's pooled effects (recoworld/sweep/pooled.py) and its report pages: lift, Holm / BH
over the whole sweep table, significance, MDE and the ranking, each shown as the Parquet holds
it; how to read them, the warnings, HTML escaping, and the CLI's tables."""

from __future__ import annotations

import datetime
import functools
import re
from html import unescape
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from scipy import stats as sps

from recoworld.cli import main
from recoworld.io.schema import SWEEP_POOLED, SWEEP_SUMMARY
from recoworld.report.build import write_report
from recoworld.study import inference
from recoworld.study.runner import run_study
from recoworld.sweep import (
    POOLED_FILE,
    cell_id,
    load_sweep,
    pool_seeds,
    ranking_table,
    read_sweep_pooled,
    run_sweep,
    sweep_table,
    write_sweep_pooled,
    write_sweep_summary,
)

ROOT = Path(__file__).resolve().parents[1]
QUICK_STUDY = ROOT / "studies" / "quick_synthetic.toml"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    """The quick study (control, inject) x mf, popular x one population x seeds 1-3, 90 users,
    and its report."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = tmp / "three.toml"
    path.write_text(
        f'name = "three"\nstudies = ["{QUICK_STUDY}"]\nseeds = [1, 2, 3]\nusers = 90\n'
        '[[recommenders]]\nname = "mf"\nkind = "mf"\n'
        '[[recommenders]]\nname = "popular"\nkind = "popular"\nfollow_instructions = false\n'
        '[[populations]]\nname = "all"\n'
    )
    result = run_sweep(
        load_sweep(path),
        runner=functools.partial(run_study, workers=1),
        out_root=tmp / "out",
        day=datetime.date(2025, 1, 31),
    )
    return result, write_report(result.path).path.read_text()


def section(html: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert m, f"no section {anchor!r}"
    return m.group(1)


def tables_by_heading(html: str) -> dict[str, list[list[str]]]:
    """Each ``<h3>`` heading's table, as rows of cell texts (header first)."""
    out = {}
    for head, body in re.findall(r"<h3>(.*?)</h3>(<table>.*?</table>)", html, re.S):
        out[unescape(head)] = [
            [
                unescape(re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)
            ]
            for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        ]
    return out


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def ci(m: float | None, lo: float | None, hi: float | None, sign: bool = False) -> str:
    if m is None:
        return "–"
    f = "{:+.4f}" if sign else "{:.4f}"
    return f.format(m) if lo is None else f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def p_text(v: float | None) -> str:
    return "–" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def share(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def lift_text(r: dict) -> str:
    if r["lift"] is None:
        return "–"
    if r["lift_ci_low"] is None:
        return f"{r['lift']:+.1f}%"
    return f"{r['lift']:+.1f}% [{r['lift_ci_low']:+.1f}%, {r['lift_ci_high']:+.1f}%]"


def shown(r: dict) -> list[str]:
    """What the report's pooled table shows for one row of sweep_pooled.parquet."""
    head = [
        r["study"], r["population"], r["arm"], r["recommender"], str(r["seeds"]), f"{r['n']:,}",
        ci(r["mean"], r["ci_low"], r["ci_high"]), share(r["between_share"]), str(r["rank"]),
    ]  # fmt: skip
    if r["diff"] is None:
        return [*head, "(control)", *[""] * 7]
    return [
        *head,
        ci(r["diff"], r["diff_ci_low"], r["diff_ci_high"], sign=True),
        lift_text(r),
        p_text(r["p_value"]),
        p_text(r["p_holm"]),
        p_text(r["q_bh"]),
        "yes" if r["significant"] else "no",
        f"{r['mde']:,.4f}",
        share(r["diff_between_share"]),
    ]


# --- the pooled table holds the effects -------------------------------------------------------


def test_the_pooled_file_has_every_column_with_its_description(sweep) -> None:
    result, _ = sweep
    pooled = read_sweep_pooled(result.path / POOLED_FILE)
    assert pooled.columns == SWEEP_POOLED.names
    assert pooled.equals(result.pooled)
    fields = pq.read_schema(result.path / POOLED_FILE)
    for name in ("lift", "lift_ci_low", "p_value", "p_holm", "q_bh", "significant", "mde"):
        assert fields.field(name).metadata[b"description"], name


def test_holm_and_bh_span_every_difference_of_the_sweep_table(sweep) -> None:
    pooled = sweep[0].pooled
    treated = pooled.filter(pl.col("diff").is_not_null())
    control = pooled.filter(pl.col("diff").is_null())
    for col in ("lift", "lift_ci_low", "p_value", "p_holm", "q_bh", "significant", "mde"):
        assert control[col].is_null().all(), col
    d, se, df = (treated[c].to_numpy() for c in ("diff", "diff_se", "diff_df"))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(d == 0, 1.0, np.where(se == 0, 0.0, 2 * sps.t.sf(np.abs(d) / se, df)))
    np.testing.assert_allclose(treated["p_value"].to_numpy(), p, rtol=1e-12)
    # one family: both recommenders, every metric
    m = len(p)
    assert m == 2 * 7
    order = np.argsort(p, kind="stable")
    holm = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    want = np.empty(m)
    want[order] = holm
    np.testing.assert_allclose(treated["p_holm"].to_numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(treated["q_bh"].to_numpy(), inference.benjamini_hochberg(p))
    assert treated["significant"].to_list() == [bool(x <= 0.05) for x in want]
    np.testing.assert_allclose(
        treated["mde"].to_numpy(),
        (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * se,
        rtol=1e-12,
    )


def test_the_lift_is_the_pooled_difference_over_the_pooled_control_mean(sweep) -> None:
    pooled = sweep[0].pooled
    keys = ["study", "recommender", "population", "metric"]
    control = pooled.filter(pl.col("arm") == "control").select(*keys, c=pl.col("mean"))
    rows = pooled.filter(pl.col("arm") == "inject").join(control, on=keys)
    assert rows.height == 2 * 7
    for r in rows.iter_rows(named=True):
        if r["c"] == 0:
            assert r["lift"] is None
        else:
            assert r["lift"] == pytest.approx(100 * r["diff"] / r["c"], rel=1e-12)


def summary_rows(rows: list[dict]) -> pl.DataFrame:
    """A sweep summary from ``rows``; unset columns null; defaults: study 's', population
    'all', metric 'ctr', n 200."""
    schema = pl.from_arrow(SWEEP_SUMMARY.empty_table()).schema
    full = []
    for r in rows:
        r = {"study": "s", "population": "all", "metric": "ctr", "n": 200, **r}
        r["cell"] = cell_id(r["study"], r["recommender"], r["population"], r["seed"])
        full.append({c: r.get(c) for c in schema})
    return pl.DataFrame(full, schema=schema, orient="row")


def paired_seeds(
    control: list[float], diff: list[float], se: float, *, recommender: str = "mf", **keys
) -> list[dict]:
    """Per seed a control row and an inject row (inject = control + diff), each with ``se``."""
    out = []
    for k, (c, d) in enumerate(zip(control, diff, strict=True)):
        base = {"recommender": recommender, "seed": k + 1, "se": se, "df": 199.0, **keys}
        out.append({**base, "arm": "control", "mean": c})
        out.append(
            {**base, "arm": "inject", "mean": c + d, "diff": d, "diff_se": se, "diff_df": 199.0}
        )
    return out


def test_seeds_that_disagree_give_the_lift_the_t_interval_of_their_linearised_lifts() -> None:
    control, diff = [0.20, 0.30, 0.25, 0.22], [0.02, 0.09, 0.01, 0.05]
    row = pool_seeds(summary_rows(paired_seeds(control, diff, 0.001))).row(1, named=True)
    c, d = np.mean(control), np.mean(diff)
    lift = d / c
    z = (np.array(diff) - lift * np.array(control)) / c  # each seed's lift, linearised
    half = sps.t.ppf(0.975, 3) * z.std(ddof=1) / 2
    assert row["lift"] == pytest.approx(100 * lift, rel=1e-12)
    assert row["lift_ci_low"] == pytest.approx(100 * (lift - half), rel=1e-9)
    assert row["lift_ci_high"] == pytest.approx(100 * (lift + half), rel=1e-9)


# --- the report shows them --------------------------------------------------------------------


def test_the_report_shows_every_pooled_row_as_the_parquet_holds_it(sweep) -> None:
    result, html = sweep
    pooled = read_sweep_pooled(result.path / POOLED_FILE)
    tables = tables_by_heading(section(html, "pooled"))
    for metric in pooled["metric"].unique(maintain_order=True):
        header, *body = tables[metric]
        assert header[:9] == [
            "study", "population", "arm", "recommender", "seeds", "users", "mean [95% CI]",
            "between share (mean)", "rank",
        ]  # fmt: skip
        want = [shown(r) for r in pooled.filter(pl.col("metric") == metric).iter_rows(named=True)]
        assert body == want
    assert "<svg" in section(html, "pooled")  # the pooled effects, Holm-filled


def test_the_ranking_lists_variants_in_rank_order_with_their_intervals(sweep) -> None:
    result, html = sweep
    pooled = result.pooled
    tables = tables_by_heading(section(html, "ranking"))
    for metric in ("ctr", "creator_engagement"):
        header, *body = tables[metric]
        assert header == [
            "study / population", "arm", "rank", "recommender", "mean [95% CI]", "overlaps best",
        ]  # fmt: skip
        for arm in ("control", "inject"):
            rows = pooled.filter((pl.col("metric") == metric) & (pl.col("arm") == arm))
            want = [
                [str(r["rank"]), r["recommender"], ci(r["mean"], r["ci_low"], r["ci_high"]),
                 "–" if r["overlaps_best"] is None else "yes" if r["overlaps_best"] else "no"]
                for r in rows.sort("rank", maintain_order=True).iter_rows(named=True)
            ]  # fmt: skip
            assert [b[2:] for b in body if b[1] == arm] == want


def test_how_to_read_names_the_family_and_what_the_intervals_cover(sweep) -> None:
    result, html = sweep
    read = text_of(section(html, "read"))
    tests = result.pooled["p_value"].is_not_null().sum()
    assert f"Holm's adjustment over the whole pooled table ({tests} tests" in read
    assert "Each row pools the sweep's 3 seeds" in read
    assert "Pooled table from sweep_pooled.parquet." in read
    for term in ("Lift", "MDE", "Rank", "Overlaps best", "Between share", "q (BH)"):
        assert term in read


def write_folder(root: Path, summary: pl.DataFrame, *, pooled: bool = True) -> Path:
    folder = root / "sw" / "date=2025-01-31"
    write_sweep_summary(summary, folder / "sweep_summary.parquet")
    if pooled:
        write_sweep_pooled(pool_seeds(summary), folder / POOLED_FILE)
    return folder


@pytest.mark.parametrize(
    ("control", "diff", "warned"),
    [
        ([0.2, 0.2, 0.2], [0.01, 0.01, 0.01], []),
        ([0.1, 0.3, 0.2], [0.01, 0.01, 0.01], ["ctr mean in 2 of 2"]),
        ([0.2, 0.2, 0.2], [0.0, 0.05, 0.1], ["ctr mean in 1 of 2", "ctr difference in 1 of 1"]),
        ([0.2], [0.01], ["One seed"]),
    ],
    ids=["seeds agree", "seeds spread", "effects spread", "one seed"],
)
def test_the_warnings_appear_exactly_when_they_should(
    tmp_path: Path, control: list[float], diff: list[float], warned: list[str]
) -> None:
    folder = write_folder(tmp_path, summary_rows(paired_seeds(control, diff, 0.002)))
    html = write_report(folder).path.read_text()
    warnings = re.findall(r'<p class="warn">(.*?)</p>', html, re.S)
    text = " ".join(text_of(w) for w in warnings)
    for w in warned:
        assert w in text
    assert bool(warnings) == bool(warned)
    console = Console(record=True, width=400)
    console.print(ranking_table(read_sweep_pooled(folder / POOLED_FILE)))
    caption = " ".join(console.export_text().split())
    assert ("warning:" in caption) == bool(warned)


def test_a_folder_without_an_up_to_date_pooled_file_is_pooled_again(tmp_path: Path) -> None:
    summary = summary_rows(paired_seeds([0.1, 0.3, 0.2], [0.01, 0.03, 0.02], 0.002))
    folder = write_folder(tmp_path, summary, pooled=False)
    html = write_report(folder).path.read_text()
    assert "pooled here (no sweep_pooled.parquet in the folder)" in text_of(html)
    want = [shown(r) for r in pool_seeds(summary).iter_rows(named=True)]
    assert tables_by_heading(section(html, "pooled"))["ctr"][1:] == want
    # one written before lift and p-values were columns
    old = pool_seeds(summary).drop("lift", "p_value", "p_holm", "q_bh", "significant", "mde")
    from recoworld.io.tables import write_table

    write_table(folder / POOLED_FILE, old.to_arrow(), "sweep_pooled")
    html = write_report(folder).path.read_text()
    assert "written by an earlier RecoWorld" in text_of(html)
    assert tables_by_heading(section(html, "pooled"))["ctr"][1:] == want


def test_names_from_the_sweep_are_escaped(tmp_path: Path) -> None:
    def page(study: str, population: str, arm: str, root: Path) -> str:
        rows = paired_seeds([0.1, 0.3], [0.02, 0.06], 0.002, study=study, population=population)
        for r in rows:
            r["arm"] = arm if r["arm"] == "inject" else "control"
        return write_report(write_folder(root, summary_rows(rows))).path.read_text()

    evil = '<script>alert("x")</script> & <b>'
    html = page(evil, "p<1>", "<i>inject</i>", tmp_path / "evil")
    plain = page("s", "p1", "inject", tmp_path / "plain")
    assert "<script" not in html and "p<1>" not in html and "<i>inject</i>" not in html
    for tag in ("<b>", "<i>"):  # no more than the page's own markup
        assert html.count(tag) == plain.count(tag), tag
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    assert "&lt;i&gt;inject&lt;/i&gt;" in html
    rows = tables_by_heading(section(html, "pooled"))["ctr"]
    assert rows[1][0] == evil and rows[2][2] == "<i>inject</i>"


# --- the CLI's tables -------------------------------------------------------------------------


def test_the_cli_tables_show_the_pooled_lift_and_flags(sweep) -> None:
    result, _ = sweep
    console = Console(record=True, width=240)
    console.print(ranking_table(result.pooled, summary=result.summary))
    console.print(sweep_table(result.summary))
    text = console.export_text()
    r = result.pooled.filter(
        (pl.col("recommender") == "mf") & (pl.col("arm") == "inject") & (pl.col("metric") == "ctr")
    ).row(0, named=True)
    half = (r["diff_ci_high"] - r["diff_ci_low"]) / 2
    assert f"Δ {r['diff']:+.4f} ± {half:.4f}" in text
    lift = f"{r['lift']:+.1f}% [{r['lift_ci_low']:+.1f}, {r['lift_ci_high']:+.1f}]"
    assert f"{lift} {'*' if r['significant'] else ''} q={r['q_bh']:.2g}".replace("  ", " ") in (
        text.replace("  ", " ")
    )
    caption = " ".join(text.split())
    assert "* = significant after Holm over the whole table" in caption
    assert "significant after Holm over the cell's own summary" in caption


def test_recoworld_report_writes_the_sweep_page(sweep, capsys: pytest.CaptureFixture[str]) -> None:
    result, html = sweep
    out = result.path / "again.html"
    assert main(["report", str(result.path), "-o", str(out)]) == 0
    assert "sweep report" in capsys.readouterr().out
    assert out.read_text() == html

"""`recoworld report`: the self-contained HTML report of a run and of a sweep, checked against
the run's Parquet files; and the one-line errors for missing, partial, damaged or older runs."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from recoworld.cli import main
from recoworld.config import ArmConfig
from recoworld.io.runs import MANIFEST, reseal, scan_table
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, TABLE_KEY
from recoworld.report.build import write_report
from recoworld.report.data import load_run, paired_effect, run_warnings
from recoworld.report.sample import FEELINGS, SAMPLE_STUDY, add_llm_records, sample_run
from recoworld.study.metrics import METRICS
from recoworld.study.pooling import pool
from recoworld.study.runner import run_study
from recoworld.sweep import write_sweep_summary
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def report(run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(run, out)
    return out.read_text()


def placebo_run(root: Path, replicates: int, *, placebo: bool = True) -> Path:
    """The sample study with an inject-placebo arm beside inject, ``replicates`` replicates."""
    cfg = SAMPLE_STUDY
    arms = list(cfg.arms)
    if placebo:
        arms.append(
            ArmConfig(
                name="inject-placebo", treatment="inject", position=1, rate=0.5,
                placebo_of="inject",
            )
        )  # fmt: skip
    cfg = msgspec.structs.replace(
        cfg,
        arms=arms,
        simulation=msgspec.structs.replace(cfg.simulation, replicates=replicates),
    )
    world = synthetic_world(cfg.world.synthetic_users, cfg.world.synthetic_items, seed=cfg.seed)
    run_id = f"r{replicates}{'p' if placebo else ''}"
    return run_study(cfg, world, run_id=run_id, out_dir=root, overwrite=True).path


@pytest.fixture(scope="module")
def placebo3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A placebo study with 3 replicates and its report."""
    path = placebo_run(tmp_path_factory.mktemp("placebo3"), 3)
    return path, write_report(path).path.read_text()


@pytest.fixture(scope="module")
def placebo1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A placebo study with one replicate and its report."""
    path = placebo_run(tmp_path_factory.mktemp("placebo1"), 1)
    return path, write_report(path).path.read_text()


@pytest.fixture()
def copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def text_of(html: str) -> str:
    """The page's visible text, tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def section(html: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert m, f"no section {anchor!r}"
    return m.group(1)


def rows_of(html: str) -> list[list[str]]:
    """Every table row's cells as text."""
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr, re.S)
        ]
        for tr in re.findall(r"<tr>(.*?)</tr>", html, re.S)
    ]


# --- the run report ------------------------------------------------------------------------------


def test_the_report_is_one_self_contained_file(report: str) -> None:
    assert report.startswith("<!DOCTYPE html>")
    for needs_network in ("<script", "<link", "<img", "<iframe", "src=", "@import"):
        assert needs_network not in report, needs_network
    assert not re.search(r"url\((?!#)", report)  # only references inside the page (SVG clip paths)
    # SVG namespaces are names, not fetches; no other address appears
    assert set(re.findall(r"https?://[^\s\"'<]+", report)) == {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    for anchor in (
        "read",
        "setup",
        "results",
        "engagement",
        "retention",
        "creator",
        "instructions",
        "sessions",
    ):
        section(report, anchor)
    # inline matplotlib SVGs: forest, engagement, session length, retention, creator reach,
    # creator reach per replicate (the sample study runs several replicates)
    assert report.count("<svg") == 6
    assert report.count('<g id="figure_1">') == 6  # as matplotlib draws them


def test_setup_names_the_study_arms_and_creator_items(run: Path, report: str) -> None:
    study = json.loads((run / "study.json").read_text())
    setup = text_of(section(report, "setup"))
    assert study["description"] in setup
    assert "inject at position 1 in 0.5 of slates" in setup
    for item in study["creator"]["items"]:
        assert item["title"] in setup


def test_headline_table_holds_the_summary_with_cis(run: Path, report: str) -> None:
    summary = scan_table(run, "summary").filter(pl.col("segment") == "all").collect()
    results = rows_of(section(report, "results"))
    means = {r[0]: r for r in results if len(r) == 3 and r[0] in set(summary["metric"])}
    assert set(means) == set(summary["metric"])
    for r in summary.iter_rows(named=True):
        cells = means[r["metric"]]
        col = 1 if r["arm"] == "control" else 2
        assert cells[col] == f"{r['mean']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"


def fmt_p(v: float | None) -> str:
    return "–" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def fmt_lift(r: dict) -> str:
    if r["lift"] is None:
        return "–"
    if r["lift_ci_low"] is None:
        return f"{r['lift']:+.1f}%"
    return f"{r['lift']:+.1f}% [{r['lift_ci_low']:+.1f}%, {r['lift_ci_high']:+.1f}%]"


def effect_cells(r: dict) -> list[str]:
    """The report's cells of one paired difference, from a summary-like row."""
    share = r["diff_between_share"]
    return [
        f"{r['diff']:+.4f} [{r['diff_ci_low']:+.4f}, {r['diff_ci_high']:+.4f}]",
        fmt_lift(r),
        fmt_p(r["p_value"]),
        fmt_p(r["p_holm"]),
        fmt_p(r["q_bh"]),
        "yes" if r["significant"] else "no",
        f"{r['mde']:,.4f}",
        "–" if share is None else f"{100 * share:.0f}%",
    ]


def test_every_difference_has_its_lift_holm_q_and_mde_beside_it(run: Path, report: str) -> None:
    summary = scan_table(run, "summary").collect()
    results = section(report, "results")
    rows = {(r[0], r[1]): r[2:] for r in rows_of(results) if len(r) == 10 and r[0] != "metric"}
    treated = summary.filter((pl.col("segment") == "all") & (pl.col("arm") != "control"))
    assert len(rows) == treated.height == 7
    for r in treated.iter_rows(named=True):
        assert rows[(r["metric"], "inject − control")] == effect_cells(r)
    # every segment too, in the folded table
    segs = {(r[0], r[1], r[2]): r[5:] for r in rows_of(results) if len(r) == 13 and r[3] != "users"}
    for r in summary.filter(pl.col("segment") != "all").iter_rows(named=True):
        if r["arm"] != "control":
            assert segs[(r["arm"], r["segment"], r["metric"])] == effect_cells(r)
    mde = summary.filter(
        (pl.col("segment") == "all") & (pl.col("metric") == "ctr") & (pl.col("arm") == "inject")
    )["mde"][0]
    assert f"This study could detect effects of about (80% power, 5%): ctr ±{mde:.4f}" in (
        text_of(results)
    )


def test_how_to_read_explains_intervals_significance_lift_and_mde(run: Path, report: str) -> None:
    note = text_of(section(report, "read"))
    replicates = json.loads((run / MANIFEST).read_text())["replicates"]
    assert replicates > 1  # a study with creator items runs several by default
    for words in (
        f"pools {replicates} replicates",
        "Holm's adjustment over the whole summary table",
        "Lift is the difference as a percentage of the control's mean",
        "MDE (minimum detectable effect)",
        "q (BH)",
    ):
        assert words in note, words
    assert "Slot vs content" not in note  # no placebo arm in the sample study


# --- intervals, lift, slot vs content, warnings --------------------------------------------------


def test_paired_effect_is_computed_like_the_summarys_differences(
    placebo3: tuple[Path, str],
) -> None:
    path, _ = placebo3
    summary = scan_table(path, "summary").collect()
    um = scan_table(path, "user_metrics").collect()
    segments = summary["segment"].unique(maintain_order=True).to_list()
    mine = paired_effect(um, "inject", "control", segments)
    theirs = summary.filter(pl.col("arm") == "inject")
    cols = [
        "n", "diff", "diff_ci_low", "diff_ci_high", "diff_se", "diff_df", "diff_between_share",
        "lift", "lift_ci_low", "lift_ci_high", "p_value", "mde",
    ]  # fmt: skip
    both = mine.join(theirs, on=["segment", "metric"], suffix="_summary")
    assert both.height == theirs.height == 4 * 7
    for c in cols:
        a = both[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
        b = both[f"{c}_summary"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=c)


def test_content_effect_equals_a_direct_paired_computation(placebo1: tuple[Path, str]) -> None:
    path, html = placebo1
    um = scan_table(path, "user_metrics").collect()
    t = um.filter(pl.col("arm") == "inject").sort("user")
    p = um.filter(pl.col("arm") == "inject-placebo").sort("user")
    assert t["user"].equals(p["user"])
    d = load_run(path)
    content = d.slot_content.filter((pl.col("effect") == "content") & (pl.col("segment") == "all"))
    for metric, m in METRICS.items():
        diff = m.of({c: t[c].to_numpy() for c in t.columns}) - m.of(
            {c: p[c].to_numpy() for c in p.columns}
        )
        n = diff.size
        se = diff.std(ddof=1) / np.sqrt(n)
        half = sps.t.ppf(0.975, n - 1) * se
        r = content.filter(pl.col("metric") == metric).row(0, named=True)
        assert r["diff"] == pytest.approx(diff.mean(), abs=1e-12)
        assert r["n"] == n
        if se > 0:
            assert r["diff_ci_low"] == pytest.approx(diff.mean() - half, abs=1e-12)
            assert r["diff_ci_high"] == pytest.approx(diff.mean() + half, abs=1e-12)
            base = m.of({c: p[c].to_numpy() for c in p.columns}).mean()
            assert r["lift"] == pytest.approx(100 * diff.mean() / base)
    # the page shows it, next to slot and total taken from the summary
    table = {
        (r[0], r[1]): r[3:]
        for r in rows_of(section(html, "slot-content"))
        if len(r) == 11 and " − " in r[2]  # the segment "all" table (arms, not a segment)
    }
    summary = scan_table(path, "summary").filter(pl.col("segment") == "all").collect()
    for r in summary.filter(pl.col("arm") != "control").iter_rows(named=True):
        effect = "total" if r["arm"] == "inject" else "slot"
        assert table[(r["metric"], effect)] == effect_cells(r)
    for r in content.iter_rows(named=True):
        assert table[(r["metric"], "content")] == effect_cells(r)


def test_slot_and_content_need_a_placebo_arm(report: str) -> None:
    assert 'id="slot-content"' not in report


def test_every_curve_has_a_band_around_it(placebo3: tuple[Path, str]) -> None:
    path, html = placebo3
    d = load_run(path)
    for frame, values in (
        (d.by_turn, ("ctr", "watch", "satisfaction", "fatigue")),
        (d.by_session, ("share", "return_rate", "ctr")),
    ):
        assert frame["arm"].unique(maintain_order=True).to_list() == d.arms
        for v in values:
            assert (frame[f"{v}_lo"] <= frame[v]).all() and (frame[v] <= frame[f"{v}_hi"]).all()
            assert (frame[f"{v}_hi"] - frame[f"{v}_lo"]).max() > 0, v
    # the per-turn ctr of one arm: each user's ctr at the turn, pooled over replicates
    ev = scan_table(path, "events").filter(pl.col("arm") == "inject").collect()
    reps = scan_table(path, "user_metrics").select("arm", "user", "replicate").collect()
    per_user = (
        ev.group_by("arm", "user", "turn")
        .agg(pl.col("clicked").mean())
        .join(reps, on=["arm", "user"])
    )
    for (turn,), g in per_user.group_by("turn"):
        x = [g.filter(pl.col("replicate") == r)["clicked"].to_numpy() for r in range(3)]
        pooled = pool(
            np.array([v.size for v in x]),
            np.array([v.mean() for v in x]),
            np.array([((v - v.mean()) ** 2).sum() for v in x]),
        )
        lo, hi = pooled.interval()
        band = d.by_turn.filter((pl.col("arm") == "inject") & (pl.col("turn") == turn + 1))
        assert band["ctr"][0] == pytest.approx(np.mean([v.mean() for v in x]))
        assert (band["ctr_lo"][0], band["ctr_hi"][0]) == pytest.approx(
            (max(float(lo), 0.0), min(float(hi), 1.0))  # a share's band stays in [0, 1]
        )
    assert "the band is the 95% interval" in text_of(section(html, "engagement"))


def test_creator_reach_is_shown_per_replicate(placebo3: tuple[Path, str]) -> None:
    path, html = placebo3
    ev = scan_table(path, "events").filter(pl.col("is_creator_item")).collect()
    reps = scan_table(path, "user_metrics").select("arm", "user", "replicate").collect()
    ev = ev.join(reps, on=["arm", "user"])
    size = reps.filter(pl.col("arm") == "control").group_by("replicate").len()
    size = dict(size.iter_rows())
    rows = {
        (r[0], r[2]): r[3:6]
        for r in rows_of(section(html, "creator"))
        if len(r) == 7 and r[0] != "arm"
    }
    for (arm, item), g in ev.group_by("arm", pl.col("item_id").cast(pl.String)):
        cells = []
        for rep in range(3):
            x = g.filter(pl.col("replicate") == rep)
            reach = x["user"].n_unique() / size[rep]
            clicks = x["clicked"].sum() / size[rep]
            cells.append(f"{reach:.3f} / {clicks:.3f}")
        assert rows[(arm, item)] == cells
    assert "how much the placement draw matters" in text_of(section(html, "creator"))


@pytest.mark.parametrize(
    ("replicates", "creator", "between", "expected"),
    [
        (3, True, 0.2, ()),
        (1, True, None, ("one replicate",)),
        (1, False, None, ()),
        (3, True, 0.7, ("Between-replicate variance dominates",)),
    ],
)
def test_warnings_appear_exactly_when_they_should(
    run: Path, replicates: int, creator: bool, between: float | None, expected: tuple[str, ...]
) -> None:
    summary = scan_table(run, "summary").collect()
    summary = summary.with_columns(
        between_share=pl.lit(between, pl.Float64),
        diff_between_share=pl.lit(between, pl.Float64),
    )
    got = run_warnings(summary, replicates, creator)
    assert len(got) == len(expected)
    for line, words in zip(got, expected, strict=True):
        assert words in line
    if between is not None and between > 0.5:
        assert "creator_reach difference of inject from control (70%)" in got[0]
        assert "ctr" not in got[0].split(":")[1]  # only creator metrics


def test_the_pages_warn_when_they_should(
    placebo1: tuple[Path, str], placebo3: tuple[Path, str], report: str
) -> None:
    _, one = placebo1
    assert 'class="warn"' in section(one, "read")
    assert "This run has one replicate but creator items" in text_of(section(one, "read"))
    for path, html in (placebo1, placebo3):
        d = load_run(path)
        assert html.count('class="warn"') == 2 * len(d.warnings)  # at the top and under creator
        shares = (
            scan_table(path, "summary")
            .filter(
                (pl.col("segment") == "all")
                & pl.col("metric").is_in(["creator_reach", "creator_engagement"])
            )
            .select(pl.max_horizontal("between_share", "diff_between_share").max())
            .collect()
            .item()
        )
        content = d.slot_content.filter(
            (pl.col("effect") == "content")
            & (pl.col("segment") == "all")
            & pl.col("metric").is_in(["creator_reach", "creator_engagement"])
        )["diff_between_share"].max()
        dominated = max(shares or 0.0, content or 0.0) > 0.5
        assert ("Between-replicate variance dominates" in html) == dominated
    assert "This run has one replicate" not in report  # several replicates


def test_retention_and_session_lengths_match_the_sessions_table(run: Path) -> None:
    d = load_run(run)
    ss = scan_table(run, "sessions").collect()
    users = json.loads((run / MANIFEST).read_text())["users_per_arm"]
    replicate = scan_table(run, "user_metrics").select("arm", "user", "replicate").collect()
    ss = ss.join(replicate, on=["arm", "user"])
    for r in d.by_session.iter_rows(named=True):
        s = ss.filter((pl.col("arm") == r["arm"]) & (pl.col("session") == r["session"] - 1))
        assert r["users"] == s.height
        assert r["share"] == pytest.approx(s.height / users)  # replicates of equal size
        # pooled like the summary: the mean of the replicates' means
        per = s.group_by("replicate").agg(pl.col("returned").cast(pl.Float64).mean())
        assert r["return_rate"] == pytest.approx(per["returned"].mean())
    lengths = d.session_lengths.filter(pl.col("arm") == "inject")
    assert lengths["sessions"].sum() == ss.filter(pl.col("arm") == "inject").height
    assert lengths["share"].sum() == pytest.approx(1.0)
    assert (
        d.by_turn["turn"].min() == 1 and d.by_turn["turn"].max() == 4
    )  # 1-based, 4 turns per session


def test_creator_reach_counts_users_shown_each_item(run: Path, report: str) -> None:
    ev = scan_table(run, "events").filter(pl.col("is_creator_item")).collect()
    creator = rows_of(section(report, "creator"))
    for (arm, item), g in ev.group_by("arm", pl.col("item_id").cast(pl.String)):
        row = next(r for r in creator if r[:1] == [arm] and r[2:3] == [item])
        assert row[3] == str(g["user"].n_unique())
        assert row[5] == str(g.height)


def test_instructions_are_grouped_and_counted_once_per_slate(run: Path, report: str) -> None:
    said = (
        scan_table(run, "events")
        .filter(pl.col("instruction").is_not_null())
        .select("arm", "user", "session", "turn", pl.col("instruction").cast(pl.String))
        .unique()
        .collect()
    )
    assert said.height > 0, "the sample run should have users who instruct"
    counts = {(a, t): n for a, t, n in said.group_by("arm", "instruction").len().iter_rows()}
    table = {r[0]: r[1:] for r in rows_of(section(report, "instructions")) if len(r) == 3}
    top = said.group_by("instruction").len().sort("len", descending=True).row(0)
    assert table[top[0]] == [
        str(counts.get(("control", top[0]), 0)),
        str(counts.get(("inject", top[0]), 0)),
    ]
    tags = load_run(run).instruction_tags
    top_tag = tags.row(0, named=True)
    named = said.filter(
        (pl.col("arm") == top_tag["arm"])
        & pl.col("instruction").str.contains(rf"(?i)\b{re.escape(top_tag['tag'])}\b")
    )
    assert top_tag["mentions"] == named.height > 0
    totals = rows_of(section(report, "instructions"))[1:3]
    for arm, written, users in totals:
        a = said.filter(pl.col("arm") == arm)
        assert (written, users) == (str(a.height), str(a["user"].n_unique()))


def test_run_text_is_escaped(copy: Path, tmp_path: Path) -> None:
    study = json.loads((copy / "study.json").read_text())
    study["description"] = "<script>alert('x')</script> & more"
    (copy / "study.json").write_text(json.dumps(study))
    reseal(copy)  # a deliberate edit of a finished run (else the report refuses it as corrupt)
    html = (write_report(copy).path).read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html


def test_feelings_and_llm_calls_are_reported_when_present(copy: Path, report: str) -> None:
    assert 'id="feelings"' not in report and 'id="llm"' not in report  # parametric run: neither
    add_llm_records(copy)
    html = write_report(copy).path.read_text()
    feelings = {r[0]: r[1:] for r in rows_of(section(html, "feelings"))}
    ev = scan_table(copy, "events").filter(pl.col("feeling").is_not_null()).collect()
    loved = ev.filter(pl.col("feeling").str.to_lowercase().str.starts_with("loved"))
    assert FEELINGS[0] in feelings  # "Loved the pacing." and "loved the pacing!" are one group
    assert feelings[FEELINGS[0]] == [
        str(loved.filter(pl.col("arm") == a).height) for a in ("control", "inject")
    ]
    llm = section(html, "llm")
    calls = scan_table(copy, "llm_calls").collect()
    status = {
        r[0]: r[1:] for r in rows_of(llm) if r and r[0] in ("control", "inject") and len(r) == 4
    }
    assert status["control"] == [
        str(calls.filter((pl.col("arm") == "control") & (pl.col("parse_status") == s)).height)
        for s in ("invalid", "ok", "repaired")
    ]
    assert "<svg" in llm  # latency histogram


def test_report_command_writes_into_the_run_folder(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").is_file()
    assert f"-> {copy / 'report.html'}" in capsys.readouterr().out.replace("\n", "")
    out = copy.parent / "elsewhere" / "r.html"
    assert main(["report", str(copy), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


# --- sweeps ------------------------------------------------------------------------------------


def make_sweep(run: Path, root: Path) -> Path:
    folder = root / "nightly" / "date=2026-01-02"
    frames = []
    for k, cell in enumerate(("sample--mf--all--s7", "sample--popular--all--s7")):
        shutil.copytree(run, folder / f"cell={cell}")
        s = scan_table(run, "summary").filter(pl.col("segment") == "all").collect()
        frames.append(
            s.with_columns(
                study=pl.lit("sample"),
                recommender=pl.lit(["mf", "popular"][k]),
                population=pl.lit("all"),
                seed=pl.lit(7, dtype=pl.Int64),
                cell=pl.lit(cell),
                mean=pl.col("mean") + k,
            )
        )
    write_sweep_summary(pl.concat(frames, how="diagonal_relaxed"), folder / "sweep_summary.parquet")
    return folder


def test_a_sweep_gets_its_cells_side_by_side(run: Path, tmp_path: Path) -> None:
    folder = make_sweep(run, tmp_path)
    write_report(folder / "cell=sample--mf--all--s7")
    r = write_report(folder)
    assert r.kind == "sweep" and r.path == folder / "report.html"
    html = r.path.read_text()
    assert "RecoWorld sweep: nightly" in html
    side = rows_of(section(html, "side"))
    header, body = side[0], side[1:]
    assert header[:2] == ["cell", "arm"] and "ctr" in header
    summary = (
        scan_table(run, "summary")
        .filter((pl.col("segment") == "all") & (pl.col("metric") == "ctr"))
        .collect()
    )
    ctr = {r["arm"]: r["mean"] for r in summary.iter_rows(named=True)}
    col = header.index("ctr")
    for row in body:
        shift = 0 if row[0] == "sample--mf--all--s7" else 1
        assert row[col].startswith(f"{ctr[row[1]] + shift:.4f} [")
    assert len(body) == 4  # 2 cells x 2 arms
    assert 'href="cell=sample--mf--all--s7/report.html"' in html
    assert "cell=sample--popular--all--s7/report.html" not in html  # no report there
    assert html.count("<svg") == 2  # the seeds pooled, and the cells
    assert "One seed: every interval is that seed's own" in text_of(section(html, "read"))


def test_a_sweep_root_with_several_dates_names_them(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_sweep(run, tmp_path)
    other = tmp_path / "nightly" / "date=2026-01-03"
    other.mkdir()
    shutil.copy(tmp_path / "nightly" / "date=2026-01-02" / "sweep_summary.parquet", other)
    assert main(["report", str(tmp_path / "nightly")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path / 'nightly'}: a sweep folder with several dates; "
        "expected one date folder, e.g. "
        f"{other} (found date=2026-01-02, date=2026-01-03)\n"
    )


# --- bad input: one line, no trace ---------------------------------------------------------------


def error_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_a_missing_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        error_of(["report", str(tmp_path / "nope")], capsys)
        == f"error: {tmp_path / 'nope'}: no such run directory\n"
    )
    (tmp_path / ".nope.partial").mkdir()
    assert "re-run the study with --resume nope to finish it" in error_of(
        ["report", str(tmp_path / "nope")], capsys
    )


def test_a_partial_run_folder(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / MANIFEST).unlink()
    assert (
        error_of(["report", str(copy)], capsys)
        == f"error: {copy}: not a complete run: manifest.json is missing\n"
    )


def test_a_run_missing_a_table(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(copy / "sessions")
    assert error_of(["report", str(copy)], capsys) == (
        f"error: {copy / 'sessions'}: no Parquet files; "
        "expected sessions/arm=<arm>/part-*.parquet\n"
    )


def test_a_run_of_schema_version_1(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "schema_version": 1}))
    assert error_of(["report", str(copy)], capsys) == (
        f"error: {copy}: written by schema version 1; "
        f"this RecoWorld reads version {SCHEMA_VERSION}: re-run the study\n"
    )


def test_files_of_schema_version_1(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = sorted((copy / "events" / "arm=control").glob("*.parquet"))[0]
    t = pq.read_table(f).drop_columns(["feeling"])  # version 1 had no feeling column
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: b"1", TABLE_KEY: b"events"}), f)
    assert error_of(["report", str(copy)], capsys) == (
        f"error: {f}: table 'events' written by schema version 1; "
        f"this RecoWorld reads version {SCHEMA_VERSION}: re-run the study\n"
    )


def test_a_damaged_parquet_file(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = sorted((copy / "events" / "arm=inject").glob("*.parquet"))[0]
    f.write_bytes(f.read_bytes()[:100])
    err = error_of(["report", str(copy)], capsys)
    assert err.startswith(f"error: {f}: not a readable Parquet file (")
    assert err.endswith("expected table 'events' of a RecoWorld run\n")


def test_a_damaged_manifest(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / MANIFEST).write_text('{"arms": [')
    err = error_of(["report", str(copy)], capsys)
    assert err.startswith(f"error: {copy / MANIFEST}: not valid JSON (")
    assert err.endswith("expected the manifest a complete run writes last\n")


def test_a_file_instead_of_a_folder(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = copy / "study.json"
    assert (
        error_of(["report", str(f)], capsys) == f"error: {f}: not a folder; "
        "expected a run folder (runs/<run_id>) holding manifest.json\n"
    )

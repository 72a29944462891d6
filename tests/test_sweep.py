"""Sweeps: the sweep file, grid expansion, cell runs into hive-partitioned folders, skipping
complete cells, redoing interrupted ones, the sweep summary, and its seeds pooled and ranked.
Local runner, tmp_path outputs."""

from __future__ import annotations

import datetime
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from recoworld.errors import ConfigError, RunError
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, TABLE_KEY
from recoworld.study.metrics import METRICS
from recoworld.study.runner import run_study
from recoworld.sweep import (
    POOLED_FILE,
    SWEEP_POOLED,
    SWEEP_SUMMARY,
    cell_id,
    decode_sweep,
    load_sweep,
    pool_estimates,
    pool_seeds,
    ranking_table,
    read_sweep_pooled,
    read_sweep_summary,
    run_sweep,
    slug,
    sweep_date,
    sweep_table,
)

ROOT = Path(__file__).resolve().parents[1]
QUICK_STUDY = ROOT / "studies" / "quick_synthetic.toml"
DAY = datetime.date(2025, 1, 31)
QUICK_IDS = [
    f"quick_synthetic--{r}--{p}--s{s}"
    for r in ("mf-instr", "popular")
    for p in ("everyone", "high-activity")
    for s in (1, 2)
]


def small_sweep(tmp_path: Path, *, candidates: int = 100, extra: str = "") -> Path:
    """One recommender x one population x two seeds of the quick study, 120 users."""
    path = tmp_path / "small.toml"
    path.write_text(
        f'name = "small"\nstudies = ["{QUICK_STUDY}"]\nseeds = [1, 2]\nusers = 120\n{extra}'
        f'[[recommenders]]\nname = "mf"\nkind = "mf"\ncandidates = {candidates}\n'
        '[[populations]]\nname = "all"\n'
    )
    return path


class Recording:
    """The local runner, recording which run ids it was called for."""

    def __init__(self) -> None:
        self.run_ids: list[str] = []

    def __call__(self, cfg, world, *, run_id, out_dir=None, overwrite=False, progress=None):
        self.run_ids.append(run_id)
        return run_study(
            cfg, world, run_id=run_id, out_dir=out_dir, overwrite=overwrite, progress=progress
        )


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


# --- the sweep file and the grid -------------------------------------------------------------


def test_quick_sweep_expands_to_every_cell_in_order() -> None:
    sweep = load_sweep(ROOT / "sweeps" / "quick.toml")
    assert [c.id for c in sweep.cells] == QUICK_IDS
    cell = sweep.cells[7]  # popular x high-activity x seed 2
    assert (cell.recommender, cell.population, cell.seed, cell.run_id) == (
        "popular",
        "high-activity",
        2,
        "cell=quick_synthetic--popular--high-activity--s2",
    )
    assert cell.cfg.seed == 2
    assert (
        cell.cfg.recommender.kind == "popular" and cell.cfg.recommender.follow_instructions is False
    )
    assert cell.cfg.population.size == 200 and cell.cfg.population.target.activity == "high"
    assert cell.cfg.population.segment_by == "activity"  # kept from the study
    assert [a.name for a in cell.cfg.arms] == ["control", "inject"]


def test_nightly_sweep_expands_to_twelve_cells() -> None:
    sweep = load_sweep(ROOT / "sweeps" / "nightly.toml")
    assert len(sweep.cells) == 3 * 2 * 2
    assert sweep.cells[0].id == "creator_scifi--mf-instr--scifi-fans--s1"
    assert {c.cfg.population.size for c in sweep.cells} == {2000}


def test_users_override_and_unset_size_keeps_the_studys(tmp_path: Path) -> None:
    sweep = load_sweep(small_sweep(tmp_path))
    assert {c.cfg.population.size for c in sweep.cells} == {120}
    path = tmp_path / "keep.toml"
    path.write_text(small_sweep(tmp_path).read_text().replace("users = 120\n", ""))
    assert {c.cfg.population.size for c in load_sweep(path).cells} == {500}  # quick_synthetic's


def test_cell_ids_are_filesystem_safe_slugs() -> None:
    assert slug("Creator sci-fi: v2!") == "Creator-sci-fi-v2"
    assert slug("a -- b") == "a-b"
    assert cell_id("My study", "mf", "fans", 3) == "My-study--mf--fans--s3"


def test_sweep_date_precedence() -> None:
    cfg = decode_sweep(small_sweep_text(date="2024-12-01"))
    assert sweep_date(cfg, DAY) == DAY
    assert sweep_date(cfg) == datetime.date(2024, 12, 1)
    undated = decode_sweep(small_sweep_text())
    assert sweep_date(undated) == datetime.datetime.now(datetime.UTC).date()


def small_sweep_text(date: str | None = None) -> str:
    return (
        'name = "s"\nstudies = ["a.toml"]\nseeds = [1]\n'
        + (f"date = {date}\n" if date else "")
        + '[[recommenders]]\nname = "mf"\n[[populations]]\nname = "all"\n'
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t + '[[recommenders]]\nname = "pop"\nkindd = "popular"\n',
            "s.toml: Object contains unknown field `kindd` - at `$.recommenders[1]`",
        ),
        (
            lambda t: t.replace("seeds = [1]", 'seeds = ["one"]'),
            "s.toml: Expected `int`, got `str` - at `$.seeds[0]`",
        ),
        (
            lambda t: t.replace("seeds = [1]", "seeds = [1, 2, 1]"),
            "s.toml: Expected unique seeds, got 1 - at `$.seeds[2]`",
        ),
        (
            lambda t: t.replace("seeds = [1]", "seeds = [4294967296]"),
            "s.toml: Expected a seed in [0, 2**32 - 1 = 4294967295], got 4294967296"
            " - at `$.seeds[0]`",
        ),
        (
            lambda t: t.replace("seeds = [1]", "seeds = []"),
            "s.toml: Expected at least one entry, got [] - at `$.seeds`",
        ),
        (
            lambda t: t + '[[populations]]\nname = "all"\n',
            "s.toml: Expected unique population names, got 'all' - at `$.populations[1].name`",
        ),
        (
            lambda t: t.replace('name = "mf"', 'name = "mf--x"'),
            "s.toml: Expected a name of letters, digits, '_', '.' and single '-' between them, "
            "got 'mf--x' - at `$.recommenders[0].name`",
        ),
        (
            lambda t: t + '[[populations]]\nname = "fans"\ntarget = { likes = "Sci-Fi" }\n',
            "s.toml: Expected `array`, got `str` - at `$.populations[1].target.likes`",
        ),
        (
            lambda t: t.replace('studies = ["a.toml"]\n', ""),
            "s.toml: Object missing required field `studies`",
        ),
        (
            lambda t: t + "[output]\ndir = 'x'\nrow_groups = 1\n",
            "s.toml: Object contains unknown field `row_groups` - at `$.output`",
        ),
        (
            lambda t: t + "date = '2025-01-31'\n",
            # TOML: after a table header
            "s.toml: Object contains unknown field `date` - at `$.populations[0]`",
        ),
        (lambda t: t + "x = [\n", "s.toml: not valid TOML: "),
    ],
)
def test_strict_decode_errors_name_file_and_path(edit, message) -> None:
    with pytest.raises(ConfigError) as e:
        decode_sweep(edit(small_sweep_text()), source="s.toml")
    assert str(e.value).startswith(message)
    if not message.endswith(": "):
        assert str(e.value) == message


def test_quoted_date_is_an_error_that_names_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"^s\.toml: Expected `date \| null`, got `str` - at `\$\.date`$"
    ):
        decode_sweep("date = '2025-01-31'\n" + small_sweep_text(), source="s.toml")


def test_a_cell_config_that_fails_the_study_checks_names_the_cell(tmp_path: Path) -> None:
    path = small_sweep(tmp_path, candidates=10)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert str(e.value) == (
        f"{path}: cell quick_synthetic--mf--all--s1 "
        f"(study {QUICK_STUDY}, recommender 'mf', population 'all', seed 1): "
        "Expected at least slate_size x turns (32), got 10 - at `$.recommender.candidates`"
    )


def test_missing_study_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(small_sweep_text())
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert (
        str(e.value) == f"{path}: study file 'a.toml' does not exist "
        f"(looked at {tmp_path / 'a.toml'}) - at `$.studies[0]`"
    )


def test_the_same_study_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(small_sweep_text().replace('["a.toml"]', f'["{QUICK_STUDY}", "{QUICK_STUDY}"]'))
    with pytest.raises(ConfigError, match=r"is listed twice - at `\$\.studies`$"):
        load_sweep(path)


# --- running ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """sweeps/quick.toml run once through the job entry point (--local)."""
    from jobs.nightly_sweep import main

    out = tmp_path_factory.mktemp("sweeps")
    rc = main(
        [
            str(ROOT / "sweeps" / "quick.toml"),
            "--local",
            "--workers",
            "1",
            "--out",
            str(out),
            "--date",
            DAY.isoformat(),
        ]
    )
    assert rc == 0
    return out, "quick"


def test_quick_sweep_writes_every_cell_and_the_summary(quick_run: tuple[Path, str]) -> None:
    out, name = quick_run
    folder = out / name / f"date={DAY.isoformat()}"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(
        f"cell={i}" for i in QUICK_IDS
    )
    for i in QUICK_IDS:
        assert (folder / f"cell={i}" / "manifest.json").is_file()
    summary = read_sweep_summary(folder / "sweep_summary.parquet")
    assert summary.columns == SWEEP_SUMMARY.names
    assert summary.height == len(QUICK_IDS) * 2 * len(METRICS)  # cells x arms x metrics
    assert summary.select("cell", "arm", "metric").is_unique().all()
    assert summary.filter(pl.col("arm") == "control")["diff"].is_null().all()
    assert summary.filter(pl.col("arm") == "inject")["diff"].is_not_null().all()
    meta = pq.read_schema(folder / "sweep_summary.parquet").metadata
    assert (
        meta[METADATA_KEY] == str(SCHEMA_VERSION).encode() and meta[TABLE_KEY] == b"sweep_summary"
    )
    row = summary.filter(
        (pl.col("cell") == QUICK_IDS[7]) & (pl.col("arm") == "inject") & (pl.col("metric") == "ctr")
    )
    assert row.select("study", "recommender", "population", "seed", "n").row(0) == (
        "quick_synthetic",
        "popular",
        "high-activity",
        2,
        200,
    )


def test_outputs_are_hive_partitioned_by_date_and_cell(quick_run: tuple[Path, str]) -> None:
    out, name = quick_run
    root = out / name
    sweep = pl.scan_parquet(
        root / "date=*" / "sweep_summary.parquet", hive_partitioning=True
    ).collect()
    assert sweep["date"].cast(pl.String).unique().to_list() == [DAY.isoformat()]
    assert sweep["cell"].n_unique() == len(QUICK_IDS)
    cells = pl.scan_parquet(
        root / "date=*" / "cell=*" / "summary.parquet", hive_partitioning=True
    ).collect()
    assert {"date", "cell", "arm", "metric"} <= set(cells.columns)
    assert sorted(cells["cell"].unique().to_list()) == sorted(QUICK_IDS)
    events = pl.scan_parquet(
        root / "date=*" / "cell=*" / "events" / "arm=*" / "*.parquet", hive_partitioning=True
    )
    got = events.group_by("cell", "arm").len().collect()
    assert got.height == len(QUICK_IDS) * 2


def test_reading_a_sweep_summary_checks_the_file_and_the_table(
    quick_run: tuple[Path, str], tmp_path: Path
) -> None:
    with pytest.raises(RunError) as e:
        read_sweep_summary(tmp_path / "sweep_summary.parquet")
    assert (
        str(e.value)
        == f"{tmp_path / 'sweep_summary.parquet'}: no sweep summary; run the sweep to write it"
    )
    out, name = quick_run
    cell_summary = (
        out / name / f"date={DAY.isoformat()}" / f"cell={QUICK_IDS[0]}" / "summary.parquet"
    )
    with pytest.raises(RunError) as e:
        read_sweep_summary(cell_summary)
    assert str(e.value) == f"{cell_summary}: holds table 'summary'; expected 'sweep_summary'"


def test_sweep_table_shows_cells_and_paired_differences(quick_run: tuple[Path, str]) -> None:
    out, name = quick_run
    summary = read_sweep_summary(out / name / f"date={DAY.isoformat()}" / "sweep_summary.parquet")
    console = Console(record=True, width=200)
    console.print(sweep_table(summary))
    text = console.export_text()
    assert all(i in text for i in QUICK_IDS)
    assert "creator_reach" in text and "Δ +" in text


def test_rerun_skips_complete_cells_and_redoes_an_interrupted_one(tmp_path: Path) -> None:
    sweep = load_sweep(small_sweep(tmp_path))
    out = tmp_path / "out"
    first = Recording()
    res = run_sweep(sweep, runner=first, out_root=out, day=DAY)
    assert first.run_ids == [
        "cell=quick_synthetic--mf--all--s1",
        "cell=quick_synthetic--mf--all--s2",
    ]
    folder = res.path
    assert folder == out / "small" / "date=2025-01-31"
    before = {i: stamp(folder / i / "manifest.json") for i in first.run_ids}

    again = Recording()
    res2 = run_sweep(sweep, runner=again, out_root=out, day=DAY)
    assert again.run_ids == []
    assert [pc.action for pc in res2.planned] == ["skip", "skip"]
    assert {i: stamp(folder / i / "manifest.json") for i in first.run_ids} == before
    assert res2.summary.height == 2 * 2 * len(METRICS)  # skipped cells are in the summary
    assert res2.summary.equals(res.summary)

    # an interrupted run leaves only .cell=<id>.partial (no manifest): it is redone
    victim = "cell=quick_synthetic--mf--all--s2"
    (folder / victim / "manifest.json").unlink()
    (folder / victim).rename(folder / f".{victim}.partial")
    third = Recording()
    res3 = run_sweep(sweep, runner=third, out_root=out, day=DAY)
    assert third.run_ids == [victim]
    assert [pc.reason for pc in res3.planned] == [
        "complete",
        f"interrupted earlier (.{victim}.partial is redone)",
    ]
    assert (folder / victim / "manifest.json").is_file() and not (
        folder / f".{victim}.partial"
    ).exists()
    assert stamp(folder / first.run_ids[0] / "manifest.json") == before[first.run_ids[0]]
    assert res3.summary.equals(res.summary)  # same config, same seeds: same numbers


def test_a_changed_config_for_a_complete_cell_is_an_error_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(load_sweep(small_sweep(tmp_path)), runner=Recording(), out_root=out, day=DAY)
    changed = load_sweep(small_sweep(tmp_path, candidates=120))
    runner = Recording()
    with pytest.raises(RunError) as e:
        run_sweep(changed, runner=runner, out_root=out, day=DAY)
    folder = out / "small" / "date=2025-01-31"
    assert str(e.value) == (
        f"{folder}: 2 complete cell(s) were run with another config; "
        "pass --overwrite to replace them: "
        "cell=quick_synthetic--mf--all--s1: its study.json differs from the cell's config "
        "(`$.recommender.candidates` was 100, now 120); "
        "cell=quick_synthetic--mf--all--s2: its study.json differs from the cell's config "
        "(`$.recommender.candidates` was 100, now 120)"
    )
    assert runner.run_ids == []
    res = run_sweep(changed, runner=runner, out_root=out, day=DAY, overwrite=True)
    assert runner.run_ids == [c.run_id for c in changed.cells]
    assert [pc.action for pc in res.planned] == ["replace", "replace"]
    assert run_sweep(changed, runner=Recording(), out_root=out, day=DAY).planned[0].action == "skip"


def test_ray_and_output_settings_do_not_make_a_cell_different(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep = load_sweep(small_sweep(tmp_path))
    run_sweep(sweep, runner=Recording(), out_root=out, day=DAY)
    import msgspec

    from recoworld.config import RayConfig

    cells = [
        msgspec.structs.replace(c, cfg=msgspec.structs.replace(c.cfg, ray=RayConfig(shards=4)))
        for c in sweep.cells
    ]
    tweaked = type(sweep)(path=sweep.path, cfg=sweep.cfg, cells=cells)
    runner = Recording()
    run_sweep(tweaked, runner=runner, out_root=out, day=DAY)
    assert runner.run_ids == []


def test_cells_not_in_the_grid_are_reported_and_left_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(load_sweep(small_sweep(tmp_path)), runner=Recording(), out_root=out, day=DAY)
    fewer = small_sweep(tmp_path)
    fewer.write_text(fewer.read_text().replace("seeds = [1, 2]", "seeds = [1]"))
    res = run_sweep(load_sweep(fewer), runner=Recording(), out_root=out, day=DAY)
    assert res.stray == ["cell=quick_synthetic--mf--all--s2"]
    assert res.summary["cell"].unique().to_list() == ["quick_synthetic--mf--all--s1"]


def test_a_failing_cell_names_the_cell_and_leaves_no_partial(tmp_path: Path) -> None:
    path = small_sweep(tmp_path)
    path.write_text(path.read_text() + 'target = { occupation = ["astronaut"] }\n')
    with pytest.raises(RunError, match=r"^cell=quick_synthetic--mf--all--s1: "):
        run_sweep(load_sweep(path), runner=Recording(), out_root=tmp_path / "out", day=DAY)
    assert not list((tmp_path / "out" / "small" / "date=2025-01-31").iterdir())


# --- the job entry point ---------------------------------------------------------------------


def test_job_exits_2_with_one_line_for_a_bad_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.nightly_sweep import main

    bad = tmp_path / "bad.toml"
    bad.write_text(small_sweep_text() + "[[recommenders]]\nname = 'x'\nkindd = 'mf'\n")
    assert main([str(bad), "--local"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: Object contains unknown field `kindd` - at `$.recommenders[1]`\n"


def test_job_ray_without_driver_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.nightly_sweep import main

    monkeypatch.setitem(sys.modules, "actors.driver", None)  # as if the Ray driver were absent
    assert main([str(small_sweep(tmp_path)), "--ray", "auto", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: --ray auto: the Ray driver actors.driver.run_study_on_ray cannot be imported ("
    )
    assert (
        err.endswith("install Ray with pip install -e '.[ray]', or run with --local\n")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "out").exists()


def test_job_rerun_skips_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.nightly_sweep import main

    args = [
        str(small_sweep(tmp_path)),
        "--local",
        "--workers",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--date",
        "2025-01-31",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "[1/2] quick_synthetic--mf--all--s1: complete, skipped" in text
    assert "0 cell(s) run, 2 skipped" in text
    assert "seeds pooled, ranked" in text and "sweep_pooled.parquet" in text
    with pytest.raises(SystemExit) as e:
        main([*args[:-1], "31-01-2025"])
    assert e.value.code == 2


def test_recoworld_sweep_imports_without_ray_or_actors() -> None:
    code = (
        "import sys, recoworld.sweep; "
        "bad = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'actors'))]; "
        "assert not bad, bad"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_cell_folder_without_manifest_is_not_kept_silently(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep = load_sweep(small_sweep(tmp_path))
    res = run_sweep(sweep, runner=Recording(), out_root=out, day=DAY)
    (res.path / sweep.cells[0].run_id / "manifest.json").unlink()
    with pytest.raises(
        RunError,
        match=r"cell=quick_synthetic--mf--all--s1: "
        r"its folder cannot be kept \(.*manifest\.json is missing\)$",
    ):
        run_sweep(sweep, runner=Recording(), out_root=out, day=DAY)
    runner = Recording()
    run_sweep(sweep, runner=runner, out_root=out, day=DAY, overwrite=True)
    assert runner.run_ids == [sweep.cells[0].run_id]


def test_two_studies_with_the_same_name_are_an_error(tmp_path: Path) -> None:
    twin = tmp_path / "twin.toml"
    shutil.copy(QUICK_STUDY, twin)
    path = tmp_path / "s.toml"
    path.write_text(small_sweep_text().replace('["a.toml"]', f'["{QUICK_STUDY}", "twin.toml"]'))
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert str(e.value) == (
        f"{path}: studies {QUICK_STUDY} and {twin} both have the name 'quick_synthetic'; "
        "expected distinct study names - at `$.studies`"
    )


def test_job_ray_binds_the_address_to_the_drivers_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ray ADDRESS hands cells to actors.driver.run_study_on_ray(..., address=ADDRESS); a
    stand-in driver (running in-process) checks the wiring without a cluster."""
    import types

    from jobs.nightly_sweep import main

    calls: list[tuple[str, str]] = []

    def run_study_on_ray(
        cfg,
        world,
        *,
        run_id,
        out_dir=None,
        overwrite=False,
        resume=False,
        address="auto",
        progress=None,
        on_ready=None,
    ):
        calls.append((run_id, address))
        return run_study(
            cfg, world, run_id=run_id, out_dir=out_dir, overwrite=overwrite, progress=progress
        )

    monkeypatch.setitem(
        sys.modules, "actors.driver", types.SimpleNamespace(run_study_on_ray=run_study_on_ray)
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                str(small_sweep(tmp_path)),
                "--ray",
                "ray://head:10001",
                "--out",
                str(out),
                "--date",
                "2025-01-31",
            ]
        )
        == 0
    )
    assert calls == [
        ("cell=quick_synthetic--mf--all--s1", "ray://head:10001"),
        ("cell=quick_synthetic--mf--all--s2", "ray://head:10001"),
    ]
    assert (
        main([str(small_sweep(tmp_path)), "--ray", "auto", "--workers", "2", "--out", str(out)])
        == 2
    )


# --- seeds pooled, variants ranked ----------------------------------------------------------


def summary_rows(rows: list[dict]) -> pl.DataFrame:
    """A sweep summary from ``rows`` (unset columns null; study, population, arm and metric
    default to 's', 'all', 'control' and 'ctr'; the cell id follows the keys)."""
    schema = pl.from_arrow(SWEEP_SUMMARY.empty_table()).schema
    full = []
    for r in rows:
        r = {"study": "s", "population": "all", "arm": "control", "metric": "ctr", "n": 200, **r}
        r["cell"] = cell_id(r["study"], r["recommender"], r["population"], r["seed"])
        full.append({c: r.get(c) for c in schema})
    return pl.DataFrame(full, schema=schema, orient="row")


def seed_rows(recommender: str, means: list[float], se: float, df: float = 199.0) -> list[dict]:
    return [
        {"recommender": recommender, "seed": k + 1, "mean": m, "se": se, "df": df}
        for k, m in enumerate(means)
    ]


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory: pytest.TempPathFactory):
    """The quick study x mf, popular x one population x seeds 1, 2, 3 (90 users): 6 cells."""
    tmp = tmp_path_factory.mktemp("three")
    path = tmp / "three.toml"
    path.write_text(
        f'name = "three"\nstudies = ["{QUICK_STUDY}"]\nseeds = [1, 2, 3]\nusers = 90\n'
        '[[recommenders]]\nname = "mf"\nkind = "mf"\n'
        '[[recommenders]]\nname = "popular"\nkind = "popular"\nfollow_instructions = false\n'
        '[[populations]]\nname = "all"\n'
    )
    return run_sweep(
        load_sweep(path),
        runner=functools.partial(run_study, workers=1),
        out_root=tmp / "out",
        day=DAY,
    )


def test_a_sweep_with_three_seeds_writes_one_pooled_row_per_variant_arm_and_metric(
    three_seeds,
) -> None:
    pooled = read_sweep_pooled(three_seeds.path / POOLED_FILE)
    assert pooled.columns == SWEEP_POOLED.names
    assert pooled.equals(three_seeds.pooled)
    assert pooled.height == 2 * 1 * 2 * len(METRICS)  # recommenders x populations x arms x metrics
    assert pooled.select("recommender", "population", "arm", "metric").is_unique().all()
    assert (pooled["seeds"] == 3).all() and (pooled["n"] == 3 * 90).all()
    assert pooled.filter(pl.col("arm") == "control")["diff"].is_null().all()
    assert pooled.filter(pl.col("arm") == "inject")["diff_ci_low"].is_not_null().all()
    meta = pq.read_schema(three_seeds.path / POOLED_FILE).metadata
    assert meta[TABLE_KEY] == b"sweep_pooled"


def test_the_pooled_mean_is_the_mean_of_the_seeds_means(three_seeds) -> None:
    keys = ["recommender", "population", "arm", "metric"]
    by_seed = three_seeds.summary.group_by(keys).agg(
        pl.col("mean").mean().alias("seeds_mean"), pl.col("diff").mean().alias("seeds_diff")
    )
    both = three_seeds.pooled.join(by_seed, on=keys)
    assert both.height == three_seeds.pooled.height
    assert (both["mean"] - both["seeds_mean"]).abs().max() < 1e-12
    inject = both.filter(pl.col("arm") == "inject")
    assert (inject["diff"] - inject["seeds_diff"]).abs().max() < 1e-12


def test_the_pooled_interval_is_wider_than_any_seeds_when_seeds_disagree() -> None:
    se = 0.005
    summary = summary_rows(seed_rows("mf", [0.10, 0.20, 0.30], se))
    summary = summary.with_columns(
        ci_low=pl.col("mean") - 1.972 * se, ci_high=pl.col("mean") + 1.972 * se
    )
    row = pool_seeds(summary).row(0, named=True)
    assert row["mean"] == pytest.approx(0.2)
    assert row["ci_high"] - row["ci_low"] > (summary["ci_high"] - summary["ci_low"]).max()
    assert row["df"] == 2 and row["se"] == pytest.approx(0.1 / 3**0.5)  # spread of the means
    assert row["between_share"] > 0.99


def test_seeds_that_agree_keep_the_interval_their_own_errors_allow() -> None:
    row = pool_seeds(summary_rows(seed_rows("mf", [0.2, 0.2, 0.2], 0.01, df=4.0))).row(
        0, named=True
    )
    # the fixed-effect floor: sqrt(mean se^2 / seeds), with the seeds' degrees of freedom summed
    assert row["se"] == pytest.approx(0.01 / 3**0.5) and row["df"] == 12
    assert row["between_share"] == 0


def test_one_seed_keeps_its_own_interval() -> None:
    p = pool_estimates(np.array([[0.3]]), np.array([[0.02]]), np.array([[99.0]]))
    assert p.replicates[0] == 1 and p.se[0] == pytest.approx(0.02) and p.df[0] == 99
    assert np.isnan(p.between_share[0])


def test_variants_are_ranked_by_pooled_mean_and_overlap_with_the_best_is_marked() -> None:
    rows = [
        *seed_rows("steady", [0.30, 0.31, 0.29], 0.002),  # best, narrow: [0.275, 0.325]
        *seed_rows("noisy", [0.10, 0.45, 0.30], 0.002),  # 2nd by mean, wide: reaches the best
        *seed_rows("low", [0.10, 0.11, 0.09], 0.002),  # clearly below
        *seed_rows("tied", [0.30, 0.31, 0.29], 0.002),  # the best's equal
        *[{**r, "population": "other"} for r in seed_rows("low", [0.5, 0.5, 0.5], 0.01)],
    ]
    pooled = pool_seeds(summary_rows(rows))
    got = {
        (r["population"], r["recommender"]): (r["rank"], r["overlaps_best"])
        for r in pooled.iter_rows(named=True)
    }
    assert got == {
        ("all", "steady"): (1, True),
        ("all", "tied"): (1, True),
        ("all", "noisy"): (3, True),
        ("all", "low"): (4, False),
        ("other", "low"): (1, True),  # ranked within its own population
    }
    console = Console(record=True, width=200)
    console.print(ranking_table(pooled))
    text = console.export_text()
    assert "#3 ≈1" in text and "#4" in text and "#4 ≈1" not in text and "s / other" in text


def test_reading_a_pooled_table_checks_the_file_and_the_table(three_seeds, tmp_path: Path) -> None:
    missing = tmp_path / POOLED_FILE
    with pytest.raises(RunError) as e:
        read_sweep_pooled(missing)
    assert str(e.value) == f"{missing}: no pooled sweep table; run the sweep to write it"
    summary = three_seeds.path / "sweep_summary.parquet"
    with pytest.raises(RunError) as e:
        read_sweep_pooled(summary)
    assert str(e.value) == f"{summary}: holds table 'sweep_summary'; expected 'sweep_pooled'"

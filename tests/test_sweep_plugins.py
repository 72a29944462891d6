"""Sweeps over plug-in recommenders and a grid of their options: each combination is a variant
of its own, a cell per seed, and a row of the pooled table with its interval over seeds."""

from __future__ import annotations

import datetime
import functools
import importlib.util
from pathlib import Path

import msgspec
import polars as pl
import pytest

from recoworld.config import load_study
from recoworld.errors import ConfigError
from recoworld.study.runner import run_study
from recoworld.sweep import Sweep, expand, load_sweep, run_sweep
from recoworld.sweep.config import decode_sweep, recommender_variants, value_name

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "studies" / "quick_synthetic.toml"
DAY = datetime.date(2026, 1, 2)

HEAD = f'name = "p"\nstudies = ["{QUICK}"]\nseeds = [1]\n[[populations]]\nname = "all"\n'
MINIMAL = 'kind = "python"\ntarget = "examples.plugins.minimal:PopularUnseen"\n'


def sweep(recommenders: str) -> str:
    return HEAD + recommenders


def test_a_grid_expands_to_one_named_variant_per_combination_in_order() -> None:
    cfg = decode_sweep(
        sweep(
            '[[recommenders]]\nname = "pop"\nkind = "popular"\n'
            f'[[recommenders]]\nname = "als"\n{MINIMAL}'
            'options = { seed = 3 }\ngrid = { boost = [0.5, 2], mode = ["a b", "c"] }\n'
        )
    )
    got = [(k, v.name, v.options) for k, v in recommender_variants(cfg)]
    assert got == [
        (0, "pop", {}),
        (1, "als.boost-0.5.mode-a-b", {"seed": 3, "boost": 0.5, "mode": "a b"}),
        (1, "als.boost-0.5.mode-c", {"seed": 3, "boost": 0.5, "mode": "c"}),
        (1, "als.boost-2.mode-a-b", {"seed": 3, "boost": 2, "mode": "a b"}),
        (1, "als.boost-2.mode-c", {"seed": 3, "boost": 2, "mode": "c"}),
    ]
    assert all(not v.grid for _, v in recommender_variants(cfg))


@pytest.mark.parametrize(
    ("value", "name"),
    [(8, "8"), (0.05, "0.05"), (1e-5, "1e-05"), (-1, "m1"), (True, "true"), ("ALS/v2", "ALS-v2")],
)
def test_option_values_become_name_parts(value: object, name: str) -> None:
    assert value_name(value) == name


def test_each_variant_of_a_grid_is_a_cell_with_its_options() -> None:
    cfg = decode_sweep(sweep(f'[[recommenders]]\nname = "m"\n{MINIMAL}grid = {{ boost = [0, 3] }}'))
    cells = expand(cfg, [(str(QUICK), load_study(QUICK))])
    assert [c.id for c in cells] == [
        "quick_synthetic--m.boost-0--all--s1",
        "quick_synthetic--m.boost-3--all--s1",
    ]
    assert [c.recommender for c in cells] == ["m.boost-0", "m.boost-3"]
    assert [c.cfg.recommender.options for c in cells] == [{"boost": 0}, {"boost": 3}]
    assert all(c.cfg.recommender.target == "examples.plugins.minimal:PopularUnseen" for c in cells)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'name = "x"\nkind = "mf"\ngrid = { boost = [1, 2] }',
            'Expected no grid: it varies `options`, which only kind = "python" or "http" takes '
            "(this one is 'mf'), got {'boost': [1, 2]} - at `$.recommenders[0].grid`",
        ),
        (
            f'name = "x"\n{MINIMAL}options = {{ boost = 1 }}\ngrid = {{ boost = [1, 2] }}',
            "Expected an option given in `grid` or in `options`, not in both, got 'boost' - at "
            "`$.recommenders[0].grid.boost`",
        ),
        (
            f'name = "x"\n{MINIMAL}grid = {{ boost = [] }}',
            "Expected a non-empty list of the option's values, got [] - at "
            "`$.recommenders[0].grid.boost`",
        ),
        (
            f'name = "x"\n{MINIMAL}grid = {{ boost = [[1], [2]] }}',
            "Expected plain values (numbers, strings, booleans) to cross, got [1] - at "
            "`$.recommenders[0].grid.boost`",
        ),
        (
            f'name = "x"\n{MINIMAL}grid = {{ boost = [1, 1.0] }}',
            "Expected unique recommender names, got 'x.boost-1' - at `$.recommenders[0].name`",
        ),
        (
            f'name = "x.boost-1"\n{MINIMAL}[[recommenders]]\nname = "x"\n{MINIMAL}'
            "grid = { boost = [1] }",
            "Expected unique recommender names, got 'x.boost-1' - at `$.recommenders[1].name`",
        ),
        (
            f'name = "x"\n{MINIMAL}grid = {{ boost = 1 }}',
            "Expected a non-empty list of the option's values, got 1 - at "
            "`$.recommenders[0].grid.boost`",
        ),
    ],
)
def test_a_bad_grid_is_one_line_naming_the_field(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        decode_sweep(sweep("[[recommenders]]\n" + table), source="s.toml")
    assert str(e.value).startswith("s.toml: ") and message in str(e.value), str(e.value)


def test_the_example_sweep_compares_two_plug_in_variants_over_three_seeds() -> None:
    s = load_sweep(ROOT / "sweeps" / "plugin_variants.toml")
    assert sorted({c.recommender for c in s.cells}) == ["als.factors-32", "als.factors-8"]
    assert sorted({c.seed for c in s.cells}) == [1, 2, 3] and len(s.cells) == 6
    assert {c.cfg.recommender.target for c in s.cells} == {
        "examples.plugins.implicit_als:ImplicitRecommender"
    }


def _pooled_rows_per_variant(res, variants: list[str]) -> None:  # noqa: ANN001
    pooled = res.pooled
    assert sorted(pooled["recommender"].unique().to_list()) == sorted(variants)
    key = ["recommender", "population", "arm", "metric"]
    assert pooled.select(key).is_unique().all()
    per = pooled.group_by("arm", "metric").agg(pl.col("recommender").n_unique().alias("k"))
    assert (per["k"] == len(variants)).all()  # one row per variant, arm and metric
    assert (pooled["seeds"] == res.summary["seed"].n_unique()).all()
    assert pooled["ci_low"].is_not_null().all() and pooled["ci_high"].is_not_null().all()
    assert (pooled["ci_low"] <= pooled["mean"]).all() and (
        pooled["mean"] <= pooled["ci_high"]
    ).all()
    assert set(pooled["rank"].unique().to_list()) == set(range(1, len(variants) + 1))


def test_a_sweep_of_two_plug_in_variants_pools_each_over_its_seeds(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'name = "m"\nstudies = ["{QUICK}"]\nseeds = [1, 2]\nusers = 60\n'
        f'[[recommenders]]\nname = "pop"\n{MINIMAL}grid = {{ boost = [0.0, 3.0] }}\n'
        '[[populations]]\nname = "all"\n'
    )
    res = run_sweep(
        load_sweep(path),
        runner=functools.partial(run_study, workers=1),
        out_root=tmp_path / "out",
        day=DAY,
    )
    assert len(res.planned) == 4
    _pooled_rows_per_variant(res, ["pop.boost-0", "pop.boost-3"])
    again = run_sweep(
        load_sweep(path),
        runner=functools.partial(run_study, workers=1),
        out_root=tmp_path / "out",
        day=DAY,
    )
    assert [p.action for p in again.planned] == ["skip"] * 4  # the plug-in cells are complete


@pytest.mark.skipif(
    importlib.util.find_spec("implicit") is None,
    reason="implicit is not installed (pip install -e '.[implicit]')",
)
def test_the_example_plug_in_sweep_runs_small(tmp_path: Path) -> None:
    s = load_sweep(ROOT / "sweeps" / "plugin_variants.toml")
    small = msgspec.structs.replace(s.cfg, users=40, seeds=[1, 2])
    cells = expand(small, [(str(QUICK.resolve()), load_study(QUICK))])
    s = Sweep(path=s.path, cfg=small, cells=cells)
    res = run_sweep(
        s, runner=functools.partial(run_study, workers=1), out_root=tmp_path / "out", day=DAY
    )
    _pooled_rows_per_variant(res, ["als.factors-32", "als.factors-8"])

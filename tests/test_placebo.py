"""The negative-control (placebo) arm (``placebo_of``, recoworld/study/prepare.py
``match_placebo``): the same treatment given to existing items matched to the creator's on tags
and popularity, so that placebo - control is the effect of the slot and treatment - placebo that
of the creator's content."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
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
    check_study,
    decode_study,
)
from recoworld.errors import ConfigError
from recoworld.io.runs import scan_table
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.study.prepare import (
    PLACEBO_CALIPER,
    Prepared,
    load_world_for,
    match_placebo,
    prepare_all,
)
from recoworld.study.runner import RunResult, run_study
from recoworld.world.model import World

WORLD = WorldConfig(dataset="synthetic", synthetic_users=200, synthetic_items=600, embedding_dim=8)
SEED = 5
INJECT = {"treatment": "inject", "position": 1, "rate": 0.5}


@pytest.fixture(scope="module")
def world() -> World:
    return load_world_for(WORLD, SEED)


@pytest.fixture(scope="module")
def catalog(world: World) -> Catalog:
    return build_catalog(world, dim=WORLD.embedding_dim, seed=SEED)


def median_items(catalog: Catalog, n: int) -> np.ndarray:
    """The ``n`` world items nearest the median popularity, with distinct tag sets."""
    out: list[int] = []
    for i in np.argsort(np.abs(catalog.pop_percentile - 0.5), kind="stable"):
        if all(catalog.item_tags[i] != catalog.item_tags[j] for j in out):
            out.append(int(i))
        if len(out) == n:
            return np.array(out)
    raise AssertionError("not enough tag sets")


def copies_study(catalog: Catalog, copied: np.ndarray, **arm: object) -> StudyConfig:
    """A creator whose new items copy existing items (title, text, tags); control, the
    treatment ``arm`` and its placebo."""
    items = [
        CreatorItem(
            title=str(catalog.titles[i]),
            text=str(catalog.texts[i]),
            tags=list(catalog.item_tags[i]),
        )
        for i in copied
    ]
    cfg = StudyConfig(
        name="placebo",
        seed=SEED,
        world=WORLD,
        population=PopulationConfig(size=1200),
        simulation=SimulationConfig(sessions=2, turns=4, slate_size=5, replicates=3),
        recommender=RecommenderConfig(kind="mf", candidates=20),
        creator=CreatorConfig(id="copycat", items=items),
        arms=[
            ArmConfig(name="control"),
            ArmConfig(name="treat", **arm),  # type: ignore[arg-type]
            ArmConfig(name="placebo", placebo_of="treat", **arm),  # type: ignore[arg-type]
        ],
    )
    check_study(cfg)
    return cfg


@pytest.fixture(scope="module")
def copied(catalog: Catalog) -> np.ndarray:
    return median_items(catalog, 2)


@pytest.fixture(scope="module")
def study(catalog: Catalog, copied: np.ndarray) -> StudyConfig:
    return copies_study(catalog, copied, **INJECT)


@pytest.fixture(scope="module")
def preps(study: StudyConfig, world: World) -> tuple[Prepared, ...]:
    return prepare_all(study, world)


@pytest.fixture(scope="module")
def ran(
    study: StudyConfig, world: World, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunResult, pl.DataFrame]:
    result = run_study(study, world, run_id="r", out_dir=tmp_path_factory.mktemp("runs"))
    events = scan_table(result.path, "events").collect()
    return result, events.with_columns(pl.col(pl.Categorical).cast(pl.String))


# --- matching ----------------------------------------------------------------------------------


def test_placebo_items_are_distinct_existing_items_with_the_same_tags_and_popularity(
    preps: tuple[Prepared, ...],
) -> None:
    for p in preps:
        cat, creator = p.catalog, np.flatnonzero(p.creator_mask)
        assert p.placebo.size == creator.size == np.unique(p.placebo).size
        assert not cat.is_creator_item[p.placebo].any() and not p.creator_mask[p.placebo].any()
        for i, j in zip(creator, p.placebo):
            assert set(cat.item_tags[j]) == set(cat.item_tags[i])  # copies: twins exist
            assert abs(cat.pop_percentile[j] - cat.pop_percentile[i]) <= PLACEBO_CALIPER


def test_the_placebo_never_is_one_of_the_creators_existing_items(
    catalog: Catalog, copied: np.ndarray
) -> None:
    mask = np.zeros(catalog.n_items, bool)
    mask[copied] = True  # the creator owns the very items: their twins stand in
    placebo = match_placebo(catalog, mask, seed=0)
    assert not mask[placebo].any()
    assert [set(catalog.item_tags[j]) for j in placebo] == [
        set(catalog.item_tags[i]) for i in copied
    ]


def test_the_placebo_is_reproducible_and_drawn_anew_by_each_replicate_seed(
    catalog: Catalog, copied: np.ndarray
) -> None:
    mask = np.zeros(catalog.n_items, bool)
    mask[copied[:1]] = True
    draws = [int(match_placebo(catalog, mask, seed)[0]) for seed in range(20)]
    assert draws == [int(match_placebo(catalog, mask, seed)[0]) for seed in range(20)]
    assert len(set(draws)) > 1


def test_arms_without_placebo_treat_the_creators_items(preps: tuple[Prepared, ...]) -> None:
    for p in preps:
        control, treat, placebo = p.arm_items
        assert (control == p.creator_mask).all() and (treat == p.creator_mask).all()
        assert np.flatnonzero(placebo).tolist() == sorted(p.placebo.tolist())


def test_a_study_without_a_placebo_arm_matches_nothing(world: World, catalog: Catalog) -> None:
    cfg = copies_study(catalog, median_items(catalog, 1), **INJECT)
    cfg = msgspec.structs.replace(cfg, arms=cfg.arms[:2])
    (p,) = prepare_all(cfg, world, replicates=1)
    assert p.placebo.size == 0 and all((m == p.creator_mask).all() for m in p.arm_items)


# --- a run -------------------------------------------------------------------------------------


def test_the_placebo_arms_creator_items_are_its_placebo_items(
    ran: tuple[RunResult, pl.DataFrame], preps: tuple[Prepared, ...]
) -> None:
    _, events = ran
    for p in preps:
        uids = p.population.uid.tolist()
        for arm, mask in (("treat", p.creator_mask), ("placebo", p.arm_items[2])):
            ids = set(p.catalog.item_ids[mask].tolist())
            rows = events.filter((pl.col("arm") == arm) & pl.col("user").is_in(uids))
            assert rows["is_creator_item"].to_list() == [i in ids for i in rows["item_id"]]
            assert rows["is_creator_item"].any()


def test_placebo_and_treatment_fill_the_slot_at_the_same_rate(
    ran: tuple[RunResult, pl.DataFrame], preps: tuple[Prepared, ...]
) -> None:
    """The same injection draws fill the slot in both arms, except for users whose real history
    holds a placebo item (a seen item is never recommended again): they are left out here."""
    _, events = ran
    seen: dict[int, bool] = {}
    for p in preps:
        history = p.population.history_of(p.catalog.n_items).toarray()
        seen |= dict(zip(p.population.uid.tolist(), history[:, p.placebo].any(1).tolist()))
    slot = (
        events.filter(pl.col("position") == INJECT["position"])
        .filter(~pl.col("user").replace_strict(seen, return_dtype=pl.Boolean))
        .group_by("arm")
        .agg(pl.col("is_creator_item").mean())
    )
    rate = dict(zip(slot["arm"], slot["is_creator_item"]))
    assert rate["treat"] > 0.1 > rate["control"]
    assert rate["placebo"] == pytest.approx(rate["treat"], abs=0.01)


def test_a_creator_item_that_copies_an_existing_item_engages_like_its_placebo(
    ran: tuple[RunResult, pl.DataFrame],
) -> None:
    """Content that is no different from the catalog's: treatment - placebo is nil (the click
    rate of the treated items agrees within three standard errors)."""
    _, events = ran
    shown = events.filter(pl.col("is_creator_item") & pl.col("arm").is_in(["treat", "placebo"]))
    by = shown.group_by("arm").agg(pl.col("clicked").mean().alias("ctr"), pl.len().alias("n"))
    ctr, n = dict(zip(by["arm"], by["ctr"])), dict(zip(by["arm"], by["n"]))
    assert min(n.values()) > 500
    se = np.sqrt(sum(ctr[a] * (1 - ctr[a]) / n[a] for a in ctr))
    assert abs(ctr["treat"] - ctr["placebo"]) < 3 * se


# --- config ------------------------------------------------------------------------------------

BASE = (
    'name = "x"\n[creator]\nid = "c"\n[[creator.items]]\ntitle = "t"\n'
    '[[arms]]\nname = "control"\n'
    '[[arms]]\nname = "inject"\ntreatment = "inject"\nposition = 2\nrate = 0.5\n'
)
ERRORS = {
    "of_the_control": (
        BASE + '[[arms]]\nname = "p"\ntreatment = "inject"\nplacebo_of = "control"\n',
        "Expected the name of a treatment arm (inject or boost, not a placebo): arm 'control' "
        "has treatment 'none', got 'control' - at `$.arms[2].placebo_of`",
    ),
    "of_an_unknown_arm": (
        BASE + '[[arms]]\nname = "p"\ntreatment = "inject"\nplacebo_of = "boost"\n',
        "Expected the name of another arm of the study (one of ['control', 'inject']), "
        "got 'boost' - at `$.arms[2].placebo_of`",
    ),
    "of_itself": (
        BASE + '[[arms]]\nname = "p"\ntreatment = "inject"\nplacebo_of = "p"\n',
        "Expected the name of another arm of the study (one of ['control', 'inject']), "
        "got 'p' - at `$.arms[2].placebo_of`",
    ),
    "without_a_treatment": (
        BASE + '[[arms]]\nname = "p"\nplacebo_of = "inject"\n',
        "Expected the treatment of arm 'inject' ('inject'), of which this arm is the placebo, "
        "got 'none' - at `$.arms[2].treatment`",
    ),
    "with_another_rate": (
        BASE + '[[arms]]\nname = "p"\ntreatment = "inject"\nposition = 2\nplacebo_of = "inject"\n',
        "Expected the rate of arm 'inject' (0.5), of which this arm is the placebo, got 1.0 "
        "- at `$.arms[2].rate`",
    ),
    "of_a_placebo": (
        BASE
        + '[[arms]]\nname = "p"\ntreatment = "inject"\nposition = 2\nrate = 0.5\n'
        + 'placebo_of = "inject"\n'
        + '[[arms]]\nname = "q"\ntreatment = "inject"\nposition = 2\nrate = 0.5\n'
        + 'placebo_of = "p"\n',
        "Expected the name of a treatment arm (inject or boost, not a placebo): arm 'p' has "
        "treatment 'inject' and is the placebo of 'inject', got 'p' - at `$.arms[3].placebo_of`",
    ),
    "without_creator_items": (
        'name = "x"\n[creator]\nid = "c"\n[[arms]]\nname = "control"\n'
        '[[arms]]\nname = "b"\ntreatment = "boost"\n'
        '[[arms]]\nname = "p"\ntreatment = "boost"\nplacebo_of = "b"\n',
        "Expected a [creator] with items for a creator treatment, got 'boost' "
        "- at `$.arms[1].treatment`",
    ),
}


@pytest.mark.parametrize("text, message", ERRORS.values(), ids=ERRORS.keys())
def test_a_bad_placebo_arm_is_one_line_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        decode_study(text, source="s.toml")
    assert str(e.value) == f"s.toml: {message}"


def test_a_placebo_arm_with_its_treatments_settings_decodes() -> None:
    text = BASE + '[[arms]]\nname = "p"\ntreatment = "inject"\nposition = 2\nrate = 0.5\n'
    cfg = decode_study(text + 'placebo_of = "inject"\n')
    assert [a.placebo_of for a in cfg.arms] == ["", "", "inject"]


def test_the_shipped_creator_study_has_a_placebo_of_its_injection() -> None:
    root = Path(__file__).resolve().parents[1]
    cfg = decode_study((root / "studies" / "creator_scifi.toml").read_text())
    assert {a.name: a.placebo_of for a in cfg.arms}["inject-placebo"] == "inject"

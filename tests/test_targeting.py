"""One definition of "user likes tag T" (recoworld/users/persona.py ``likes``) for targeting,
descriptions and the run's users table: whoever ``likes = [T]`` selects is described as liking
T (and ``dislikes = [T]`` as disliking it), on a synthetic world and on MovieLens 100k through
the demo study (studies/creator_scifi.toml, via ``recoworld.study.prepare``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import PopulationConfig, Targeting, load_study
from recoworld.errors import TargetingError
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.study.prepare import load_world_for, prepare
from recoworld.users.persona import (
    LIKE_LIFT,
    LIKE_SHARE,
    SHOWN_LIKES,
    Personas,
    liked_tag_lists,
    likes,
    personas_from_history,
)
from recoworld.users.population import build_population, resolve_tags, select
from recoworld.world.synthetic import synthetic_world

DEMO_STUDY = Path(__file__).resolve().parents[1] / "studies" / "creator_scifi.toml"
DESCRIBED = re.compile(r"[^;]*; likes (?P<likes>.*?)(?:; dislikes (?P<dislikes>.*?))?\. Activity ")


def described(p: Personas, catalog: Catalog, i: int) -> tuple[list[str], list[str]]:
    """The liked and disliked tags that user ``i``'s description (an LLM prompt) names."""
    m = DESCRIBED.match(p.describe(catalog, i))
    assert m is not None, p.describe(catalog, i)
    liked = [] if m["likes"] == "nothing in particular" else m["likes"].split(", ")
    disliked = m["dislikes"].split(", ") if m["dislikes"] else []
    return liked, disliked


def assert_described_as_targeted(p: Personas, catalog: Catalog, tag: str, kind: str) -> None:
    """Every user of ``p`` names ``tag`` among its liked (``kind`` likes) or disliked tags, in its
    description and, for likes, in the users table's lists."""
    lists = liked_tag_lists(p, catalog)
    for i in range(len(p)):
        liked, disliked = described(p, catalog, i)
        assert liked == lists[i] == p.liked_tags(catalog, i), i
        assert disliked == p.disliked_tags(catalog, i), i
        named = liked if kind == "likes" else disliked
        assert tag in named, f"user {i} targeted as {kind} {tag}: {p.describe(catalog, i)}"


# ---- the definition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "avg", "liked"),
    [
        (0.30, 0.20, True),  # 1.5x the average
        (0.25, 0.20, True),  # exactly LIKE_LIFT x
        (0.24, 0.20, False),  # above average, not by enough
        (0.50, 0.45, True),  # a tag most users favour: half of the taste is enough
        (0.49, 0.45, False),
        (0.01, 0.00, True),  # nobody else has the tag at all
        (0.00, 0.00, False),  # not having a tag is never liking it
    ],
)
def test_a_user_likes_a_tag_above_lift_times_the_average_share_or_half_its_taste(
    share: float, avg: float, liked: bool
) -> None:
    assert LIKE_LIFT == 1.25 and LIKE_SHARE == 0.5
    got = likes(np.array([[share]], np.float32), np.array([avg], np.float32))
    assert got.shape == (1, 1) and bool(got[0, 0]) is liked


@pytest.fixture(scope="module")
def synth() -> tuple[Catalog, Personas]:
    world = synthetic_world(300, 200, seed=5)
    catalog = build_catalog(world, dim=8)
    return catalog, personas_from_history(world, catalog)


def test_a_user_with_no_taste_likes_nothing(synth: tuple[Catalog, Personas]) -> None:
    cat, base = synth
    p = base.take(np.arange(3))
    p = replace(p, taste=np.zeros_like(p.taste), dislike=np.zeros_like(p.dislike))
    assert not p.liked_mask().any() and not p.disliked_mask().any()
    assert liked_tag_lists(p, cat) == [[], [], []]
    assert described(p, cat, 0) == ([], [])
    assert "; likes nothing in particular. Activity " in p.describe(cat, 0)


def test_a_world_without_tags_has_nobody_liking_anything() -> None:
    world = synthetic_world(60, 40, seed=1)
    untagged = world.items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("tags"))
    world = replace(world, items=untagged).validate()
    cat = build_catalog(world, dim=4)
    base = personas_from_history(world, cat)
    assert base.taste.shape == (60, 0) and base.liked_mask().shape == (60, 0)
    assert liked_tag_lists(base, cat) == [[]] * 60
    assert all(described(base, cat, i) == ([], []) for i in range(60))
    p = build_population(base, cat, PopulationConfig(size=80), seed=0)
    assert len(p) == 80 and liked_tag_lists(p, cat) == [[]] * 80
    with pytest.raises(TargetingError, match=re.escape("unknown tag 'drama'")):
        select(base, cat, Targeting(likes=["drama"]))


def test_descriptions_list_liked_tags_by_share_capped_but_always_the_targeted_one(
    synth: tuple[Catalog, Personas],
) -> None:
    cat, base = synth
    n_tags = len(cat.tags)
    taste = np.linspace(2.0, 1.0, n_tags, dtype=np.float32)[None, :]  # every tag, descending
    p = replace(
        base.take(np.arange(1)),
        taste=taste / taste.sum(),
        avg_taste=np.full(n_tags, 0.01, np.float32),  # so that every tag is liked
    )
    assert p.liked_mask().all()
    assert p.liked_tags(cat, 0) == list(cat.tags[:SHOWN_LIKES])
    weakest = n_tags - 1
    targeted = replace(p, targeted_likes=(weakest,))
    shown = [*cat.tags[: SHOWN_LIKES - 1], cat.tags[weakest]]
    assert targeted.liked_tags(cat, 0) == liked_tag_lists(targeted, cat)[0] == shown
    assert described(targeted, cat, 0)[0] == shown


def test_a_tag_both_liked_and_disliked_counts_as_liked(synth: tuple[Catalog, Personas]) -> None:
    cat, base = synth
    both = base.liked_mask() & (base.dislike > 0)
    assert both.any()
    assert not (base.disliked_mask() & base.liked_mask()).any()


# ---- targeting selects whom the definition says, and the description agrees ------------------

SYNTH_TAGS = ["sci-fi", "drama", "comedy", "documentary", "western"]


@pytest.mark.parametrize("kind", ["likes", "dislikes"])
@pytest.mark.parametrize("tag", SYNTH_TAGS)
def test_whoever_the_target_selects_is_described_with_the_targeted_tag_synthetic(
    synth: tuple[Catalog, Personas], tag: str, kind: str
) -> None:
    cat, base = synth
    target = Targeting(**{kind: [tag]})
    rows = select(base, cat, target)
    (col,) = resolve_tags(cat, [tag], kind)
    mask = base.liked_mask() if kind == "likes" else base.disliked_mask()
    np.testing.assert_array_equal(rows, np.flatnonzero(mask[:, col]))
    # every match once, as it is (its description lists the targeted tag even past the cap)
    matches = build_population(base, cat, PopulationConfig(size=0, target=target), 3)
    np.testing.assert_array_equal(matches.template, rows)
    assert_described_as_targeted(matches, cat, tag, kind)
    # a population larger than the matches: jittered resamples stay in the segment
    p = build_population(base, cat, PopulationConfig(size=3 * rows.size + 5, target=target), 3)
    assert_described_as_targeted(p, cat, tag, kind)
    np.testing.assert_array_equal(select(p, cat, target), np.arange(len(p)))
    synthetic = PopulationConfig(size=200, source="synthetic", target=target)
    assert_described_as_targeted(build_population(base, cat, synthetic, 3), cat, tag, kind)


def test_a_population_judges_liking_against_the_world_not_against_itself(
    synth: tuple[Catalog, Personas],
) -> None:
    """Within a population of sci-fi fans every user still likes sci-fi (arm targeting too)."""
    cat, base = synth
    p = build_population(base, cat, PopulationConfig(size=0, target=Targeting(likes=["sci-fi"])), 0)
    np.testing.assert_array_equal(p.avg_taste, base.taste.mean(0))
    np.testing.assert_array_equal(select(p, cat, Targeting(likes=["sci-fi"])), np.arange(len(p)))


def test_a_segment_built_from_its_description_likes_its_tag(
    synth: tuple[Catalog, Personas],
) -> None:
    cat, base = synth
    target = Targeting(age=(5, 12), likes=["sci-fi"])  # nobody real: built from the description
    p = build_population(base, cat, PopulationConfig(size=50, source="synthetic", target=target), 1)
    assert (p.template == -1).all()
    assert_described_as_targeted(p, cat, "sci-fi", "likes")


# ---- MovieLens 100k, the demo study ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo(shared_data: Path) -> tuple[Catalog, Personas, Personas, PopulationConfig]:
    """The demo study prepared on ml-100k: its catalog, the world's personas, its population."""
    cfg = load_study(DEMO_STUDY)
    world = load_world_for(cfg.world, cfg.seed, base_dir=shared_data)
    prep = prepare(cfg, world)
    base = personas_from_history(world, prep.catalog)
    return prep.catalog, base, prep.population, cfg.population


def test_every_user_of_the_demo_study_is_described_as_a_sci_fi_fan(
    demo: tuple[Catalog, Personas, Personas, PopulationConfig],
) -> None:
    cat, _, population, cfg = demo
    assert cfg.target.likes == ["Sci-Fi"] and len(population) == cfg.size == 10_000
    assert_described_as_targeted(population, cat, "Sci-Fi", "likes")


@pytest.mark.parametrize("kind", ["likes", "dislikes"])
@pytest.mark.parametrize("tag", ["Sci-Fi", "Drama", "Comedy", "Horror", "Film-Noir"])
def test_whoever_the_target_selects_is_described_with_the_targeted_tag_movielens(
    demo: tuple[Catalog, Personas, Personas, PopulationConfig], tag: str, kind: str
) -> None:
    cat, base, _, cfg = demo
    target = Targeting(**{kind: [tag]})
    rows = select(base, cat, target)
    assert 50 < rows.size < len(base)
    matches = build_population(base, cat, msgspec.structs.replace(cfg, size=0, target=target), 42)
    np.testing.assert_array_equal(matches.template, rows)
    assert_described_as_targeted(matches, cat, tag, kind)
    sized = msgspec.structs.replace(cfg, size=2_000, target=target)
    assert_described_as_targeted(build_population(base, cat, sized, 42), cat, tag, kind)

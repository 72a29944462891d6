"""Personas from histories (recoworld/users/persona.py) and populations (population.py).

Traits are checked on a tiny hand-built world where the answer is known by construction;
targeting, resampling, description-built personas and segments on a seeded synthetic world
(and the tag spelling of MovieLens where the real data is present).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recoworld.config import PopulationConfig, Targeting
from recoworld.errors import TargetingError
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.users.persona import Personas, age_band, personas_from_history, tier_of
from recoworld.users.population import build_population, segment_labels, select
from recoworld.world.loaders import load_world
from recoworld.world.loaders._common import interactions_frame, items_frame
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world

T0 = 1_600_000_000
TRAITS = ("activity", "conformity", "diversity", "patience")


# ---- a tiny world with known answers --------------------------------------------------------

TINY_TAGS = {"Drama": range(0, 6), "Comedy": range(6, 10), "Sci-Fi": range(10, 14)}
# user -> (items, ratings, seconds between consecutive interactions)
TINY_USERS: dict[str, tuple[list[int], list[float], int]] = {
    # the crowd makes items 0-2 (Drama) the most popular, items 12-13 (Sci-Fi) the rarest
    **{f"crowd{k}": ([0, 1, 2, 6, 10], [4, 4, 4, 3, 3], 600) for k in range(6)},
    "mainstream": ([0, 1, 2], [4, 4, 4], 600),
    "niche": ([12, 13], [4, 4], 600),
    "focused": ([0, 1, 2, 3, 4, 5], [5, 5, 5, 5, 5, 5], 600),  # Drama only, a lot of it
    "varied": ([3, 7, 11], [5, 5, 5], 600),  # one of each tag
    "binge": ([3, 4, 5, 7, 8], [4, 4, 4, 4, 4], 60),  # one sitting
    "sporadic": ([3, 4, 5, 7, 8], [4, 4, 4, 4, 4], 3 * 86_400),  # five sittings
    "picky": ([0, 1, 6, 7, 8], [5, 5, 1, 1, 2], 600),  # loves Drama, hates Comedy
}


def tiny_world() -> World:
    tag_of = {i: t for t, items in TINY_TAGS.items() for i in items}
    items = pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(14)],
            "title": [f"{tag_of[i]} story number {i}" for i in range(14)],
            "tags": [[tag_of[i]] for i in range(14)],
        }
    )
    rows = []
    for u, (its, ratings, gap) in TINY_USERS.items():
        rows += [(u, f"i{i}", float(r), T0 + k * gap) for k, (i, r) in enumerate(zip(its, ratings))]
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row")
    users = pl.DataFrame({"user_id": list(TINY_USERS)})
    return World(
        name="tiny",
        items=items_frame(items),
        interactions=interactions_frame(inter),
        users=users,
        rating_scale=(1.0, 5.0),
    ).validate()


@pytest.fixture(scope="module")
def tiny() -> tuple[Catalog, Personas, dict[str, int]]:
    world = tiny_world()
    catalog = build_catalog(world, dim=4)
    personas = personas_from_history(world, catalog)
    return catalog, personas, {u: k for k, u in enumerate(world.users["user_id"].to_list())}


def test_traits_are_percentiles_in_the_unit_interval(
    tiny: tuple[Catalog, Personas, dict[str, int]],
) -> None:
    _, p, _ = tiny
    for trait in TRAITS:
        v = getattr(p, trait)
        assert v.dtype == np.float32 and ((v >= 0) & (v <= 1)).all(), trait


def test_conformity_is_higher_for_the_most_popular_items_than_the_long_tail(
    tiny: tuple[Catalog, Personas, dict[str, int]],
) -> None:
    _, p, row = tiny
    assert p.conformity[row["mainstream"]] == p.conformity.max()
    assert p.conformity[row["niche"]] == p.conformity.min()


def test_activity_counts_interactions(tiny: tuple[Catalog, Personas, dict[str, int]]) -> None:
    _, p, row = tiny
    np.testing.assert_array_equal(p.n_history[[row["focused"], row["niche"]]], [6, 2])
    assert p.activity[row["focused"]] == p.activity.max()
    assert p.activity[row["niche"]] == p.activity.min()
    assert p.activity[row["mainstream"]] == p.activity[row["varied"]]  # ties share a percentile


def test_diversity_is_the_spread_over_tags(tiny: tuple[Catalog, Personas, dict[str, int]]) -> None:
    _, p, row = tiny
    assert p.diversity[row["varied"]] == p.diversity.max()
    assert p.diversity[row["focused"]] == p.diversity[row["mainstream"]] == p.diversity.min()


def test_patience_is_the_length_of_a_sitting(
    tiny: tuple[Catalog, Personas, dict[str, int]],
) -> None:
    _, p, row = tiny
    assert p.patience[row["binge"]] > p.patience[row["sporadic"]]
    assert p.patience[row["sporadic"]] == p.patience.min()


def test_taste_follows_liked_items_and_dislikes_the_low_rated(
    tiny: tuple[Catalog, Personas, dict[str, int]],
) -> None:
    cat, p, row = tiny
    tags = {t: cat.tags.index(t) for t in TINY_TAGS}
    picky = row["picky"]
    assert p.taste[picky, tags["Drama"]] == pytest.approx(1.0)
    assert p.dislike[picky, tags["Comedy"]] == pytest.approx(1.0)
    varied = row["varied"]
    np.testing.assert_allclose(p.taste[varied, [tags[t] for t in TINY_TAGS]], 1 / 3, rtol=1e-6)
    assert p.liked_tags(cat, picky) == ["Drama"] and p.disliked_tags(cat, picky) == ["Comedy"]
    np.testing.assert_allclose(p.taste.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p.pref, axis=1), 1.0, rtol=1e-5)
    assert p.mean_rating[picky] == pytest.approx(14 / 5)


# ---- targeting on a synthetic world ---------------------------------------------------------


@dataclass(frozen=True)
class Synth:
    world: World
    catalog: Catalog
    base: Personas


@pytest.fixture(scope="module")
def synth() -> Synth:
    world = synthetic_world(300, 200, seed=5)
    catalog = build_catalog(world, dim=8)
    return Synth(world, catalog, personas_from_history(world, catalog))


def test_synthetic_personas_traits_spread_over_the_unit_interval(synth: Synth) -> None:
    for trait in TRAITS:
        v = getattr(synth.base, trait)
        assert ((v >= 0) & (v <= 1)).all(), trait
    for trait in ("activity", "conformity", "diversity"):
        v = getattr(synth.base, trait)
        assert v.max() - v.min() > 0.9 and abs(float(v.mean()) - 0.5) < 0.01, trait
    # Synthetic users log in sittings of geometric length: median sitting lengths tie a lot,
    # but spread over most of the interval.
    p = synth.base.patience
    assert p.min() < 0.3 and p.max() > 0.8 and p.std() > 0.1


def test_an_empty_spec_selects_everyone(synth: Synth) -> None:
    np.testing.assert_array_equal(select(synth.base, synth.catalog, Targeting()), np.arange(300))


def test_age_range_selects_exactly_those_ages(synth: Synth) -> None:
    rows = select(synth.base, synth.catalog, Targeting(age=(25, 34)))
    ages = synth.world.users["age"].to_numpy()
    np.testing.assert_array_equal(rows, np.flatnonzero((ages >= 25) & (ages <= 34)))
    assert 0 < rows.size < 300


def test_gender_and_occupation_select_exactly_the_matching_users(synth: Synth) -> None:
    users = synth.world.users
    rows = select(
        synth.base, synth.catalog, Targeting(gender="F", occupation=["student", "artist"])
    )
    expected = users.with_row_index().filter(
        (pl.col("gender") == "F") & pl.col("occupation").is_in(["student", "artist"])
    )["index"]
    np.testing.assert_array_equal(rows, expected.to_numpy())


def test_likes_ignore_case_and_punctuation_and_mean_an_above_average_share(synth: Synth) -> None:
    cat, base = synth.catalog, synth.base
    rows = select(base, cat, Targeting(likes=["sci-fi"]))
    for spelling in ("SCI-FI", "Sci Fi", "scifi"):
        np.testing.assert_array_equal(select(base, cat, Targeting(likes=[spelling])), rows)
    share = base.taste[:, cat.tags.index("sci-fi")]
    np.testing.assert_array_equal(
        rows, np.flatnonzero((share > 0) & (share >= 1.25 * share.mean()))
    )
    assert 0 < rows.size < 300
    # liking either of two tags is the union
    both = select(base, cat, Targeting(likes=["sci-fi", "Drama"]))
    np.testing.assert_array_equal(
        both, np.union1d(rows, select(base, cat, Targeting(likes=["drama"])))
    )


def test_activity_tiers_partition_the_users(synth: Synth) -> None:
    tiers = {
        t: select(synth.base, synth.catalog, Targeting(activity=t)) for t in ("low", "mid", "high")
    }
    np.testing.assert_array_equal(np.sort(np.concatenate(list(tiers.values()))), np.arange(300))
    act = synth.base.activity
    np.testing.assert_array_equal(tiers["low"], np.flatnonzero(act < 1 / 3))
    np.testing.assert_array_equal(tiers["high"], np.flatnonzero(act >= 2 / 3))
    assert all(80 <= r.size <= 120 for r in tiers.values())


def test_criteria_combine_as_an_intersection(synth: Synth) -> None:
    cat, base = synth.catalog, synth.base
    both = select(base, cat, Targeting(age=(18, 40), conformity="high"))
    alone = [
        select(base, cat, Targeting(age=(18, 40))),
        select(base, cat, Targeting(conformity="high")),
    ]
    np.testing.assert_array_equal(both, np.intersect1d(*alone))


def test_a_spec_that_selects_nobody_says_how_many_each_criterion_matches(synth: Synth) -> None:
    n_women = synth.world.users.filter(pl.col("gender") == "F").height
    message = (
        "$.population.target selects nobody: 0 of 300 users match all of "
        f"[age 5-12, gender F] (alone, each matches: age 5-12: 0; gender F: {n_women})"
    )
    with pytest.raises(TargetingError, match=re.escape(message) + "$"):
        select(synth.base, synth.catalog, Targeting(age=(5, 12), gender="F"))
    cfg = PopulationConfig(size=10, target=Targeting(age=(5, 12), gender="F"))
    with pytest.raises(TargetingError, match=re.escape(message) + "$"):
        build_population(synth.base, synth.catalog, cfg, seed=0)


def test_an_unknown_tag_is_an_error_with_suggestions(synth: Synth) -> None:
    cat = synth.catalog
    message = "$.population.target.likes: unknown tag 'Dramas'; did you mean drama?"
    with pytest.raises(TargetingError, match=re.escape(message) + "$"):
        select(synth.base, cat, Targeting(likes=["Dramas"]))
    known = ", ".join(cat.tags)  # fewer than 20 tags: all of them
    message = f"$.arms[1].target.dislikes: unknown tag 'zzz'; known tags: {known}"
    with pytest.raises(TargetingError, match=re.escape(message) + "$"):
        select(synth.base, cat, Targeting(dislikes=["zzz"]), field="arms[1].target")


def test_movielens_genres_are_targeted_in_any_case(shared_data: Path) -> None:
    world = load_world("ml-100k", shared_data / "ml-100k")
    catalog = build_catalog(world, dim=8)
    base = personas_from_history(world, catalog)
    rows = select(base, catalog, Targeting(likes=["sci-fi"]))
    np.testing.assert_array_equal(rows, select(base, catalog, Targeting(likes=["Sci-Fi"])))
    scifi = base.taste[:, catalog.tags.index("Sci-Fi")]
    assert 50 < rows.size < 943 and scifi[rows].min() > scifi.mean()


# ---- building populations -------------------------------------------------------------------


def build(s: Synth, seed: int = 0, **cfg: object) -> Personas:
    return build_population(s.base, s.catalog, PopulationConfig(**cfg), seed=seed)


def assert_valid(p: Personas) -> None:
    np.testing.assert_array_equal(p.uid, np.arange(len(p)))
    np.testing.assert_allclose(np.linalg.norm(p.pref, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(p.taste.sum(1), 1.0, rtol=1e-5)
    for trait in TRAITS:
        v = getattr(p, trait)
        assert np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all(), trait


def test_size_zero_is_every_match_once_as_it_is(synth: Synth) -> None:
    target = Targeting(likes=["sci-fi"])
    matched = select(synth.base, synth.catalog, target)
    p = build(synth, size=0, target=target)
    np.testing.assert_array_equal(p.template, matched)
    np.testing.assert_array_equal(p.pref, synth.base.pref[matched])
    np.testing.assert_array_equal(p.activity, synth.base.activity[matched])
    assert_valid(p)


def test_a_population_larger_than_the_matches_resamples_them_with_jitter(synth: Synth) -> None:
    target = Targeting(likes=["sci-fi"])
    matched = select(synth.base, synth.catalog, target)
    m, n = matched.size, 3 * matched.size + 7
    p = build(synth, size=n, target=target)
    assert len(p) == n
    assert_valid(p)
    base = synth.base
    # the first users are the matches, untouched
    np.testing.assert_array_equal(p.template[:m], matched)
    np.testing.assert_array_equal(p.taste[:m], base.taste[matched])
    # the rest are resamples of matches (all of them drawn) with noise on preference, taste, traits
    rest, src = np.arange(m, n), p.template[m:]
    assert np.isin(src, matched).all() and np.unique(src).size > 0.7 * m
    assert (np.einsum("nd,nd->n", p.pref[rest], base.pref[src]) < 1 - 1e-4).all()
    assert (
        np.einsum("nd,nd->n", p.pref[rest], base.pref[src]) > 0.8
    ).mean() > 0.9  # near its source
    assert ((p.taste[rest] > 0) == (base.taste[src] > 0)).all()  # no new tags appear
    assert (p.activity[rest] != base.activity[src]).mean() > 0.9
    np.testing.assert_array_equal(p.source_user[rest], base.source_user[src])


def test_resampling_is_deterministic_from_the_seed(synth: Synth) -> None:
    a, b, c = (build(synth, seed=s, size=500) for s in (4, 4, 5))
    for field in ("template", "pref", "taste", *TRAITS):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.template[:300], c.template[:300])  # every real user first
    assert (a.template[300:] != c.template[300:]).mean() > 0.9
    assert not np.array_equal(a.pref[300:], c.pref[300:])


def test_synthetic_source_jitters_every_resampled_user(synth: Synth) -> None:
    target = Targeting(activity="high")
    matched = select(synth.base, synth.catalog, target)
    p = build(synth, size=400, source="synthetic", target=target)
    assert_valid(p)
    assert np.isin(p.template, matched).all()
    assert (np.einsum("nd,nd->n", p.pref, synth.base.pref[p.template]) < 1 - 1e-4).all()


def test_a_segment_nobody_matches_is_built_from_its_description(synth: Synth) -> None:
    cat = synth.catalog
    target = Targeting(
        age=(5, 12),
        gender="F",
        occupation=["student", "artist"],
        likes=["Sci-Fi"],
        activity="high",
        diversity="low",
    )
    p = build(synth, size=600, source="synthetic", target=target)
    assert len(p) == 600
    assert_valid(p)
    assert (
        (p.template == -1).all() and (p.source_user == "").all() and np.isnan(p.mean_rating).all()
    )
    assert p.history_of(cat.n_items).nnz == 0
    assert p.age.min() == 5 and p.age.max() == 12  # every age of the range is drawn
    assert (p.gender == "F").all() and set(p.occupation) == {"student", "artist"}
    scifi = cat.tags.index("sci-fi")
    np.testing.assert_allclose(p.taste[:, scifi], 1.0)  # all taste on the liked tag
    # the preference sits near the sci-fi items, and every user's is a little different
    is_scifi = cat.tag_matrix[:, scifi] > 0
    score = p.pref @ cat.emb.T
    assert (score[:, is_scifi].mean(1) > score[:, ~is_scifi].mean(1) + 0.2).all()
    assert np.unique(p.pref.round(5), axis=0).shape[0] == 600
    # traits are uniform in the tiers asked for
    assert (tier_of(p.activity) == "high").all() and (tier_of(p.diversity) == "low").all()
    assert p.conformity.min() < 0.1 and p.conformity.max() > 0.9
    # and the segment is selected by its own spec (likes, demographics and tiers all hold)
    own_spec = Targeting(age=(5, 12), activity="high", diversity="low")
    np.testing.assert_array_equal(select(p, cat, own_spec), np.arange(600))


def test_segment_labels(synth: Synth) -> None:
    p = synth.base
    ages = np.array([5, 17, 18, 24, 25, 34, 35, 44, 45, 54, 55, 90, -1])
    assert age_band(ages).tolist() == [
        "<18",
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "25-34",
        "35-44",
        "35-44",
        "45-54",
        "45-54",
        "55+",
        "55+",
        "unknown",
    ]
    np.testing.assert_array_equal(segment_labels(p, "age_band"), age_band(p.age))
    np.testing.assert_array_equal(segment_labels(p, "gender"), p.gender)
    assert set(segment_labels(p, "activity")) == {"low", "mid", "high"}
    np.testing.assert_array_equal(segment_labels(p, "conformity") == "high", p.conformity >= 2 / 3)
    assert segment_labels(p, "none").tolist() == ["all"] * 300
    anonymous = build(synth, size=10, source="synthetic", target=Targeting(age=(5, 12)))
    assert segment_labels(anonymous, "occupation").tolist() == ["unknown"] * 10
    with pytest.raises(ValueError, match=re.escape("unknown segment_by 'zodiac'") + "$"):
        segment_labels(p, "zodiac")


def test_describe_renders_a_persona(tiny: tuple[Catalog, Personas, dict[str, int]]) -> None:
    cat, p, row = tiny
    text = p.describe(cat, row["picky"])
    assert text.startswith("A user; likes Drama; dislikes Comedy. Activity ")
    assert re.fullmatch(
        r"A user; likes Drama; dislikes Comedy\. Activity (low|medium|high), taste for popular "
        r"items "
        r"(low|medium|high), variety-seeking (low|medium|high), patience (low|medium|high)\.",
        text,
    )

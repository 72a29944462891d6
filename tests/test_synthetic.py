"""The synthetic world: contract, determinism, and agreement with its generating model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from recoworld.world.model import INTERACTION_SCHEMA, ITEM_SCHEMA
from recoworld.world.synthetic import (
    GENRE_WORDS,
    SyntheticTruth,
    synthetic_world,
    synthetic_world_with_truth,
)


@pytest.fixture(scope="module")
def world_and_truth() -> tuple:
    return synthetic_world_with_truth(400, 600, seed=11)


def coded(world) -> tuple[np.ndarray, np.ndarray]:
    u = {k: i for i, k in enumerate(world.users["user_id"].to_list())}
    it = {k: i for i, k in enumerate(world.items["item_id"].to_list())}
    return (
        np.array([u[k] for k in world.interactions["user_id"].to_list()]),
        np.array([it[k] for k in world.interactions["item_id"].to_list()]),
    )


def test_contract(world_and_truth: tuple) -> None:
    world, truth = world_and_truth
    assert dict(world.items.schema) == ITEM_SCHEMA
    assert dict(world.interactions.schema) == INTERACTION_SCHEMA
    assert world.users.columns == ["user_id", "age", "gender", "occupation"]
    assert (world.users.height, world.items.height, world.rating_scale) == (400, 600, (1.0, 5.0))
    assert world.users["age"].min() >= 18 and world.users["age"].max() <= 70
    assert set(world.users["gender"]) <= {"F", "M"}
    assert world.items["creator"].str.starts_with("creator-").all()
    assert truth.user_vectors.shape == (400, 8) and truth.item_vectors.shape == (600, 8)
    assert np.allclose(np.linalg.norm(truth.item_vectors, axis=1), 1)
    assert truth.tags == GENRE_WORDS[:12]


def test_interactions_per_user(world_and_truth: tuple) -> None:
    world, _ = world_and_truth
    per_user = world.interactions.group_by("user_id").agg(
        pl.len().alias("n"),
        pl.col("item_id").n_unique().alias("distinct"),
        (pl.col("timestamp").diff().drop_nulls() > 0).all().alias("increasing"),
    )
    assert per_user.height == 400
    assert per_user["n"].min() >= 20 and per_user["n"].max() <= 80
    assert (per_user["n"] == per_user["distinct"]).all()
    assert per_user["increasing"].all()
    ratings = world.interactions["rating"]
    assert set(ratings.unique().to_list()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (world.interactions["weight"] == 1.0).all()


def test_deterministic() -> None:
    (a, ta), (b, tb) = (synthetic_world_with_truth(50, 80, seed=3) for _ in range(2))
    for frame in ("items", "interactions", "users", "friends"):
        assert getattr(a, frame).equals(getattr(b, frame)), frame
    assert np.array_equal(ta.user_vectors, tb.user_vectors)
    assert np.array_equal(ta.item_popularity_logit, tb.item_popularity_logit)
    c = synthetic_world(50, 80, seed=4)
    assert not a.interactions.equals(c.interactions)
    assert synthetic_world(50, 80, seed=3).interactions.equals(a.interactions)


def test_tags_follow_the_latent_clusters(world_and_truth: tuple) -> None:
    world, truth = world_and_truth
    first_tags = world.items["tags"].list.first().to_list()
    assert first_tags == [truth.tags[k] for k in truth.item_cluster]
    nearest = np.argmax(truth.item_vectors @ truth.cluster_centers.T, axis=1)
    assert np.mean(nearest == truth.item_cluster) > 0.8
    assert world.items["tags"].list.len().is_in([1, 2]).all()


def test_choices_follow_the_truth(world_and_truth: tuple) -> None:
    world, truth = world_and_truth
    rows, items = coded(world)
    # popular items are chosen more often
    counts = np.bincount(items, minlength=world.items.height)
    assert spearmanr(truth.item_popularity_logit, counts).statistic > 0.5
    # chosen items have higher affinity than random ones
    affinity = np.einsum("ij,ij->i", truth.user_vectors[rows], truth.item_vectors[items])
    assert affinity.mean() > (truth.user_vectors @ truth.item_vectors.T).mean() + 0.2
    # ratings rise with affinity
    assert np.corrcoef(affinity, world.interactions["rating"].to_numpy())[0, 1] > 0.3
    # the first choice is likelier under the true logits than with users shuffled
    first = (
        world.interactions.with_row_index()
        .group_by("user_id")
        .agg(pl.col("index").min())["index"]
        .to_numpy()
    )

    def loglik(user_vectors: np.ndarray) -> float:
        shuffled = SyntheticTruth(**{**truth.__dict__, "user_vectors": user_vectors})
        total = 0.0
        for r, i in zip(rows[first], items[first], strict=True):
            logits = shuffled.choice_logits(r)
            total += logits[i] - np.logaddexp.reduce(logits)
        return total / first.size

    permuted = truth.user_vectors[np.random.default_rng(0).permutation(truth.user_vectors.shape[0])]
    assert loglik(truth.user_vectors) > loglik(permuted) + 0.5


def test_without_ratings_and_many_tags() -> None:
    world = synthetic_world(
        20, 30, seed=1, n_tags=30, with_ratings=False, interactions_per_user=(1, 3)
    )
    assert world.interactions["rating"].null_count() == world.interactions.height
    assert world.rating_scale is None and not world.has_ratings
    assert set(world.tag_vocabulary) <= {f"tag-{i:02d}" for i in range(30)}


def test_more_choices_than_items() -> None:
    world = synthetic_world(5, 3, seed=2, interactions_per_user=(2, 10), n_tags=1)
    per_user = world.interactions.group_by("user_id").len()["len"]
    assert per_user.min() >= 2 and per_user.max() <= 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "n_users, n_items, n_tags and dim must be >= 1, got 0, 10, 12, 8"),
        (
            {"interactions_per_user": (0, 3)},
            "interactions_per_user must satisfy 1 <= lo <= hi, got (0, 3)",
        ),
        (
            {"interactions_per_user": (5, 3)},
            "interactions_per_user must satisfy 1 <= lo <= hi, got (5, 3)",
        ),
    ],
)
def test_invalid_sizes(kwargs: dict, message: str) -> None:
    args = {"n_users": 10, "n_items": 10, **kwargs}
    with pytest.raises(ValueError) as err:
        synthetic_world(args.pop("n_users"), args.pop("n_items"), seed=0, **args)
    assert str(err.value) == message

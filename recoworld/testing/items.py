"""A generated world whose item descriptions carry what its tags do not, for tests and
benchmarks of item representations (``tests/test_items_study.py``, ``benchmarks/bench_items.py``).

The synthetic world's items sit around their cluster's centre (their tag); each description is
written from the item's own latent vector: for its two largest components, a topic of that
dimension's sign ("space travel" / "cooking", ...), one of three phrasings drawn per item. Tags
say the cluster; the description says where in it, in words a sentence model can read (and a
new item can be described in other words with the same meaning). Nothing here is real text: it
shows whether a content design can use a description, not how well it reads real ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from recoworld.rng import generator
from recoworld.world.model import World
from recoworld.world.synthetic import SyntheticTruth, synthetic_world_with_truth

TOPICS = (
    (
        ("space travel", "alien worlds", "a starship crew"),
        ("cooking", "a family restaurant", "a bakery"),
    ),
    (
        ("war", "soldiers at the front", "a battlefield"),
        ("a wedding", "falling in love", "a romance"),
    ),
    (
        ("a haunted house", "ghosts", "a serial killer"),
        ("a school sports team", "a summer camp", "a football season"),
    ),
    (
        ("detectives", "a murder investigation", "a bank heist"),
        ("farm animals", "a talking dog", "a forest adventure for kids"),
    ),
    (
        ("politics", "a presidential campaign", "a courtroom trial"),
        ("rock music", "a touring band", "a jazz club"),
    ),
    (("the ocean", "pirates", "a shipwreck"), ("a desert", "cowboys", "the wild west")),
    (
        ("robots", "artificial intelligence", "a computer hacker"),
        ("medieval knights", "a royal court", "dragons"),
    ),
    (("a hospital", "doctors", "an epidemic"), ("a road trip", "a car race", "motorcycles")),
)
"""Per latent dimension (the world has 8): phrasings of the topic of a positive component, then
of a negative one."""


def describe(vector: np.ndarray, rng: np.random.Generator) -> str:
    """The description of a latent vector: the topics of its two largest components."""
    top = np.argsort(-np.abs(vector))[:2]
    topics = [TOPICS[j % len(TOPICS)][int(vector[j] < 0)] for j in top]
    first, second = (t[int(rng.integers(len(t)))] for t in topics)
    return f"A story about {first} and {second}."


def described_world(
    n_users: int = 600, n_items: int = 800, *, seed: int = 0
) -> tuple[World, SyntheticTruth]:
    """A synthetic world (8 latent dimensions) whose items' text is :func:`describe` of their
    latent vectors, and its truth."""
    world, truth = synthetic_world_with_truth(n_users, n_items, seed=seed, dim=8)
    rng = generator(seed, "descriptions")
    texts = [describe(v, rng) for v in truth.item_vectors]
    return replace(world, items=world.items.with_columns(pl.Series("text", texts))), truth

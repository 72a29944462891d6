"""A generated world whose item descriptions carry what its tags do not, for tests and
benchmarks of item representations (``tests/test_items_study.py``, ``benchmarks/bench_items.py``).

The synthetic world's items sit around their cluster's centre (their tag); each description is
written from the item's own latent vector: for its three largest components, one of a pair of
words by the component's sign ("dark" / "bright", ...). Tags say the cluster; the description
says where in it. Nothing here is real text: it shows whether a content design can use a
description, not how well a sentence model reads real ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from recoworld.world.model import World
from recoworld.world.synthetic import SyntheticTruth, synthetic_world_with_truth

WORDS = (
    ("dark", "bright"),
    ("slow", "fast-paced"),
    ("funny", "serious"),
    ("violent", "gentle"),
    ("romantic", "lonely"),
    ("epic", "intimate"),
    ("old-fashioned", "futuristic"),
    ("hopeful", "bleak"),
)
"""One pair per latent dimension (the world has 8): the first word for a positive component."""


def describe(vector: np.ndarray) -> str:
    """The description of a latent vector (its three largest components, by sign)."""
    top = np.argsort(-np.abs(vector))[:3]
    w = [WORDS[j % len(WORDS)][int(vector[j] < 0)] for j in top]
    return f"A {w[0]}, {w[1]} story, {w[2]} at heart."


def described_world(
    n_users: int = 600, n_items: int = 800, *, seed: int = 0
) -> tuple[World, SyntheticTruth]:
    """A synthetic world (8 latent dimensions) whose items' text is :func:`describe` of their
    latent vectors, and its truth."""
    world, truth = synthetic_world_with_truth(n_users, n_items, seed=seed, dim=8)
    texts = [describe(v) for v in truth.item_vectors]
    return replace(world, items=world.items.with_columns(pl.Series("text", texts))), truth

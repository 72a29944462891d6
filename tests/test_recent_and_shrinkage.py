"""The recent taste follows what a user consumed last; the rating model's user means are shrunk
by as many pseudo-ratings as the data's variance components say."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from recoworld.users.choice import RatingModel
from recoworld.users.fit import _user_prior, user_means
from recoworld.users.persona import recent_taste


def _catalog() -> SimpleNamespace:
    # items 0-4 point one way, 5-9 the other
    emb = np.zeros((10, 2))
    emb[:5, 0] = 1.0
    emb[5:, 1] = 1.0
    return SimpleNamespace(emb=emb, n_items=10)


def test_the_recent_taste_leans_to_the_latest_items_and_more_so_with_a_short_half_life() -> None:
    cat = _catalog()
    # user 0: eight items of the first kind, then two of the second (time order); user 1: none
    u = np.zeros(10, np.int64)
    i = np.array([0, 1, 2, 3, 4, 0, 1, 2, 5, 6])
    pref = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    short = recent_taste(u, i, 2, cat, 1.0, pref)
    long = recent_taste(u, i, 2, cat, 50.0, pref)
    assert short[0, 1] > short[0, 0]  # the last two outweigh the eight before them
    assert long[0, 0] > long[0, 1]  # a long memory: the many older ones win
    np.testing.assert_allclose(np.linalg.norm(short[0]), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(short[1], pref[1])  # nothing consumed: the preference vector


def test_the_user_prior_recovers_the_variance_ratio() -> None:
    rng = np.random.default_rng(0)
    n_users, per = 4000, 6
    true_mean = 3.5 + 0.5 * rng.standard_normal(n_users)  # between-user sd 0.5
    u = np.repeat(np.arange(n_users), per)
    r = true_mean[u] + 1.0 * rng.standard_normal(u.size)  # within-user sd 1.0
    assert _user_prior(u, r, n_users) == pytest.approx(1.0 / 0.25, rel=0.15)
    same = np.full(u.size, 3.0) + rng.standard_normal(u.size)  # users do not differ at all
    assert _user_prior(u, same, n_users) > 50


def test_user_means_shrink_few_ratings_more_than_many() -> None:
    model = RatingModel(
        scale_min=1,
        scale_max=5,
        step=1,
        global_mean=3.5,
        gamma=0.0,
        affinity_mean=0.0,
        noise_sd=1.0,
        item_bias=[0.0],
        levels=[1, 2, 3, 4, 5],
        thresholds=[1.5, 2.5, 3.5, 4.5],
        user_prior=4.0,
    )
    mean = np.array([5.0, 5.0, np.nan])
    got = user_means(model, mean, np.array([2, 200, 0]))
    assert got[0] == pytest.approx((2 * 5 + 4 * 3.5) / 6)
    assert got[1] == pytest.approx((200 * 5 + 4 * 3.5) / 204)
    assert got[2] == pytest.approx(3.5)
    np.testing.assert_array_equal(user_means(model, mean, None)[:2], [5.0, 5.0])

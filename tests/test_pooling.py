"""Pooling replicates (recoworld/study/pooling.py): one replicate is the user-level interval;
several cover the grand mean whatever the placement effect; the within/between split."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recoworld.study.pooling import pool


def moments(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.array([[len(x)] for x in samples], float)
    mean = np.array([[x.mean()] for x in samples])
    m2 = np.array([[((x - x.mean()) ** 2).sum()] for x in samples])
    return n, mean, m2


def test_one_replicate_gives_the_student_t_interval_and_no_split() -> None:
    x = np.random.default_rng(0).normal(size=50)
    p = pool(*moments([x]))
    lo, hi = p.interval()
    want = stats.t.interval(0.95, 49, loc=x.mean(), scale=stats.sem(x))
    assert (lo[0], hi[0]) == pytest.approx(want)
    assert np.isnan(p.between[0]) and np.isnan(p.between_share[0]) and p.replicates[0] == 1


@pytest.mark.parametrize("tau", [0.0, 0.05, 0.3, 1.0])
def test_several_replicates_cover_the_grand_mean_at_any_placement_effect(tau: float) -> None:
    rng = np.random.default_rng(int(tau * 100) + 1)
    trials, covered = 600, 0
    for _ in range(trials):
        effects = rng.normal(0.0, tau, size=5)
        p = pool(*moments([rng.normal(e, 1.0, size=200) for e in effects]))
        lo, hi = p.interval()
        covered += lo[0] <= 0.0 <= hi[0]
    assert 0.92 <= covered / trials <= 0.99, covered / trials


def test_the_split_tells_placement_from_user_noise() -> None:
    rng = np.random.default_rng(7)
    users = pool(*moments([rng.normal(0.0, 1.0, size=400) for _ in range(6)]))
    placed = pool(*moments([rng.normal(e, 1.0, size=400) for e in rng.normal(0, 1, 6)]))
    assert users.between_share[0] < 0.5 < placed.between_share[0]
    assert placed.se[0] > 3 * users.se[0]  # the interval widens with the placement spread
    assert users.n[0] == 2400 and users.replicates[0] == 6


def test_cells_without_users_in_some_replicates_pool_the_others() -> None:
    n = np.array([[10.0, 0.0], [12.0, 5.0], [0.0, 1.0]])
    mean = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    m2 = np.array([[9.0, 0.0], [11.0, 4.0], [0.0, 0.0]])
    p = pool(n, mean, m2)
    assert p.replicates.tolist() == [2, 2] and p.mean.tolist() == [2.0, 3.0]
    assert p.n.tolist() == [22.0, 6.0]
    assert np.isfinite(p.se).all()

"""Fidelity of the social layer: friend co-consumption, simulated against real.

**Co-consumption** of a user: the share of the items it consumed that at least one of its
friends consumed too; its mean over users with at least one item and one friend. The level
depends on how many items each user consumed (a real Last.fm history holds ~50 artists, a
month of simulated sessions fewer), so each figure comes with a **baseline**: the same share
with each user's friends replaced by as many users drawn at random (keyed by the seed), and
their ratio, the **lift**: how much more friends share than strangers do. Real and simulated
lifts are comparable where the raw shares are not (docs/social.md, "Fidelity").
"""

from __future__ import annotations

import msgspec
import numpy as np
import scipy.sparse as sp

from recoworld.rng import generator
from recoworld.social.graph import SocialGraph


class CoConsumption(msgspec.Struct, frozen=True, kw_only=True):
    share: float
    """Mean over users of the share of its items a friend also consumed."""
    random_share: float
    """The same with each user's friends replaced by random users (as many)."""
    lift: float
    """share / random_share (NaN where the baseline is 0)."""
    users: int
    """Users with at least one item and one friend (the mean is over them)."""
    items_per_user: float
    """Mean distinct items per counted user."""


def _share(x: sp.csr_matrix, adj: sp.csr_matrix) -> tuple[float, int, float]:
    friend_has = (adj @ x) > 0
    mine = np.asarray(x.sum(axis=1)).ravel()
    both = np.asarray(x.multiply(friend_has).sum(axis=1)).ravel()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    ok = (mine > 0) & (deg > 0)
    if not ok.any():
        return float("nan"), 0, 0.0
    return float((both[ok] / mine[ok]).mean()), int(ok.sum()), float(mine[ok].mean())


def co_consumption(
    graph: SocialGraph, users: np.ndarray, items: np.ndarray, n_items: int, seed: int = 0
) -> CoConsumption:
    """Co-consumption of the consumption pairs (``users`` = graph rows, ``items`` = catalog
    rows; repeats count once)."""
    n = graph.n
    x = sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(n, n_items))
    x.data[:] = 1.0
    x.sum_duplicates()
    x.data[:] = 1.0
    adj = sp.csr_matrix(
        (np.ones(graph.friends.size, np.float32), graph.friends, graph.indptr), shape=(n, n)
    )
    share, counted, per_user = _share(x, adj)
    # the baseline: as many friends, drawn at random among the other users
    rng = generator(seed, "co-consumption")
    src = np.repeat(np.arange(n), graph.degree())
    dst = (src + 1 + rng.integers(0, max(n - 1, 1), src.size)) % max(n, 1)
    rand = sp.csr_matrix((np.ones(src.size, np.float32), (src, dst)), shape=(n, n))
    base, _, _ = _share(x, rand)
    return CoConsumption(
        share=share,
        random_share=base,
        lift=share / base if base and np.isfinite(base) else float("nan"),
        users=counted,
        items_per_user=per_user,
    )

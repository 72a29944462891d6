"""The era of consumption: how much an item was consumed around a user's own time in the logs.

Users consume what circulates while they are active: on a log that spans years (ml-latest-small:
1996-2018) a user of 2000 watches the films of around 2000, and a time-ordered holdout asks
about that user's next films, not the log's last ones. The choice model's *timeliness* feature
(``recoworld.users.choice``) says how much more an item was consumed in a window of the logs'
time around the user's last logged interaction than its overall popularity predicts:

    timeliness(u, i) = log((1 + c_w(i)) / (1 + s_w * c(i)))

``c_w``: the item's interactions in the user's window, ``c``: all of them, ``s_w``: the
window's share of the logs' dated interactions. An item consumed evenly over time scores about
0, one of the user's era above it, one of another era below. The popularity feature carries
``c``; the two together carry the era's popularity.

Time is cut into :data:`ERA_BINS` bins holding equal numbers of dated interactions; a user's
window is its bin and ``width`` bins either side (the fit chooses ``width`` among
:data:`ERA_WIDTHS`, or none, by held-out likelihood: ``ChoiceModel.era_width``). The feature is
0 where nothing is known: an undated world, a user without a dated interaction (a persona built
from a description), an item without interactions (a creator's new item), a catalogue too large
for the index (:data:`MAX_CELLS`). In the fit, a target's own interaction is taken out of its
counts (``own_window``, ``own_total``), or the feature would give the answer away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld.world.model import MIN_DATED_SHARE

ERA_BINS = 40
"""Bins of the logs' time, each holding a 40th of the dated interactions."""
ERA_WIDTHS = (1, 2, 4)
"""Bins either side of the user's own the fit may choose (0, none, is always a candidate)."""
MAX_CELLS = 50_000_000
"""Bins x items the index may hold (int32: 200 MB); a larger catalogue has no era."""


@dataclass(frozen=True, eq=False)
class EraIndex:
    """Cumulative interactions per item and time bin of a world's logs."""

    edges: np.ndarray
    """(ERA_BINS + 1,) int64: bin b holds times in [edges[b], edges[b + 1]) (the last: ]."""
    cum: np.ndarray
    """(ERA_BINS + 1, n_items) int32: each item's interactions in the bins before b."""
    share: np.ndarray
    """(ERA_BINS + 1,) float64: the share of the dated interactions in the bins before b."""

    @property
    def n_items(self) -> int:
        return int(self.cum.shape[1])


def era_index(items: np.ndarray, ts: np.ndarray, n_items: int) -> EraIndex | None:
    """The index of interactions ``items`` at times ``ts`` (-1 unknown) over ``n_items`` items;
    None where the world is not dated (``MIN_DATED_SHARE``: its order is file order) or has
    too many items."""
    dated = ts >= 0
    if ts.size == 0 or dated.mean() < MIN_DATED_SHARE or (ERA_BINS + 1) * n_items > MAX_CELLS:
        return None
    t = ts[dated]
    edges = np.quantile(t, np.linspace(0.0, 1.0, ERA_BINS + 1), method="inverted_cdf").astype(
        np.int64
    )
    b = _bins(edges, t)
    counts = np.zeros((ERA_BINS, n_items), np.int64)
    np.add.at(counts, (b, items[dated]), 1)
    cum = np.zeros((ERA_BINS + 1, n_items), np.int32)
    cum[1:] = np.cumsum(counts, axis=0)
    share = np.concatenate([[0.0], np.cumsum(counts.sum(1)) / max(int(t.size), 1)])
    return EraIndex(edges=edges, cum=cum, share=share)


def _bins(edges: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)


def user_windows(
    index: EraIndex | None,
    users: np.ndarray,
    ts: np.ndarray,
    n_users: int,
    width: int,
) -> np.ndarray | None:
    """(n_users, 2) int32 ``[lo, hi)`` bins of each user's window: its last dated interaction's
    bin (interactions ``users`` at ``ts``) and ``width`` bins either side; (0, 0) for a user
    without one. None where there is no era (no index, or ``width`` 0)."""
    if index is None or width <= 0:
        return None
    last = np.full(n_users, -1, np.int64)
    dated = ts >= 0
    np.maximum.at(last, users[dated], ts[dated])
    b = _bins(index.edges, last)
    n_bins = len(index.edges) - 1
    out = np.stack([np.maximum(b - width, 0), np.minimum(b + width + 1, n_bins)], 1)
    out[last < 0] = 0
    return out.astype(np.int32)


def timeliness(
    index: EraIndex | None,
    windows: np.ndarray | None,
    items: np.ndarray,
    *,
    own_window: np.ndarray | None = None,
    own_total: np.ndarray | None = None,
) -> np.ndarray:
    """(n, k) float32 timeliness of ``items`` (n, k) for users of ``windows`` (n, 2) (0 where
    unknown, see the module docstring); ``own_*`` (n, k): the user's own interactions with the
    item in its window and overall, taken out of the counts."""
    if index is None or windows is None:
        return np.zeros(items.shape, np.float32)
    known = None if items.size == 0 or items.max() < index.n_items else items < index.n_items
    it = items if known is None else np.where(known, items, 0)
    lo, hi = windows[:, 0:1], windows[:, 1:2]
    flat, n = index.cum.ravel(), index.n_items
    c_w = (flat.take(hi * n + it) - flat.take(lo * n + it)).astype(np.float32)
    c = index.cum[-1].take(it).astype(np.float32)
    if own_window is not None:
        c_w = np.maximum(c_w - own_window.astype(np.float32), 0.0)
    if own_total is not None:
        c = np.maximum(c - own_total.astype(np.float32), 0.0)
    share = (index.share[windows[:, 1]] - index.share[windows[:, 0]]).astype(np.float32)
    out = np.log1p(c_w)
    out -= np.log1p(share[:, None] * c)
    out *= hi > lo
    if known is not None:
        out *= known
    return out


def own_counts(
    index: EraIndex,
    windows: np.ndarray,
    logs: tuple[np.ndarray, np.ndarray, np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(in the window, overall), each (n,) float64: how many of the index's interactions
    ``logs`` (user, item, timestamp) are user ``users[j]``'s with item ``items[j]``, within that
    user's window (``windows``: per user row) and overall."""
    lu, li, lt = logs
    n_items = max(int(index.n_items), int(li.max(initial=0)) + 1, int(items.max(initial=0)) + 1)
    dated = lt >= 0
    lu, li, lt = lu[dated], li[dated], lt[dated]
    code = lu.astype(np.int64) * n_items + li
    w = windows[lu]
    b = _bins(index.edges, lt)
    inside = (b >= w[:, 0]) & (b < w[:, 1])
    query = users.astype(np.int64) * n_items + items

    def count(codes: np.ndarray) -> np.ndarray:
        keys, n = np.unique(codes, return_counts=True)
        if keys.size == 0:
            return np.zeros(query.size)
        pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        return np.where(keys[pos] == query, n[pos], 0).astype(np.float64)

    return count(code[inside]), count(code)

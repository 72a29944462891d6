"""Item neighbours: which items the logs' users consume together (item-based collaborative
filtering), the choice model's *neighbourhood* feature (``recoworld.users.choice``):

    neighbourhood(u, i) = log(1 + sum over j in u's history of sim(j, i))

``sim(j, i)``: the cosine of items j and i over the users who consumed them (binary), kept for
each item i's :data:`NEIGHBOURS` most similar items j and 0 elsewhere (and on the diagonal).
The embedding's affinity places an item by a few dozen latent factors; the neighbourhood says
which items this user's own items were consumed with, item by item, which a low-rank position
blurs (measured: the rows of ``docs/fidelity.md``, "The choice model's neighbourhood").

The feature is 0 where nothing is known: a persona without a real history (built from a
description), an item without interactions (a creator's new item), a world whose co-occurrence
work (the sum over users of their distinct items squared) exceeds :data:`MAX_PAIRS`. In the fit
the neighbours come from the users' histories alone, without the targets: a target's own
consumption would otherwise count toward its own similarity to the user's items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

NEIGHBOURS = 100
"""Most similar items kept per item."""
MAX_PAIRS = 400_000_000
"""Co-occurrence work (sum over users of distinct items squared) the neighbours may take; a
larger world has none (ML-100K's is 20M, ml-latest-small's 51M)."""
CELLS = 1 << 23
"""What a block of the computation holds: co-occurrences counted (:func:`item_neighbours`), or
dense users x items cells (:func:`neighbourhood`; 32 MB)."""
TABLE_CELLS = 1 << 25
"""Cells (a population's real users x items) a :class:`NeighbourTable` holds at most (128 MB);
a larger population's neighbourhoods are computed call by call."""


def item_neighbours(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int = NEIGHBOURS
) -> sp.csr_matrix | None:
    """(n_items, n_items) float32 CSR, entry (j, i): the similarity of item j to item i where j
    is among i's ``k`` most similar items (cosine over users, binary), else 0; None where the
    work would exceed :data:`MAX_PAIRS` or nothing was consumed. The co-occurrences are
    counted sparse, a block of items at a time (each block's work under :data:`CELLS`
    entries): a catalogue of many rarely consumed items costs what its co-occurrences do."""
    if users.size == 0 or n_items < 2:
        return None
    x = sp.csr_matrix((np.ones(users.size, np.float32), (users, items)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    per_user = np.diff(x.indptr).astype(np.int64)
    if int((per_user**2).sum()) > MAX_PAIRS:
        return None
    norms = np.sqrt(np.asarray(x.sum(0)).ravel())
    xn = (x @ sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0))).tocsr()
    xt = xn.T.tocsr()  # (items, users)
    work = np.asarray(x.T @ per_user.astype(np.float64)).ravel()  # co-occurrences per item
    bounds = np.searchsorted(np.cumsum(work), np.arange(CELLS, work.sum() + CELLS, CELLS))
    edges = np.unique(np.r_[0, np.minimum(bounds + 1, n_items), n_items])
    rows, cols, vals = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        c = (xt[a:b] @ xn).tocoo()  # (b - a, n_items): i by j
        i, j, v = c.row.astype(np.int64), c.col.astype(np.int64), c.data
        off = (j != i + a) & (v > 0)
        i, j, v = i[off], j[off], v[off]
        # per item i, most similar first: one float key, i + (1 - v) / 2 (a cosine v in (0, 1]
        # keeps to [i, i + 1/2); float64 tells cosines apart to 1e-9 for a million items)
        order = np.argsort(i + 0.5 * (1.0 - v.astype(np.float64)), kind="stable")
        i, j, v = i[order], j[order], v[order]
        start = np.searchsorted(i, np.arange(b - a))
        keep = np.arange(i.size) - start[i] < k
        rows.append(j[keep])
        cols.append(i[keep] + a)
        vals.append(v[keep].astype(np.float32))
    out = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    return out if out.nnz else None


def _scores(neighbours: sp.csr_matrix, history: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """(len(users), items) float32 ``log(1 + history[users] @ neighbours)``."""
    m = neighbours.shape[0]
    h = history[users][:, :m].astype(np.float32)
    return np.log1p(np.asarray((h @ neighbours).todense(), np.float32))


def neighbourhood(
    neighbours: sp.csr_matrix | None,
    history: sp.csr_matrix | None,
    templates: np.ndarray,
    items: np.ndarray,
) -> np.ndarray:
    """(n, k) float32 ``log(1 + sum_j history[t, j] * neighbours[j, item])`` for row ``t =
    templates[r]`` of ``history`` (a real user's items; -1: none, 0) and each of ``items[r]``
    (items beyond the neighbours' catalogue, such as creators' new items: 0)."""
    n, k = items.shape
    out = np.zeros((n, k), np.float32)
    if neighbours is None or history is None or n == 0:
        return out
    m = neighbours.shape[0]
    known = np.flatnonzero(templates >= 0)
    if known.size == 0:
        return out
    uniq, inv = np.unique(templates[known], return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(uniq.size + 1))
    step = max(1, CELLS // m)
    for a in range(0, uniq.size, step):
        b = min(a + step, uniq.size)
        dense = _scores(neighbours, history, uniq[a:b])  # (b - a, m)
        sel = order[starts[a] : starts[b]]  # positions in known of these users' rows
        pairs = known[sel]
        out[pairs] = _gather(dense, inv[sel] - a, items[pairs], m)
    return out


def _gather(dense: np.ndarray, rows: np.ndarray, items: np.ndarray, m: int) -> np.ndarray:
    inside = (items >= 0) & (items < m)
    return np.where(inside, dense[rows[:, None], np.where(inside, items, 0)], np.float32(0.0))


class NeighbourTable:
    """The neighbourhoods of a population's real users for every item, computed once where
    they fit in :data:`TABLE_CELLS` (a simulation asks for them every slate), else call by
    call (:func:`neighbourhood`)."""

    def __init__(
        self,
        neighbours: sp.csr_matrix | None,
        history: sp.csr_matrix | None,
        templates: np.ndarray,
    ) -> None:
        self.neighbours, self.history = neighbours, history
        self.uniq = np.unique(templates[templates >= 0])
        self.dense: np.ndarray | None = None
        if neighbours is None or history is None or self.uniq.size == 0:
            return
        m = neighbours.shape[0]
        if self.uniq.size * m <= TABLE_CELLS:
            step = max(1, CELLS // m)
            self.dense = np.concatenate(
                [
                    _scores(neighbours, history, self.uniq[a : a + step])
                    for a in range(0, self.uniq.size, step)
                ]
            )

    def __call__(self, templates: np.ndarray, items: np.ndarray) -> np.ndarray:
        """As :func:`neighbourhood` for templates of the population this table was built for."""
        if self.dense is None:
            return neighbourhood(self.neighbours, self.history, templates, items)
        n, k = items.shape
        out = np.zeros((n, k), np.float32)
        known = np.flatnonzero(templates >= 0)
        if known.size:
            rows = np.searchsorted(self.uniq, templates[known])
            out[known] = _gather(self.dense, rows, items[known], self.dense.shape[1])
        return out

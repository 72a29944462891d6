"""EASE (Steck, *Embarrassingly Shallow Autoencoders for Sparse Data*, WWW 2019): the strongest
simple scorer on these protocols, printed beside the simulated users' figures.

Fitted on the training part only: ``X`` is the binary user x item matrix of training
interactions, ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1`` and a zero diagonal;
a user's score for item ``j`` is ``X[u] @ B[:, j]``. Only items with a training interaction
enter the Gram matrix (the others score 0); catalogues with more such items than
:data:`MAX_ITEMS` are not scored (the inverse is cubic in them).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from recoworld.eval.split import Split

LAMBDA = 500.0
"""L2 weight: Steck's value for MovieLens-sized data."""
MAX_ITEMS = 20_000
"""Largest number of trained items EASE is fitted on (a 20k x 20k float32 inverse: 1.6 GB)."""


class Ease:
    """A fitted EASE model; :meth:`score` is a :data:`recoworld.eval.protocols.Scorer`."""

    name = "EASE"

    def __init__(self, split: Split, lam: float = LAMBDA) -> None:
        tr = split.train_coded
        n_users, n_items = split.world.users.height, split.n_items
        cols = np.unique(tr.item)
        if cols.size > MAX_ITEMS:
            raise ValueError(f"EASE: {cols.size:,} trained items, more than {MAX_ITEMS:,}")
        pos = np.full(n_items, -1, np.int64)
        pos[cols] = np.arange(cols.size)
        x = sparse.csr_matrix(
            (np.ones(tr.user.size, np.float32), (tr.user, pos[tr.item])),
            shape=(n_users, cols.size),
        )
        x.data[:] = 1.0  # repeated pairs count once
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.x, self.b, self.pos = x, b.astype(np.float32), pos

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n,) users x (n, k) items -> (n, k) scores (items without training data: 0)."""
        out = np.zeros(items.shape, np.float64)
        uniq, inv = np.unique(users, return_inverse=True)
        known = self.pos[items] >= 0
        for lo in range(0, uniq.size, 1024):  # a block of users' full score rows at a time
            block = np.asarray(self.x[uniq[lo : lo + 1024]] @ self.b)
            rows = np.flatnonzero((inv >= lo) & (inv < lo + 1024))
            r, c = np.nonzero(known[rows])
            out[rows[r], c] = block[inv[rows[r]] - lo, self.pos[items[rows[r], c]]]
        return out

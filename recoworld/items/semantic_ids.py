"""Semantic IDs: items as short tuples of codes, by residual quantisation (RQ-KMeans).

Level 1 clusters the item vectors into ``codebook_size`` centroids; level 2 clusters what is
left (each vector minus its level-1 centroid), and so on for ``levels`` levels. An item's codes
are its centroid at each level, so items that share a prefix are alike, coarse to fine
(TIGER, Rajput et al. 2023; the RecoWorld paper's semantic-ID representation). Items whose
codes all collide get one more, disambiguating code: 0 for the first of them in catalog order,
then 1, 2, ... — every item's tuple is unique.

The codebooks are fitted on the world's items only and every item (a creator's new ones too)
is assigned to them: adding new items never moves the codes of existing ones. k-means is
seeded (k-means++ starts from ``generator(seed, "semantic-ids", level)``), so the same items
and seed give the same codes.

Written ``A12-B3-C7`` (a letter per level, the code), with ``-D1`` appended when the
disambiguating code is not 0. :meth:`SemanticIds.sharing_prefix` retrieves the items that share
a prefix (a candidate source for recommenders and plug-ins); :func:`legend` describes the
first level's codes by their items' most common tags, for prompts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recoworld.rng import generator

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN = re.compile(r"^([A-Z])(\d+)$")


@dataclass(frozen=True, eq=False)
class SemanticIds:
    """Row i of ``codes`` is item i's tuple: ``levels`` codes, then the disambiguating code."""

    codes: np.ndarray  # (n_items, levels + 1) int32
    codebooks: tuple[np.ndarray, ...]  # per level, (codebook_size, dim) float32
    collisions: int
    """Items whose ``levels`` codes equal an earlier item's (their last code is > 0)."""

    @property
    def levels(self) -> int:
        return len(self.codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks[0].shape[0]) if self.codebooks else 0

    def render(self, item: int) -> str:
        """``A12-B3-C7`` (``-D1`` when the disambiguating code is not 0)."""
        row = self.codes[item]
        parts = [f"{LETTERS[k]}{int(c)}" for k, c in enumerate(row[: self.levels])]
        if row[self.levels]:
            parts.append(f"{LETTERS[self.levels]}{int(row[self.levels])}")
        return "-".join(parts)

    def parse(self, text: str) -> tuple[int, ...]:
        """The codes of a rendered semantic ID or prefix (``"A12-B3"`` -> ``(12, 3)``)."""
        out = []
        for k, tok in enumerate(t for t in text.strip().split("-") if t):
            m = _TOKEN.match(tok)
            if m is None or m.group(1) != LETTERS[k] or k > self.levels:
                raise ValueError(
                    f"semantic ID {text!r}: token {tok!r} at level {k + 1}; expected "
                    f"{LETTERS[k]}<code>"
                )
            out.append(int(m.group(2)))
        return tuple(out)

    def sharing_prefix(self, prefix: Sequence[int] | str) -> np.ndarray:
        """Indices of the items whose codes start with ``prefix`` (codes, or a rendered
        prefix such as ``"A12-B3"``), in catalog order."""
        p = self.parse(prefix) if isinstance(prefix, str) else tuple(int(c) for c in prefix)
        if not p:
            return np.arange(self.codes.shape[0])
        hit = np.all(self.codes[:, : len(p)] == np.asarray(p, dtype=self.codes.dtype), axis=1)
        return np.flatnonzero(hit)

    def neighbours(self, item: int, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Up to ``k`` other items, those sharing the longest prefix with ``item`` first (ties
        in catalog order); ``exclude``: a bool mask of items never returned."""
        same = np.cumprod(self.codes[:, : self.levels] == self.codes[item, : self.levels], axis=1)
        depth = same.sum(axis=1)
        depth[item] = -1
        if exclude is not None:
            depth[exclude] = -1
        order = np.lexsort((np.arange(depth.size), -depth))
        order = order[depth[order] >= 1]
        return order[:k]


def build_semantic_ids(
    vectors: np.ndarray,
    *,
    fit_rows: np.ndarray | None = None,
    levels: int = 3,
    codebook_size: int = 32,
    iterations: int = 25,
    seed: int = 0,
) -> SemanticIds:
    """RQ-KMeans codes of every row of ``vectors`` (n, d), codebooks fitted on ``fit_rows``
    (indices; default every row). A level with fewer distinct residuals than
    ``codebook_size`` uses as many centroids as there are."""
    x = np.asarray(vectors, dtype=np.float32)
    n = x.shape[0]
    fit = np.arange(n) if fit_rows is None else np.asarray(fit_rows)
    resid = x.copy()
    codes = np.zeros((n, levels + 1), dtype=np.int32)
    books: list[np.ndarray] = []
    for level in range(levels):
        rng = generator(seed, "semantic-ids", level)
        centroids = kmeans(resid[fit], codebook_size, iterations, rng)
        assign = nearest(resid, centroids)
        codes[:, level] = assign
        resid -= centroids[assign]
        books.append(centroids)
    codes, collisions = disambiguate(codes[:, :levels])
    return SemanticIds(codes=codes, codebooks=tuple(books), collisions=collisions)


def disambiguate(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """``codes`` (n, levels) with one more column: the rank of each item among the earlier
    items (catalog order) with the same codes, so that every tuple is unique; and the number
    of items whose codes collided with an earlier item's (rank > 0)."""
    n, levels = codes.shape
    out = np.zeros((n, levels + 1), dtype=np.int32)
    out[:, :levels] = codes
    if n == 0:
        return out, 0
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    out[order, levels] = rank
    return out, int((rank > 0).sum())


def nearest(x: np.ndarray, c: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.int32)
    cc = (c * c).sum(axis=1)
    for s in range(0, x.shape[0], chunk):
        d = cc[None, :] - 2.0 * (x[s : s + chunk] @ c.T)
        out[s : s + chunk] = np.argmin(d, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means from a k-means++ start; an emptied centroid restarts at the point
    farthest from its own centroid."""
    n = x.shape[0]
    distinct = np.unique(x, axis=0)
    k = max(1, min(k, distinct.shape[0]))
    # k-means++: each next centre drawn with probability proportional to squared distance.
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = float(d2.sum())
        i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres[j] = x[i]
        d2 = np.minimum(d2, ((x - centres[j]) ** 2).sum(axis=1))
    assign = nearest(x, centres)
    for _ in range(iterations):
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=k)
        empty = counts == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
        if empty.any():
            far = np.argsort(-((x - centres[assign]) ** 2).sum(axis=1))[: int(empty.sum())]
            centres[empty] = x[far]
        new = nearest(x, centres)
        if np.array_equal(new, assign):
            break
        assign = new
    return centres.astype(np.float32)


def legend(
    sids: SemanticIds, item_tags: Sequence[Sequence[str]], rows: np.ndarray, top: int = 3
) -> list[tuple[str, int, list[str]]]:
    """The first level's codes: (``A<code>``, items of ``rows`` with it, their ``top`` most
    common tags), codes in order, those without items left out."""
    out = []
    first = sids.codes[rows, 0]
    for code in range(sids.codebook_size):
        members = rows[first == code]
        if members.size == 0:
            continue
        counts = Counter(t for i in members for t in item_tags[int(i)])
        tags = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
        out.append((f"{LETTERS[0]}{code}", int(members.size), tags))
    return out

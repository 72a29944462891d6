"""Candidate retrieval that does not grow with the catalogue: an approximate-nearest-neighbour
index over the item vectors, and the rule that says when to use it.

The collaborative source (:class:`~recoworld.recommenders.baselines.MFSource`) scores an item
for a user as ``unit(user) . emb_i + w * popularity_i``: an inner product between the query
``[unit(user), 1]`` and the item vector ``[emb_i, w * popularity_i]``. :class:`ItemIndex`
answers "the best ``k`` items for these queries" approximately, with an inverted-file index
(faiss ``IndexIVFFlat``, inner product, float32): the items are clustered once per catalogue
and a query scans only the clusters nearest to it. The source then scores that shortlist
exactly and keeps the best; nothing else ever looks at the whole catalogue.

Why faiss (IVF) rather than usearch or hnswlib (measured on this 2-core machine, 33
dimensions, one thread, k = 300; docs/speed.md): faiss's wheel installs everywhere (hnswlib
ships only a source distribution, to be compiled); an IVF index of 1M items is built in ~3 s
(an HNSW graph, in faiss or usearch, took 6-10 s per 100k items) and suits the large ``k`` a
shortlist needs (1M items: recall@300 0.93 at ~0.5 ms a query; HNSW at 100k items: 0.75-0.8
at ~0.6 ms); and every query's answer is independent of the others in its batch once the
coarse search is kept off BLAS (below) - the property every draw and score here must have,
so that a user's events do not depend on its batch or shard.

Determinism: the index is built with one thread, from a training sample and k-means seeds
fixed by the catalogue's size; the same catalogue gives the same index in every process. A
query scans its clusters with per-vector SIMD code; faiss would compute the distances to the
cluster centres of a batch of 20 or more queries with one BLAS product, whose last bits depend
on the batch's size, so searches run with that threshold out of reach.

The index is a pure function of the catalogue's arrays: it is built on first use and kept for
as long as the catalogue object lives (:func:`item_index`), so that every batch, arm and
(forked) worker of a study shares one build. The session-start shortlists of the users drawn
from one dataset user (a template) are also the same in every batch: the index keeps them.
"""

from __future__ import annotations

import weakref
from typing import Literal

import numpy as np

from recoworld.items.catalog import Catalog

Retrieval = Literal["exact", "ann", "auto"]

ANN_ABOVE = 50_000
"""``retrieval = "auto"`` searches the index above this many items; at or below it, every item
is scored (the exact path costs less there, and keeps every earlier run's events)."""


def uses_index(retrieval: Retrieval, n_items: int) -> bool:
    """Whether ``retrieval`` means the approximate index for a catalogue of ``n_items``."""
    return retrieval == "ann" or (retrieval == "auto" and n_items > ANN_ABOVE)


def item_vectors(catalog: Catalog, popularity_weight: float) -> np.ndarray:
    """(n_items, dim + 1) float32: ``[emb_i, w * popularity_i]``, the vectors the index holds."""
    pop = (popularity_weight * catalog.popularity.astype(np.float64)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([catalog.emb.astype(np.float32), pop[:, None]]))


class ItemIndex:
    """An inverted-file inner-product index over ``vectors`` (n_items, d) float32.

    ``lists`` clusters (default ~sqrt(n_items)); a query scans the ``probe`` nearest
    (default: 1/32 of them, at least 16)."""

    def __init__(
        self, vectors: np.ndarray, *, lists: int | None = None, probe: int | None = None
    ) -> None:
        faiss = _faiss()
        n, d = vectors.shape
        self.n_items, self.dim = n, d
        self.lists = int(lists or max(1, min(4096, round(np.sqrt(n)))))
        self.probe = int(probe or min(self.lists, max(16, self.lists // 32)))
        sample = np.random.default_rng(n).choice(n, min(n, 64 * self.lists), replace=False)
        with _one_thread(faiss):
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, self.lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 1234
            index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
            index.add(vectors)
        index.nprobe = self.probe
        self._quantizer, self._index = quantizer, index  # the index refers to its quantizer
        self.shortlists: dict[tuple[int, int], np.ndarray] = {}
        """(template, width) -> that template's session-start shortlist (kept by the source)."""

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(n, k) int64: the approximately best ``k`` items for each query (n, d), best first;
        -1 pads a row whose scanned clusters held fewer items. Each row depends only on its
        own query."""
        faiss = _faiss()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = int(min(k, self.n_items))
        with _one_thread(faiss):
            old = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = 1 << 30  # never BLAS: batch-invariant
            try:
                _, items = self._index.search(q, k)
            finally:
                faiss.cvar.distance_compute_blas_threshold = old
        return items


_INDEXES: weakref.WeakKeyDictionary[Catalog, dict[float, ItemIndex]] | None = None


def item_index(catalog: Catalog, popularity_weight: float) -> ItemIndex:
    """The catalogue's index for a popularity weight: built on first use, then shared for as
    long as the catalogue lives (a memo of a pure function; nothing is created at import)."""
    global _INDEXES
    if _INDEXES is None:
        _INDEXES = weakref.WeakKeyDictionary()
    per = _INDEXES.setdefault(catalog, {})
    if popularity_weight not in per:
        per[popularity_weight] = ItemIndex(item_vectors(catalog, popularity_weight))
    return per[popularity_weight]


def _faiss():  # noqa: ANN202 - the module, imported on first use (it loads OpenMP and BLAS)
    import faiss

    return faiss


class _one_thread:
    """faiss's OpenMP at one thread inside the block: builds are deterministic, and a forked
    worker never oversubscribes the machine's cores."""

    def __init__(self, faiss) -> None:  # noqa: ANN001
        self.faiss = faiss

    def __enter__(self) -> None:
        self.old = self.faiss.omp_get_max_threads()
        self.faiss.omp_set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        self.faiss.omp_set_num_threads(self.old)

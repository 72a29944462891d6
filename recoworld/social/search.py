"""Item search inside the recommender, and the queries users type.

:class:`ItemSearch` answers a batch of queries with each query's matching items, best first:

- ``bm25``: BM25 (bm25s, Lucene's variant, k1 = 1.5, b = 0.75) over each item's title (twice:
  a title match weighs more), tags and text, English stop words removed;
- ``embedding``: the catalog's embedding space: the query's BM25 matches (up to 50) give a
  point, their embeddings weighted by score; the items nearest to it by cosine are the
  results. A query about an artist also finds artists like it, as a semantic search does.

Only items with a positive score match; a query that matches nothing gets no results (an
empty array, never an error); the page is then the recommender's (``recoworld.study.
social_loop``). Ties are broken by catalog row, so results depend on the query alone, never on
the batch it was asked in.

A user's query (:func:`queries`) comes from what it heard and what it remembers:

- searching for an item heard of from a friend: its title (``search.title_share`` of the
  time), else its two first tags (kind ``tags``);
- searching with nothing heard: the two tags with the largest share of its taste (kind
  ``tags``), or, for a user without a taste, the words of the item it last watched
  (kind ``text``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from recoworld.items.catalog import Catalog

QUERY_KINDS = ("title", "tags", "text")
TITLE, TAGS, TEXT = range(3)
EXPANSION = 50
"""BM25 matches that place an embedding query."""
CACHE = 100_000
"""Answers kept per engine at most (the cache is emptied when full)."""
_WORD = re.compile(r"\w\w+", re.UNICODE)


def item_documents(catalog: Catalog) -> list[str]:
    """The text BM25 indexes per item: its title twice, its tags and its text."""
    return [
        f"{t} {t} {' '.join(tags)} {x}"
        for t, tags, x in zip(catalog.titles.tolist(), catalog.item_tags, catalog.texts.tolist())
    ]


@dataclass(frozen=True, eq=False)
class Results:
    """Per query, the matching items best first (catalog rows) and their scores."""

    items: list[np.ndarray]
    scores: list[np.ndarray]

    def counts(self) -> np.ndarray:
        return np.array([a.size for a in self.items], np.int64)


class ItemSearch:
    """A search engine over a catalog (built once per shard; deterministic)."""

    def __init__(self, catalog: Catalog, engine: str = "bm25") -> None:
        import bm25s  # here: only studies that search pay for the import

        self._bm25s = bm25s
        self.engine, self.catalog = engine, catalog
        tokens = bm25s.tokenize(item_documents(catalog), stopwords="en", show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)
        self._cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def _bm25(self, queries: list[str], k: int) -> Results:
        n = self.catalog.n_items
        k = max(1, min(k, n))
        tokens = self._bm25s.tokenize(
            queries, stopwords="en", show_progress=False, return_ids=False
        )
        docs, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        items, out = [], []
        for d, s in zip(docs, scores):
            keep = s > 0
            d, s = d[keep].astype(np.int64), s[keep].astype(np.float32)
            order = np.lexsort((d, -s))  # best first, ties by catalog row
            items.append(d[order])
            out.append(s[order])
        return Results(items, out)

    def search(self, queries: list[str], k: int) -> Results:
        """The ``k`` best matches of every query (fewer where fewer match; none is fine).
        Answers are kept by (query, k): many users type the same query (a tag pair, a title),
        and an answer depends on the query alone."""
        todo = list(dict.fromkeys(q for q in queries if (q, k) not in self._cache))
        if todo:
            got = self._answer(todo, k)
            if len(self._cache) + len(todo) > CACHE:
                self._cache.clear()
            for q, items, scores in zip(todo, got.items, got.scores):
                self._cache[(q, k)] = (items, scores)
        hits = [self._cache[(q, k)] for q in queries]
        return Results([h[0] for h in hits], [h[1] for h in hits])

    def _answer(self, queries: list[str], k: int) -> Results:
        if self.engine == "bm25":
            return self._bm25(queries, k)
        seed = self._bm25(queries, EXPANSION)
        emb = self.catalog.emb
        items, scores = [], []
        for d, s in zip(seed.items, seed.scores):
            if d.size == 0:
                items.append(d)
                scores.append(s)
                continue
            point = (s[:, None] * emb[d]).sum(0)
            point /= np.linalg.norm(point) + 1e-9
            cos = emb @ point
            top = np.argpartition(-cos, min(k, cos.size) - 1)[:k]
            top = top[cos[top] > 0]
            order = np.lexsort((top, -cos[top]))
            items.append(top[order].astype(np.int64))
            scores.append(cos[top][order].astype(np.float32))
        return Results(items, scores)


def queries(
    catalog: Catalog,
    *,
    target: np.ndarray,
    by_title: np.ndarray,
    taste: np.ndarray,
    last_watched: np.ndarray,
) -> tuple[list[str], np.ndarray]:
    """The query each searching user types, and its kind (codes into :data:`QUERY_KINDS`).
    ``target``: the item heard of it searches for (-1: none); ``by_title``: typed as its
    title (else its tags); ``taste``: (n, n_tags) its taste; ``last_watched``: the item it last
    watched (-1: none)."""
    out: list[str] = []
    kinds = np.empty(target.size, np.int8)
    tags = catalog.tags
    for i in range(target.size):
        t = int(target[i])
        if t >= 0:
            if by_title[i] or not catalog.item_tags[t]:
                out.append(str(catalog.titles[t]))
                kinds[i] = TITLE
            else:
                out.append(" ".join(catalog.item_tags[t][:2]))
                kinds[i] = TAGS
            continue
        row = taste[i]
        if row.size and row.max() > 0:
            top = np.argsort(-row, kind="stable")[:2]
            out.append(" ".join(tags[j] for j in top if row[j] > 0))
            kinds[i] = TAGS
        elif last_watched[i] >= 0:
            j = int(last_watched[i])
            words = _WORD.findall(f"{catalog.titles[j]} {catalog.texts[j]}")
            out.append(" ".join(words[:8]))
            kinds[i] = TEXT
        else:
            out.append("")
            kinds[i] = TEXT
    return out, kinds

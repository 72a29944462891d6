"""The simulation catalog: a world's items plus any creator items, as dense numeric arrays.

Item embeddings come from a truncated SVD of the (log-weighted, implicit) user x item matrix,
tied to content: a ridge regression maps content features (tags, words of the title and text)
to item factors. Items with few interactions are shrunk toward their content prediction.

A cold-start item described only by title, text and tags — a creator's new item — is placed at
its content prediction *plus a residual*: the held-out prediction error of a real item with the
same (or the most similar) tags. The prediction alone is a conditional mean: with content
explaining little (ML-100K R^2 about 0.08) it sits near the catalog's mean direction and, once
unit-normalised, has a higher cosine with nearly every user than the real items with the same
content (cold-start copies of ML-100K's Sci-Fi films ranked about 40th for sci-fi fans, the
films themselves about 630th). With the residual, a cold-start item is one draw from the items
its content describes and ranks for users as they do. The draw is keyed by the item's id
(``recoworld.rng.generator(seed, "cold-start", item_id)``): the same seed places it identically;
another seed is another plausible item with that content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recoworld.rng import generator
from recoworld.world.model import World

_WORD = re.compile(r"[a-z][a-z0-9']{2,}")
_STOP = frozenset(
    "the and for with from that this into over under about after before their there what when "
    "your you are was were has have had its his her our who whom how all any but not can will "
    "released genres tagged artist".split()
)


@dataclass(frozen=True, eq=False)
class NewItem:
    """A cold-start item known only by its content (e.g. a creator's new release)."""

    item_id: str
    title: str
    text: str
    tags: tuple[str, ...]
    creator: str


@dataclass(frozen=True, eq=False)
class Catalog:
    """Dense item arrays. Row i of every array describes item i; ids keep the world's order,
    creator items (if any) follow the world's items.

    ``emb`` rows are L2-normalised; ``tag_matrix`` rows are L1-normalised tag indicators over
    ``tags`` (the catalog's tag vocabulary, most frequent first).
    """

    item_ids: np.ndarray  # str objects
    titles: np.ndarray
    texts: np.ndarray
    creators: np.ndarray
    item_tags: tuple[tuple[str, ...], ...]
    tags: tuple[str, ...]
    tag_matrix: np.ndarray  # (n_items, n_tags) float32, rows sum to 1 (or 0 if untagged)
    emb: np.ndarray  # (n_items, dim) float32, unit rows
    popularity: np.ndarray  # (n_items,) float32 z-scored log(1 + interaction count)
    pop_percentile: np.ndarray  # (n_items,) float32 in [0, 1]
    interaction_count: np.ndarray  # (n_items,) int64
    is_creator_item: np.ndarray  # (n_items,) bool
    content_r2: float  # held-out R^2 of the content -> factor regression

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def index_of(self, item_id: str) -> int:
        hits = np.flatnonzero(self.item_ids == item_id)
        if hits.size == 0:
            raise KeyError(item_id)
        return int(hits[0])

    def render(self, i: int) -> str:
        """A text rendering of item ``i`` for prompts: title, creator, tags, description."""
        parts = [f"Title: {self.titles[i]}"]
        if self.creators[i]:
            parts.append(f"Creator: {self.creators[i]}")
        if self.item_tags[i]:
            parts.append("Tags: " + ", ".join(self.item_tags[i]))
        if self.texts[i]:
            parts.append(f"Description: {self.texts[i]}")
        return "\n".join(parts)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class _ContentFeaturizer:
    """Tag indicators plus the most common words of titles/texts, as a sparse design matrix."""

    def __init__(self, tags: list[str], docs: list[str], max_words: int) -> None:
        self.tag_index = {t: j for j, t in enumerate(tags)}
        counts: dict[str, int] = {}
        for d in docs:
            for w in set(_words(d)):
                counts[w] = counts.get(w, 0) + 1
        vocab = sorted((w for w, c in counts.items() if c >= 3), key=lambda w: (-counts[w], w))
        self.word_index = {w: len(self.tag_index) + j for j, w in enumerate(vocab[:max_words])}
        self.n_features = len(self.tag_index) + len(self.word_index) + 1  # + bias

    def transform(
        self, tag_lists: list[tuple[str, ...]] | list[list[str]], docs: list[str]
    ) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        bias = self.n_features - 1
        for r, (tl, doc) in enumerate(zip(tag_lists, docs)):
            tj = [self.tag_index[t] for t in tl if t in self.tag_index]
            for j in tj:
                rows.append(r), cols.append(j), vals.append(1.0 / np.sqrt(len(tj)))
            wj = sorted({self.word_index[w] for w in _words(doc) if w in self.word_index})
            for j in wj:
                rows.append(r), cols.append(j), vals.append(0.5 / np.sqrt(len(wj)))
            rows.append(r), cols.append(bias), vals.append(1.0)
        return sp.csr_matrix(
            (vals, (rows, cols)), shape=(len(docs), self.n_features), dtype=np.float64
        )


def _tag_key(tag: str) -> str:
    return re.sub(r"[^a-z0-9]", "", tag.lower())


def _canonical_tags(
    tag_lists: list[tuple[str, ...]], vocabulary: list[str]
) -> list[tuple[str, ...]]:
    """New items' tags in the world's spelling where they match one ignoring case, spaces and
    punctuation (as targeting does: "sci-fi" is the world's "Sci-Fi"), duplicates dropped.
    Other tags keep their first spelling among the new items."""
    canon = {_tag_key(t): t for t in reversed(vocabulary)}  # most frequent spelling wins
    out = []
    for tl in tag_lists:
        row: list[str] = []
        for t in tl:
            c = canon.setdefault(_tag_key(t), t)
            if c not in row:
                row.append(c)
        out.append(tuple(row))
    return out


def _tag_matrix(item_tags: list[tuple[str, ...]], tags: list[str]) -> np.ndarray:
    index = {t: j for j, t in enumerate(tags)}
    m = np.zeros((len(item_tags), len(tags)), dtype=np.float32)
    for i, tl in enumerate(item_tags):
        js = [index[t] for t in tl if t in index]
        if js:
            m[i, js] = 1.0 / len(js)
    return m


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-9)).astype(np.float32)


def build_catalog(
    world: World,
    *,
    dim: int = 32,
    max_tags: int = 64,
    max_words: int = 2000,
    ridge: float = 1.0,
    shrinkage: float = 5.0,
    new_items: tuple[NewItem, ...] = (),
    donors: int = 10,
    seed: int = 0,
) -> Catalog:
    """Build the catalog of ``world`` (fitting embeddings on all its interactions) plus
    ``new_items``.

    ``shrinkage`` is the pseudo-count of the content prior: an item with n interactions gets
    ``(n * svd + shrinkage * content) / (n + shrinkage)`` before normalisation.

    A new item gets ``content + residual`` before normalisation. A world item's residual is its
    position (as above) minus its 5-fold cross-fitted content prediction (from a fit that did not
    see it); the new item takes that of one of its ``donors`` nearest interacted world items —
    nearest in tags, then in content prediction — drawn by ``generator(seed, "cold-start",
    item_id)``. With fewer than 5 interacted world items it gets the content prediction alone.
    """
    users, items, _, weights, _ = world.coded_interactions()
    n_users, n_items = world.users.height, world.items.height
    mat = sp.csr_matrix(
        (np.log1p(weights), (users, items)), shape=(n_users, n_items), dtype=np.float64
    )
    mat.sum_duplicates()
    k = max(2, min(dim, min(mat.shape) - 1))
    v0 = np.random.default_rng(seed).uniform(-1, 1, size=min(mat.shape))
    _, s, vt = svds(mat, k=k, v0=v0, random_state=seed)
    order = np.argsort(-s)
    factors = (vt[order].T * np.sqrt(s[order])).astype(np.float64)  # (n_items, k)

    item_tags = [tuple(t) for t in world.items["tags"].to_list()]
    vocabulary = world.tag_vocabulary
    tags = vocabulary[:max_tags]
    docs = [
        f"{a} {b}" for a, b in zip(world.items["title"].to_list(), world.items["text"].to_list())
    ]
    # Features are the world's tags only: a tag no world item has carries no information about
    # position, and as a feature it would only dilute the new item's known tags.
    feat = _ContentFeaturizer(list(tags), docs, max_words)
    new_tags = _canonical_tags([ni.tags for ni in new_items], vocabulary)
    for nt in new_tags:  # creator tags unknown to the world still describe the item
        tags.extend(t for t in nt if t not in tags)
    x = feat.transform(item_tags, docs)
    counts = np.bincount(items, minlength=n_items).astype(np.int64)

    # Ridge from content to factors, fitted on the interacted items; cross-fitted predictions
    # (each item predicted by a fit that did not see it) give the held-out R^2 and the residuals.
    seen = np.flatnonzero(counts > 0)
    if seen.size < _FOLDS:
        seen_held_out, r2 = np.zeros((0, k)), float("nan")
    else:
        folds = generator(seed, "content-folds")
        seen_held_out = _cross_fitted(x[seen], factors[seen], ridge, folds)
        sse = ((factors[seen] - seen_held_out) ** 2).sum()
        r2 = float(1.0 - sse / max(((factors[seen] - factors[seen].mean(0)) ** 2).sum(), 1e-12))
    w = _ridge(x[seen], factors[seen], ridge)
    content = np.asarray(x @ w)
    n = counts[:, None].astype(np.float64)
    emb = (n * factors + shrinkage * content) / (n + shrinkage)

    all_tags = item_tags + new_tags
    tag_matrix = _tag_matrix(all_tags, tags)
    if new_items:
        new_docs = [f"{ni.title} {ni.text}" for ni in new_items]
        new_content = np.asarray(feat.transform(new_tags, new_docs) @ w)
        donor = seen[: seen_held_out.shape[0]]  # none with fewer than _FOLDS interacted items
        resid = _cold_start_residuals(
            [ni.item_id for ni in new_items],
            tag_matrix[n_items:],
            new_content,
            tag_matrix[donor],
            seen_held_out,
            emb[donor] - seen_held_out,
            donors,
            seed,
        )
        emb = np.vstack([emb, new_content + resid])
    logc = np.log1p(
        np.concatenate([counts, np.zeros(len(new_items), dtype=np.int64)]).astype(np.float64)
    )
    # A new item's exposure is unknown, not zero: the popularity term of the choice model has
    # learned appeal from logged exposure, so cold-start items get the catalog median.
    logc[n_items:] = np.median(logc[:n_items])
    pop = (logc - logc[:n_items].mean()) / max(logc[:n_items].std(), 1e-9)
    pct = np.searchsorted(np.sort(logc[:n_items]), logc, side="right") / n_items
    return Catalog(
        item_ids=np.array(
            world.items["item_id"].to_list() + [ni.item_id for ni in new_items], dtype=object
        ),
        titles=np.array(
            world.items["title"].to_list() + [ni.title for ni in new_items], dtype=object
        ),
        texts=np.array(world.items["text"].to_list() + [ni.text for ni in new_items], dtype=object),
        creators=np.array(
            world.items["creator"].to_list() + [ni.creator for ni in new_items], dtype=object
        ),
        item_tags=tuple(all_tags),
        tags=tuple(tags),
        tag_matrix=tag_matrix,
        emb=_unit(emb),
        popularity=pop.astype(np.float32),
        pop_percentile=pct.astype(np.float32),
        interaction_count=np.concatenate([counts, np.zeros(len(new_items), dtype=np.int64)]),
        is_creator_item=np.concatenate([np.zeros(n_items, bool), np.ones(len(new_items), bool)]),
        content_r2=r2,
    )


_FOLDS = 5


def _cross_fitted(
    x: sp.csr_matrix, y: np.ndarray, lam: float, rng: np.random.Generator
) -> np.ndarray:
    """Out-of-fold ridge predictions of ``y`` (at least ``_FOLDS`` rows): row i comes from a fit
    on the folds without it."""
    out = np.zeros_like(y)
    fold = rng.permutation(x.shape[0]) % _FOLDS
    for f in range(_FOLDS):
        out[fold == f] = x[fold == f] @ _ridge(x[fold != f], y[fold != f], lam)
    return out


def _cold_start_residuals(
    item_ids: list[str],
    tag_rows: np.ndarray,
    content: np.ndarray,
    donor_tag_rows: np.ndarray,
    donor_content: np.ndarray,
    donor_resid: np.ndarray,
    k: int,
    seed: int,
) -> np.ndarray:
    """One residual per new item: that of a world item drawn uniformly among its ``k`` nearest
    donors — nearest in tag set first (cosine of tag indicators), then in held-out content
    prediction (centred cosine) — by ``generator(seed, "cold-start", item_id)``.

    A donor's held-out prediction and its residual are one sample of (what content predicts,
    where the item really is) for an item the regression did not see: the situation of a new
    item. Drawing among donors with the same tags samples the residuals of items described as
    the new one is (a nearest-neighbour conditional bootstrap); residuals depend on the tag set
    (a film tagged Drama and Horror may sit with the dramas or with the horror films, which a
    regression averages), so tags come first. Donors of every popularity level count, because
    a new item's eventual popularity is unknown.
    """
    if donor_resid.shape[0] == 0:
        return np.zeros_like(content)

    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    # Rounded so that equal tag sets tie exactly and the prediction decides between them.
    tag_sim = np.round(
        unit(tag_rows.astype(np.float64)) @ unit(donor_tag_rows.astype(np.float64)).T, 9
    )
    centre = donor_content.mean(0)
    pred_sim = unit(content - centre) @ unit(donor_content - centre).T
    pick = []
    for r, item_id in enumerate(item_ids):
        near = np.lexsort((-pred_sim[r], -tag_sim[r]))[:k]  # the last key is the primary one
        # One uniform per donor, the smallest among the nearest wins: a uniform draw among them
        # that does not depend on their order, and survives changes to the rest of the set.
        u = generator(seed, "cold-start", item_id).random(donor_resid.shape[0])
        pick.append(near[np.argmin(u[near])])
    return donor_resid[pick]


def _ridge(x: sp.csr_matrix, y: np.ndarray, lam: float) -> np.ndarray:
    xtx = (x.T @ x).toarray() + lam * np.eye(x.shape[1])
    return np.linalg.solve(xtx, np.asarray(x.T @ y))

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
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recoworld.config import ItemsConfig
from recoworld.errors import DataError
from recoworld.items.rq_vae import build_semantic_ids_vae
from recoworld.items.semantic_ids import SemanticIds, build_semantic_ids
from recoworld.items.text_embed import TextEncoder, item_text
from recoworld.rng import generator
from recoworld.users.era import EraIndex, era_index
from recoworld.users.neighbours import item_neighbours
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
    embedding: tuple[float, ...] = ()
    """A vector from the platform's encoder (as the world's ``embedding`` column); () = none."""
    image: str = ""
    """An image path or URI; "" = none."""


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
    content: str = "bow"
    """What predicted positions (``[items] text``), "+supplied" when supplied embeddings did."""
    embedding_fallbacks: int = 0
    """Items whose supplied embedding was bad and left out (``on_bad_embedding = "fallback"``)."""
    semantic_ids: SemanticIds | None = None
    """Semantic IDs of every item, when built (``[items] semantic_ids`` or a prompt shows them)."""
    representation: str = "text"
    """How prompts show items: text, semantic_id or both (``[llm] item_representation``)."""
    images: np.ndarray | None = None
    """(n_items,) str objects: each item's image path or URI ("" = none); None = no images."""
    image_base: str = ""
    """The folder relative image paths are taken from: the world's (its ``source``), creator
    items' too; "" = the working folder."""
    on_bad_image: str = "fallback"
    """What an unreadable image does when a prompt attaches it (``[items] on_bad_image``)."""
    content_scale: float = 1.0
    """The scale of the dense content columns chosen by cross-fitting (``DENSE_SCALES``)."""
    era: EraIndex | None = None
    """The world's interactions per item and time bin (``recoworld.users.era``): the choice
    model's timeliness; None where the world has no era (undated, or too many items)."""
    neighbours: sp.csr_matrix | None = None
    """(world items, world items) float32: each item's most similar items by who consumed them
    (``recoworld.users.neighbours``): the choice model's neighbourhood; None where the world is
    too large for them or has no interactions."""
    new_content: np.ndarray | None = None
    """(new items, dim): where their content alone places the new items (the regression's
    prediction, before the residual draw and normalisation); None without new items."""

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
    items_cfg: ItemsConfig = ItemsConfig(),
    representation: str = "text",
    encoder: TextEncoder | None = None,
) -> Catalog:
    """Build the catalog of ``world`` (fitting embeddings on all its interactions) plus
    ``new_items``.

    ``items_cfg`` (``[items]``) says what content predicts positions: tags, tags and words
    (bag of words, the default), or tags and a sentence embedding of title and text
    (``encoder``, default one built from ``items_cfg``); and whether the world's supplied
    ``embedding`` column joins them. It also asks for semantic IDs, which are built too when
    ``representation`` (``[llm] item_representation``) shows them in prompts.

    ``shrinkage`` is the pseudo-count of the content prior: an item with n interactions gets
    ``(n * svd + shrinkage * content) / (n + shrinkage)`` before normalisation.

    A new item gets ``content + residual`` before normalisation. A world item's residual is its
    position (as above) minus its 5-fold cross-fitted content prediction (from a fit that did not
    see it); the new item takes that of one of its ``donors`` nearest interacted world items —
    nearest in tags, then in content prediction — drawn by ``generator(seed, "cold-start",
    item_id)``. With fewer than 5 interacted world items it gets the content prediction alone.
    """
    users, items, _, weights, times = world.coded_interactions()
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
    feat = _ContentFeaturizer(list(tags), docs, max_words if items_cfg.text == "bow" else 0)
    new_tags = _canonical_tags([ni.tags for ni in new_items], vocabulary)
    for nt in new_tags:  # creator tags unknown to the world still describe the item
        tags.extend(t for t in nt if t not in tags)
    dense = _dense_content(world, new_items, items_cfg, encoder)
    sparse_x = feat.transform(item_tags, docs)
    counts = np.bincount(items, minlength=n_items).astype(np.int64)

    # Ridge from content to factors, fitted on the interacted items; cross-fitted predictions
    # (each item predicted by a fit that did not see it) give the held-out R^2 and the residuals.
    # Dense content (text or supplied embeddings) comes at the scale of DENSE_SCALES that
    # cross-fits best: how freely it may move a prediction depends on the catalogue's size and
    # on how much its text says.
    seen = np.flatnonzero(counts > 0)
    best: tuple[float, float, np.ndarray] | None = None
    for scale in DENSE_SCALES if dense.world is not None else (1.0,):
        x_try = _with_dense(sparse_x, None if dense.world is None else scale * dense.world)
        if seen.size < _FOLDS:
            best = (float("nan"), scale, np.zeros((0, k)))
            break
        held = _cross_fitted(x_try[seen], factors[seen], ridge, generator(seed, "content-folds"))
        sse = ((factors[seen] - held) ** 2).sum()
        r2 = float(1.0 - sse / max(((factors[seen] - factors[seen].mean(0)) ** 2).sum(), 1e-12))
        if best is None or r2 > best[0]:
            best = (r2, scale, held)
    assert best is not None
    r2, dense_scale, seen_held_out = best
    x = _with_dense(sparse_x, None if dense.world is None else dense_scale * dense.world)
    w = _ridge(x[seen], factors[seen], ridge)
    content = np.asarray(x @ w)
    n = counts[:, None].astype(np.float64)
    emb = (n * factors + shrinkage * content) / (n + shrinkage)

    all_tags = item_tags + new_tags
    tag_matrix = _tag_matrix(all_tags, tags)
    if new_items:
        new_docs = [f"{ni.title} {ni.text}" for ni in new_items]
        new_dense = None if dense.new is None else dense_scale * dense.new
        new_content = np.asarray(_with_dense(feat.transform(new_tags, new_docs), new_dense) @ w)
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
            dense_rows=dense.new,
            donor_dense=None if dense.world is None else dense.world[donor],
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
    unit_emb = _unit(emb)
    sids = None
    if items_cfg.semantic_ids or representation != "text":
        c = items_cfg.semantic_id
        if c.source == "content":
            vectors = (
                dense.vectors()
                if dense.world is not None
                else np.vstack([content, new_content if new_items else np.zeros((0, k))])
            )
        else:
            vectors = unit_emb
        if c.method == "rq-vae":
            sids = build_semantic_ids_vae(
                vectors,
                fit_rows=np.arange(n_items),
                levels=c.levels,
                codebook_size=c.codebook_size,
                seed=seed,
            )
        else:
            sids = build_semantic_ids(
                vectors,
                fit_rows=np.arange(n_items),
                levels=c.levels,
                codebook_size=c.codebook_size,
                iterations=c.iterations,
                seed=seed,
            )
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
        emb=unit_emb,
        popularity=pop.astype(np.float32),
        pop_percentile=pct.astype(np.float32),
        interaction_count=np.concatenate([counts, np.zeros(len(new_items), dtype=np.int64)]),
        is_creator_item=np.concatenate([np.zeros(n_items, bool), np.ones(len(new_items), bool)]),
        content_r2=r2,
        content=items_cfg.text + ("+supplied" if dense.supplied else ""),
        embedding_fallbacks=dense.fallbacks,
        semantic_ids=sids,
        representation=representation,
        images=_images(world, new_items),
        image_base=world.source if world.source and Path(world.source).is_dir() else "",
        on_bad_image=items_cfg.on_bad_image,
        new_content=new_content if new_items else None,
        content_scale=dense_scale,
        era=era_index(items, times, n_items),
        neighbours=item_neighbours(users, items, n_users, n_items),
    )


_FOLDS = 5

TEXT_WEIGHT = 1.0
"""Weight of the (centred, unit) text-embedding block among the dense content columns."""
SUPPLIED_WEIGHT = 1.0
"""Weight of the (centred, unit) supplied-embedding block among the dense content columns."""
DENSE_SCALES = (0.1, 0.3, 1.0, 3.0)
"""Scales of the dense content block tried next to tag indicators (rows of norm 1) and words
(norm 0.5); the one whose cross-fitted R^2 is best is kept. The ridge penalty is shared, so the
scale sets how freely the text moves a prediction: on ML-100K (1,682 items, titles) the held-out
R^2 is 0.117 / 0.151 / 0.098 at 0.1 / 0.3 / 1 and 0.032 at 2 (384 free dimensions over-fit
when the penalty is weak); a small catalogue with telling descriptions wants more."""


@dataclass(frozen=True)
class _Dense:
    """Dense content columns (text and supplied embeddings), for the world's items and the new
    ones; ``None`` when the design has none (then it is exactly the sparse tags-and-words one)."""

    world: np.ndarray | None
    new: np.ndarray | None
    supplied: bool = False
    fallbacks: int = 0

    def vectors(self) -> np.ndarray:
        assert self.world is not None and self.new is not None
        return np.vstack([self.world, self.new]).astype(np.float32)


def content_design(
    world: World,
    items_cfg: ItemsConfig = ItemsConfig(),
    *,
    max_tags: int = 64,
    max_words: int = 2000,
    encoder: TextEncoder | None = None,
    dense_scale: float = 1.0,
) -> sp.csr_matrix | np.ndarray:
    """The content design matrix of the world's items, as :func:`build_catalog` fits it (one
    row per item: tags, words or text embedding, supplied embedding, bias; the dense columns
    at ``dense_scale``, the catalog's ``content_scale``): for evaluations of what content
    tells about position (``benchmarks/bench_items.py``)."""
    tags = world.tag_vocabulary[:max_tags]
    docs = [
        f"{a} {b}" for a, b in zip(world.items["title"].to_list(), world.items["text"].to_list())
    ]
    feat = _ContentFeaturizer(list(tags), docs, max_words if items_cfg.text == "bow" else 0)
    item_tags = [tuple(t) for t in world.items["tags"].to_list()]
    dense = _dense_content(world, (), items_cfg, encoder)
    scaled = None if dense.world is None else dense_scale * dense.world
    return _with_dense(feat.transform(item_tags, docs), scaled)


def _with_dense(x: sp.csr_matrix, dense: np.ndarray | None) -> sp.csr_matrix | np.ndarray:
    """The sparse design alone, or beside dense columns as one dense matrix: a sparse
    ``x.T @ x`` of hundreds of dense columns is ~50x slower than BLAS (ML-100K with 384 text
    dimensions: 11 s of a 15 s catalogue build). Tags-and-words designs stay sparse, so their
    fits are unchanged to the bit."""
    if dense is None:
        return x
    return np.hstack([x.toarray(), dense])


def _centred_unit(world: np.ndarray, new: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows minus the mean of the world's good rows, unit-normalised (bad rows: zeros)."""
    mu = world[ok].mean(axis=0) if ok.any() else np.zeros(world.shape[1])
    return _unit(world - mu) * ok[:, None], _unit(new - mu) if new.size else new


def _dense_content(
    world: World, new_items: tuple[NewItem, ...], cfg: ItemsConfig, encoder: TextEncoder | None
) -> _Dense:
    blocks_w: list[np.ndarray] = []
    blocks_n: list[np.ndarray] = []
    if cfg.text == "embedding":
        enc = encoder or TextEncoder(
            cfg.text_model, cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None
        )
        titles, texts = world.items["title"].to_list(), world.items["text"].to_list()
        tw = enc.embed([item_text(a, b) for a, b in zip(titles, texts)]).astype(np.float64)
        tn = (
            enc.embed([item_text(ni.title, ni.text) for ni in new_items]).astype(np.float64)
            if new_items
            else np.zeros((0, tw.shape[1]))
        )
        w, n = _centred_unit(tw, tn, np.ones(tw.shape[0], bool))
        blocks_w.append(TEXT_WEIGHT * w)
        blocks_n.append(TEXT_WEIGHT * n)
    supplied, fallbacks = False, 0
    if cfg.supplied == "auto" and "embedding" in world.items.columns:
        got = supplied_embeddings(world, new_items, on_bad=cfg.on_bad_embedding)
        if got is not None:
            sw, ok_w, sn, ok_n, fallbacks = got
            w, n = _centred_unit(sw, sn, ok_w)
            n = n * ok_n[:, None] if n.size else n
            # A missing-vector indicator: an item without one is predicted by its other content.
            blocks_w.append(np.hstack([SUPPLIED_WEIGHT * w, (~ok_w)[:, None].astype(float)]))
            blocks_n.append(np.hstack([SUPPLIED_WEIGHT * n, (~ok_n)[:, None].astype(float)]))
            supplied = True
    if not blocks_w:
        return _Dense(None, None)
    return _Dense(np.hstack(blocks_w), np.hstack(blocks_n), supplied, fallbacks)


def _items_file(world: World) -> str:
    """Where the world's items came from, for error messages."""
    if world.source:
        for name in ("items.parquet", "items.csv"):
            if (Path(world.source) / name).is_file():
                return str(Path(world.source) / name)
        return world.source
    return f"{world.name} items"


def supplied_embeddings(
    world: World, new_items: tuple[NewItem, ...] = (), *, on_bad: str = "error"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
    """The world's ``embedding`` column and the new items' embeddings as arrays: (world
    vectors, world ok mask, new vectors, new ok mask, bad count); None when no world item has
    one. The dimension is the most common length among the world's vectors.

    A world item whose vector is missing (null or empty), not finite, or of another length,
    and a new item's vector that is not finite or of another length, is bad: ``on_bad =
    "error"`` raises a DataError naming the file, the column and the row (1-based, the items
    table's order) or the creator item; ``"fallback"`` leaves it out (a zero row, ok False)
    and counts it. A new item without a vector is placed by its other content (not bad)."""
    col = world.items["embedding"]
    lengths = col.list.len().fill_null(0).to_numpy()
    if not (lengths > 0).any():
        return None
    values, counts = np.unique(lengths[lengths > 0], return_counts=True)
    d = int(values[np.argmax(counts)])
    where = _items_file(world)
    ids = world.items["item_id"].to_list()
    wv = np.zeros((len(ids), d))
    ok = np.zeros(len(ids), bool)
    bad = 0
    for r, vec in enumerate(col.to_list()):
        problem = _vector_problem(vec, d)
        if problem:
            if on_bad == "error":
                raise DataError(
                    where,
                    f"column 'embedding', row {r + 1} (item {ids[r]!r}): {problem}",
                    expected=f"{d} finite numbers per item, like the other items "
                    '(or [items] on_bad_embedding = "fallback")',
                )
            bad += 1
            continue
        wv[r], ok[r] = vec, True
    nv = np.zeros((len(new_items), d))
    nok = np.zeros(len(new_items), bool)
    for r, ni in enumerate(new_items):
        if not ni.embedding:
            continue
        problem = _vector_problem(list(ni.embedding), d)
        if problem:
            if on_bad == "error":
                raise DataError(
                    "creator items",
                    f"item {ni.item_id!r}, embedding: {problem}",
                    expected=f"{d} finite numbers, like the world's items",
                )
            bad += 1
            continue
        nv[r], nok[r] = ni.embedding, True
    return wv, ok, nv, nok, bad


def _vector_problem(vec: list[float | None] | None, d: int) -> str:
    if not vec:
        return "no embedding (null or empty)"
    if len(vec) != d:
        return f"{len(vec)} values"
    a = np.asarray([np.nan if v is None else v for v in vec], dtype=np.float64)
    if not np.isfinite(a).all():
        return f"value {int(np.flatnonzero(~np.isfinite(a))[0]) + 1} is not finite"
    return ""


def _images(world: World, new_items: tuple[NewItem, ...]) -> np.ndarray | None:
    col = world.items["image"].fill_null("").to_list() if "image" in world.items.columns else []
    new = [ni.image for ni in new_items]
    if not any(col) and not any(new):
        return None
    col = col or [""] * world.items.height
    return np.array(col + new, dtype=object)


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
    *,
    dense_rows: np.ndarray | None = None,
    donor_dense: np.ndarray | None = None,
) -> np.ndarray:
    """One residual per new item: that of a world item drawn uniformly among its ``k`` nearest
    donors — nearest in tag set first (cosine of tag indicators), then in held-out content
    prediction (centred cosine) — by ``generator(seed, "cold-start", item_id)``.

    With dense content (``dense_rows``, ``donor_dense``: text or supplied embeddings, centred)
    the tags filter and the description ranks: donors sharing a tag with the new item first
    (all of them when it shares none), nearest by the cosine of the dense rows. A new item
    tagged Sci-Fi and described like Star Wars draws among The Empire Strikes Back, Star Wars,
    Return of the Jedi (ML-100K, all-MiniLM-L6-v2), not among the films tagged Sci-Fi alone,
    which the tag set alone would prefer.

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
    if dense_rows is not None and donor_dense is not None:
        dense_sim = np.round(unit(dense_rows) @ unit(donor_dense).T, 9)
        any_tag = (tag_sim > 0).any(axis=1, keepdims=True)
        tag_sim = np.where(any_tag, (tag_sim > 0).astype(np.float64), 0.0) + 0.5 * dense_sim
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


def _ridge(x: sp.csr_matrix | np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    if not sp.issparse(x):  # a design with dense content columns (``_with_dense``)
        return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    xtx = (x.T @ x).toarray() + lam * np.eye(x.shape[1])
    return np.linalg.solve(xtx, np.asarray(x.T @ y))

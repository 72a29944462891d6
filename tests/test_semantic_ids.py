"""Semantic IDs (recoworld/items/semantic_ids.py): RQ-KMeans codes, unique tuples, prefix
retrieval, stability when new items arrive, and the catalog that carries them."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld.config import ItemsConfig, SemanticIdConfig
from recoworld.items.catalog import NewItem, build_catalog
from recoworld.items.semantic_ids import build_semantic_ids, legend
from recoworld.world.synthetic import synthetic_world


def clustered(n: int, d: int = 8, centres: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 3
    return (c[rng.integers(centres, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_every_item_gets_a_unique_tuple_and_duplicates_are_disambiguated_in_order() -> None:
    x = clustered(300)
    x[10] = x[20] = x[30] = x[5]  # four identical vectors: identical codes
    s = build_semantic_ids(x, levels=3, codebook_size=8, seed=1)
    assert s.codes.shape == (300, 4)
    assert len({tuple(r) for r in s.codes.tolist()}) == 300
    assert [int(s.codes[i, 3]) for i in (5, 10, 20, 30)] == [0, 1, 2, 3]
    assert s.collisions >= 3
    assert s.render(5).count("-") == 2 and s.render(30).endswith("-D3")


def test_codes_are_reproducible_and_seeded() -> None:
    x = clustered(400)
    a = build_semantic_ids(x, levels=2, codebook_size=16, seed=3)
    b = build_semantic_ids(x, levels=2, codebook_size=16, seed=3)
    assert np.array_equal(a.codes, b.codes)
    assert all(np.array_equal(p, q) for p, q in zip(a.codebooks, b.codebooks))


def test_each_level_quantises_what_the_levels_before_left() -> None:
    x = clustered(500, centres=8)
    s = build_semantic_ids(x, levels=3, codebook_size=8, seed=0)
    err = []
    resid = x.copy()
    for level, book in enumerate(s.codebooks):
        resid = resid - book[s.codes[:, level]]
        err.append(float((resid**2).sum(1).mean()))
    assert err[0] > err[1] > err[2]
    # the first level finds the clusters: items of one cluster share their first code
    assert len(np.unique(s.codes[:, 0])) == 8


def test_items_sharing_a_prefix_and_neighbours() -> None:
    x = clustered(200)
    s = build_semantic_ids(x, levels=3, codebook_size=6, seed=0)
    item = 17
    a = f"A{s.codes[item, 0]}"
    ab = f"{a}-B{s.codes[item, 1]}"
    first = s.sharing_prefix(a)
    second = s.sharing_prefix(ab)
    assert item in second and set(second) <= set(first)
    assert np.array_equal(first, np.flatnonzero(s.codes[:, 0] == s.codes[item, 0]))
    assert np.array_equal(s.sharing_prefix((int(s.codes[item, 0]),)), first)
    near = s.neighbours(item, 5)
    assert item not in near and len(near) == 5
    depth = [int(np.cumprod(s.codes[j, :3] == s.codes[item, :3]).sum()) for j in near]
    assert depth == sorted(depth, reverse=True) and depth[0] >= 2
    masked = np.zeros(200, bool)
    masked[near[:2]] = True
    assert not set(s.neighbours(item, 5, exclude=masked)) & set(near[:2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A1-C2", "token 'C2' at level 2; expected B<code>"),
        ("A1-Bx", "token 'Bx' at level 2; expected B<code>"),
        ("1-2", "token '1' at level 1; expected A<code>"),
    ],
)
def test_a_malformed_prefix_is_one_line_naming_the_token(text: str, message: str) -> None:
    s = build_semantic_ids(clustered(50), levels=2, codebook_size=4, seed=0)
    with pytest.raises(ValueError, match=message.replace("<", ".").replace(">", ".")):
        s.parse(text)


def test_fewer_distinct_vectors_than_codes_use_as_many_codes_as_there_are() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)
    s = build_semantic_ids(x, levels=2, codebook_size=32, seed=0)
    assert s.codebooks[0].shape[0] == 3
    assert len({tuple(r) for r in s.codes.tolist()}) == 12


@pytest.fixture(scope="module")
def world():
    return synthetic_world(150, 300, seed=2)


def test_the_catalog_carries_semantic_ids_only_when_asked(world) -> None:
    plain = build_catalog(world, dim=8, seed=1)
    assert plain.semantic_ids is None
    cfg = ItemsConfig(semantic_ids=True, semantic_id=SemanticIdConfig(levels=2, codebook_size=8))
    cat = build_catalog(world, dim=8, seed=1, items_cfg=cfg)
    assert cat.semantic_ids is not None and cat.semantic_ids.codes.shape == (300, 3)
    # the simulation is untouched: same embedding, same everything numeric
    assert np.array_equal(plain.emb, cat.emb) and plain.content_r2 == cat.content_r2
    shown = build_catalog(world, dim=8, seed=1, representation="both")
    assert shown.semantic_ids is not None and shown.representation == "both"


def test_new_items_never_move_the_codes_of_existing_ones(world) -> None:
    cfg = ItemsConfig(semantic_ids=True)
    before = build_catalog(world, dim=8, seed=1, items_cfg=cfg)
    new = tuple(
        NewItem(item_id=f"n{k}", title=f"New {k}", text="", tags=("drama",), creator="c")
        for k in range(3)
    )
    after = build_catalog(world, dim=8, seed=1, items_cfg=cfg, new_items=new)
    assert before.semantic_ids is not None and after.semantic_ids is not None
    assert np.array_equal(after.semantic_ids.codes[:300], before.semantic_ids.codes)
    assert after.semantic_ids.codes.shape[0] == 303
    assert len({tuple(r) for r in after.semantic_ids.codes.tolist()}) == 303


def test_content_semantic_ids_quantise_the_content_prediction_without_dense_content(
    world,
) -> None:
    cfg = ItemsConfig(semantic_ids=True, semantic_id=SemanticIdConfig(source="content"))
    cat = build_catalog(world, dim=8, seed=1, items_cfg=cfg)
    assert cat.semantic_ids is not None
    # items of one tag share first codes far more often than chance
    first = cat.semantic_ids.codes[:, 0]
    tag = np.array([t[0] for t in cat.item_tags])
    same_tag = tag[:, None] == tag[None, :]
    same_code = first[:, None] == first[None, :]
    assert same_code[same_tag].mean() > 2 * same_code[~same_tag].mean()


def test_the_legend_names_each_first_code_by_its_items_most_common_tags() -> None:
    x = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)
    s = build_semantic_ids(x, levels=1, codebook_size=2, seed=0)
    tags = [("drama", "war"), ("drama",), ("war", "drama")] + [("comedy",)] * 3
    rows = legend(s, tags, np.arange(6))
    by_code = {code: (n, t) for code, n, t in rows}
    drama_code = f"A{s.codes[0, 0]}"
    assert by_code[drama_code] == (3, ["drama", "war"])
    assert sorted(n for n, _ in by_code.values()) == [3, 3]

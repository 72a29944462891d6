"""Semantic IDs by RQ-VAE (recoworld/items/rq_vae.py): deterministic on CPU, unique tuples,
codes that keep what the vectors say, new items that move no existing code, and the catalog
that builds them when ``[items.semantic_id] method = "rq-vae"``. Needs torch (the rl extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="RQ-VAE needs torch (the rl or embeddings extra)")

from recoworld.config import ItemsConfig, SemanticIdConfig, decode_study  # noqa: E402
from recoworld.errors import ConfigError, DataError  # noqa: E402
from recoworld.items.catalog import NewItem, build_catalog  # noqa: E402
from recoworld.items.rq_vae import build_semantic_ids_vae, fit_rq_vae  # noqa: E402
from recoworld.items.semantic_ids import build_semantic_ids, disambiguate  # noqa: E402
from recoworld.world.synthetic import synthetic_world  # noqa: E402


def clustered(n: int, d: int = 16, centres: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 3
    labels = rng.integers(centres, size=n)
    return (c[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    return clustered(600)


@pytest.fixture(scope="module")
def vae(data):
    return fit_rq_vae(data[0], levels=3, codebook_size=8, seed=2, epochs=60)


def test_the_same_seed_gives_the_same_model_and_codes(data) -> None:
    a, b, other = (
        fit_rq_vae(data[0], levels=3, codebook_size=8, seed=s, epochs=10) for s in (2, 2, 3)
    )
    assert a.losses == b.losses
    assert np.array_equal(a.codes(data[0]), b.codes(data[0]))
    assert np.array_equal(a.reconstruct(data[0]), b.reconstruct(data[0]))
    assert all(np.array_equal(p, q) for p, q in zip(a.codebooks(), b.codebooks()))
    assert other.losses != a.losses


def test_training_lowers_the_loss_and_the_codes_keep_the_clusters(data, vae) -> None:
    x, labels = data
    assert vae.losses[-1] < 0.5 * vae.losses[0]
    codes = vae.codes(x)
    assert codes.shape == (600, 3) and codes.dtype == np.int32
    # items of one true cluster mostly share their first code
    purity = np.mean(
        [np.bincount(codes[labels == g, 0]).max() / (labels == g).sum() for g in range(8)]
    )
    assert purity > 0.8
    # the codes reconstruct the vectors far better than the mean does
    err = ((vae.reconstruct(x) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert err < 0.2


def test_every_item_gets_a_unique_tuple_and_collisions_are_told_apart_in_order(data) -> None:
    x = data[0].copy()
    x[10] = x[20] = x[30] = x[5]  # identical vectors: identical codes
    s = build_semantic_ids_vae(x, levels=2, codebook_size=4, seed=0, epochs=5)
    assert s.codes.shape == (600, 3) and len({tuple(r) for r in s.codes.tolist()}) == 600
    same = s.codes[[5, 10, 20, 30]]
    assert (same[:, :2] == same[0, :2]).all()  # one cell; ranked in catalog order
    assert np.all(np.diff(same[:, 2]) > 0)
    assert s.collisions >= 3 and s.render(30).endswith(f"-C{same[3, 2]}")
    assert s.levels == 2 and s.codebook_size == 4 and s.codebooks[0].shape == (4, 32)


def test_disambiguation_is_the_one_rq_kmeans_uses(data) -> None:
    s = build_semantic_ids(data[0], levels=2, codebook_size=4, seed=0)
    codes, collisions = disambiguate(s.codes[:, :2])
    assert np.array_equal(codes, s.codes) and collisions == s.collisions


def test_new_items_move_no_existing_code(data) -> None:
    x = data[0]
    fit = np.arange(500)
    whole = build_semantic_ids_vae(x, fit_rows=fit, levels=2, codebook_size=8, seed=1, epochs=5)
    alone = build_semantic_ids_vae(x[:500], levels=2, codebook_size=8, seed=1, epochs=5)
    assert np.array_equal(whole.codes[:500, :2], alone.codes[:, :2])


def test_the_catalog_builds_rq_vae_ids_when_configured() -> None:
    world = synthetic_world(60, 120, seed=1, dim=4)
    cfg = ItemsConfig(
        semantic_ids=True, semantic_id=SemanticIdConfig(method="rq-vae", levels=2, codebook_size=4)
    )
    new = (NewItem(item_id="n", title="N", text="", tags=("drama",), creator="c"),)
    cat = build_catalog(world, dim=4, seed=0, items_cfg=cfg, new_items=new)
    again = build_catalog(world, dim=4, seed=0, items_cfg=cfg, new_items=new)
    s = cat.semantic_ids
    assert s is not None and s.codes.shape == (121, 3) and s.codebooks[0].shape[1] == 32
    assert np.array_equal(s.codes, again.semantic_ids.codes)  # type: ignore[union-attr]
    kmeans = build_catalog(
        world, dim=4, seed=0, items_cfg=ItemsConfig(semantic_ids=True), new_items=new
    )
    assert kmeans.semantic_ids is not None and kmeans.semantic_ids.codebooks[0].shape[1] == 4


def test_an_unknown_method_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"items\.semantic_id\.method"):
        decode_study('name = "x"\n[items.semantic_id]\nmethod = "rq-transformer"\n', source="s")


def test_without_torch_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(DataError, match=r"needs torch.*pip install torch==2\.13\.0") as e:
        fit_rq_vae(np.zeros((10, 4)), epochs=1)
    assert "\n" not in str(e.value)


def test_fitting_leaves_torchs_global_random_state_alone(data) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_rq_vae(data[0][:100], levels=1, codebook_size=4, seed=0, epochs=1)
    assert torch.equal(torch.rand(3), expected)

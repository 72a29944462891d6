"""Shared pytest fixtures and markers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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

"""``_listed`` (the tags a description lists) is whole-array work; it must pick exactly what the
row-by-row rule picks: masked columns by share (ties by column), at most n, forced ones kept."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld.users.persona import _listed


def _reference(share: np.ndarray, mask: np.ndarray, always: tuple[int, ...], n: int) -> list:
    out = []
    for s, m in zip(share, mask):
        cols = [j for j in sorted(range(s.size), key=lambda j: (-s[j], j)) if m[j]]
        must = [j for j in cols if j in always]
        rest = [j for j in cols if j not in always][: max(n - len(must), 0)]
        out.append([j for j in cols if j in must or j in rest])
    return out


@pytest.mark.parametrize("always", [(), (0,), (2, 5), (0, 1, 2, 3, 4, 5, 6)])
@pytest.mark.parametrize("n", [0, 1, 3, 5])
def test_listed_picks_what_the_row_rule_picks(always: tuple[int, ...], n: int) -> None:
    rng = np.random.default_rng(len(always) * 10 + n)
    share = np.round(rng.random((300, 8)), 1)  # rounded: many ties
    mask = rng.random((300, 8)) < 0.6
    assert _listed(share, mask, always, n) == _reference(share, mask, always, n)


def test_listed_of_no_rows_is_empty() -> None:
    assert _listed(np.zeros((0, 4)), np.zeros((0, 4), bool), (), 3) == []

"""What a user consumed earlier in a session, as the brain keeps it, for logs and simulations
alike: the *session profile* (each consumed item moves it to ``0.7 * profile + 0.3 *
tags[item]``, zero at a session's start) and an item's *repetition* of it (the cosine of its tags
with the profile). The brain updates both online (``recoworld.users.brain``); these functions
compute them over a log in order, for the fit (``recoworld.users.fit``: how much users linger
on a kind of item within a sitting) and the fidelity harness (``session_repetition``); and the
*boredom* the brain would have gathered along a logged session (:func:`session_boredom`).
"""

from __future__ import annotations

import numpy as np

LOOKBACK = 24
"""Earlier items of a session that enter its profile (the weights fall by 0.7 an item: the
25th back weighs under 1e-4 of the last)."""


def session_profiles(
    session: np.ndarray, items: np.ndarray, rows: np.ndarray, tags: np.ndarray
) -> np.ndarray:
    """(len(rows), n_tags) float32: for entries ``rows`` of a log in consumption order (``session``
    a label per entry, equal within a session; ``items`` the consumed item rows), the profile
    of what was consumed earlier in the same session."""
    out = np.zeros((rows.size, tags.shape[1]), np.float32)
    for lag in range(1, LOOKBACK + 1):
        back = rows - lag
        ok = back >= 0
        ok[ok] = session[back[ok]] == session[rows[ok]]
        if not ok.any():
            break
        out[ok] += np.float32(0.3 * 0.7 ** (lag - 1)) * tags[items[back[ok]]]
    return out


def repetition(profile: np.ndarray, item_tags: np.ndarray) -> np.ndarray:
    """(n,) the cosine of each row of ``item_tags`` with the same row of ``profile`` (0 where
    either is empty)."""
    norm = np.linalg.norm(profile, axis=1) * np.linalg.norm(item_tags, axis=1)
    dot = np.einsum("nt,nt->n", profile, item_tags)
    return np.where(norm > 0, dot / np.maximum(norm, 1e-12), 0.0)


CHUNK_ROWS = 200_000
"""Rows whose profiles :func:`session_boredom` builds at a time (a profile is a row of tags)."""


def session_boredom(
    session: np.ndarray, items: np.ndarray, rows: np.ndarray, tags: np.ndarray, rate: float
) -> np.ndarray:
    """(len(rows),) float64: for entries ``rows`` of a log in consumption order (as
    :func:`session_profiles`), the brain's *boredom* after the items consumed earlier in the
    same session: zero at a session's start, it moves by ``rate`` toward each consumed item's
    repetition of the profile before it (``[brain] boredom_rate``; the brain's update for a
    clicked item, ``recoworld.users.brain``). The log has no record of items shown and passed
    over, which move the brain's boredom too (at 0.3 of the rate): they are left out."""
    out = np.zeros(rows.size)
    if rows.size == 0 or tags.shape[1] == 0:
        return out
    back = rows[:, None] - np.arange(1, LOOKBACK + 1)[None, :]  # (n, LOOKBACK)
    ok = back >= 0
    ok[ok] = session[back[ok]] == np.broadcast_to(session[rows][:, None], back.shape)[ok]
    need = np.unique(back[ok])
    if need.size == 0:  # every row opens its session
        return out
    rep = np.zeros(need.size)
    for a in range(0, need.size, CHUNK_ROWS):
        part = need[a : a + CHUNK_ROWS]
        rep[a : a + CHUNK_ROWS] = repetition(
            session_profiles(session, items, part, tags), tags[items[part]]
        )
    weight = rate * (1.0 - rate) ** np.arange(LOOKBACK)  # the lag-th item back, 1-based
    earlier = np.where(ok, rep[np.searchsorted(need, np.where(ok, back, need[0]))], 0.0)
    return earlier @ weight

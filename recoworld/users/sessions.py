"""What a user consumed earlier in a session, as the brain keeps it, for logs and simulations
alike: the *session profile* (each consumed item moves it to ``0.7 * profile + 0.3 *
tags[item]``, zero at a session's start) and an item's *repetition* of it (the cosine of its tags
with the profile). The brain updates both online (``recoworld.users.brain``); these functions
compute them over a log in order, for the fit (``recoworld.users.fit``: how much users linger
on a kind of item within a sitting) and the fidelity harness (``session_repetition``).
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

"""Per-item satiation: what a user consumed before is less appealing again.

Two parts, both logit penalties on an item the user clicked before:

- **lasting**: ``log(repeat_share)``, where ``repeat_share`` is the share of consumptions in the
  world's logs that repeat an item the same user consumed before (a play count above one, or
  the same user-item pair logged again), floored at :data:`MIN_REPEAT_SHARE`. Film ratings hold
  no repeats (a film is seen once: a strong lasting penalty, about -4.6); listening logs are
  mostly repeats (close to none). The items of a persona's real history carry it too.
- **short-term**: ``satiation_weight * exp(-days since / satiation_days)`` on an item clicked
  earlier in the simulation, full within the session (``[brain]`` settings: they have no trace in
  logged data; docs/simulator.md).

What a user consumed in the simulation is kept per user in a ring of the last
:data:`CAPACITY` clicked items with the day of the click; older clicks keep the lasting part
only through the real history (they leave the ring).

Re-showing an item the user *skipped* needs no penalty here: the brain's draws for an item are
keyed by (user, session, item), so within a session the user decides about it as before (its
mindset having moved), instead of getting another independent chance to click.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recoworld.users.persona import Personas

CAPACITY = 64
"""Clicked items remembered per user in the simulation (the most recent)."""
MIN_REPEAT_SHARE = 0.01
"""Floor of the lasting factor: even in a world that logs no repeat, a user may go back to an
item about one time in a hundred as readily as to a fresh one of the same appeal."""


def repeat_share(interactions: pl.DataFrame) -> float:
    """Share of consumptions that repeat an item the same user consumed before: each user-item
    pair counts ``sum(max(weight, 1))`` consumptions (weights are play counts, or 1), of which all
    but the first are repeats."""
    if interactions.height == 0:
        return 0.0
    per_pair = interactions.group_by("user_id", "item_id").agg(
        pl.col("weight").fill_null(1.0).clip(lower_bound=1.0).sum().alias("c")
    )
    total = float(per_pair["c"].sum())
    return float((total - per_pair.height) / total) if total > 0 else 0.0


def lasting_penalty(share: float) -> float:
    """The logit penalty (<= 0) of re-consuming an item, from the world's repeat share."""
    return float(np.log(min(max(share, MIN_REPEAT_SHARE), 1.0)))


class ItemMemory:
    """What each of ``n`` users (rows of ``personas``) consumed: its real history and its clicks
    in the simulation (with their day)."""

    def __init__(self, personas: Personas, n_items: int, lasting: float) -> None:
        n = len(personas)
        self.n_items, self.lasting = n_items, np.float32(lasting)
        self.item = np.full((n, CAPACITY), -1, np.int32)
        self.day = np.zeros((n, CAPACITY), np.float32)
        self.next = np.zeros(n, np.int64)
        self.template = personas.template
        h = personas.history
        if h is None or h.nnz == 0 or lasting == 0.0:
            self.hist_keys = np.zeros(0, np.int64)
        else:
            h = h.tocsr()
            rows = np.repeat(np.arange(h.shape[0], dtype=np.int64), np.diff(h.indptr))
            self.hist_keys = np.sort(rows * n_items + h.indices.astype(np.int64))

    def in_history(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n, k) bool: ``items`` (n, k) in the real history of users ``rows``."""
        if self.hist_keys.size == 0:
            return np.zeros(items.shape, bool)
        t = self.template[rows].astype(np.int64)[:, None]
        keys = t * self.n_items + items
        at = np.searchsorted(self.hist_keys, keys)
        at = np.minimum(at, self.hist_keys.size - 1)
        return (self.hist_keys[at] == keys) & (t >= 0)

    def clicked_since(self, rows: np.ndarray, items: np.ndarray, day: np.ndarray) -> np.ndarray:
        """(n,) days since users ``rows`` last clicked ``items`` (n,) in the simulation; inf
        where they have not (or it left the ring)."""
        hit = self.item[rows] == items[:, None]
        last = np.where(hit, self.day[rows], -np.inf).max(1)
        return (day - last).astype(np.float32)

    def remember(self, rows: np.ndarray, items: np.ndarray, day: np.ndarray) -> None:
        """Users ``rows`` clicked ``items`` on ``day``."""
        slot = self.next[rows] % CAPACITY
        self.item[rows, slot] = items
        self.day[rows, slot] = day
        self.next[rows] += 1

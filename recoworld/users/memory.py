"""A user's memory, as typed records: what it saw and did, and its session summaries.

In a vectorised run memory is columnar — the `events` and `sessions` tables are the records —
and the brain carries only what it needs forward (the session profile, last satisfaction). This
module reads one user's memory back as structs: for inspection, for prompts (the LLM brain
shows the summaries of earlier sessions), and for replay viewers.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import polars as pl

from recoworld.errors import RunError
from recoworld.io.runs import check_run_dir, scan_table


class InteractionRecord(msgspec.Struct, frozen=True, kw_only=True):
    session: int
    turn: int
    position: int
    item_id: str
    action: str
    watch_fraction: float
    rating: float | None
    satisfaction: float
    """Satisfaction right after the item: how the user felt."""
    instruction: str | None


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    session: int
    day: float
    turns: int
    left_early: bool
    satisfaction_end: float
    returned: bool
    summary: str


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    arm: str
    user: int
    records: list[InteractionRecord]
    sessions: list[SessionSummary]

    def recall(self, max_sessions: int = 3) -> str:
        """The last session summaries as text, oldest first (what a prompt would show)."""
        return "\n".join(s.summary for s in self.sessions[-max_sessions:])


def memory_of(run_dir: str | Path, arm: str, user: int) -> Memory:
    """The memory of ``user`` in ``arm`` of a complete run."""
    run_dir = Path(run_dir)
    manifest = check_run_dir(run_dir)
    if arm not in manifest.get("arms", []):
        raise RunError(f"{run_dir}: no arm {arm!r}; the run has arms {manifest.get('arms')}")
    key = (pl.col("arm") == arm) & (pl.col("user") == user)
    ev = (
        scan_table(run_dir, "events")
        .filter(key)
        .select(
            "session",
            "turn",
            "position",
            pl.col("item_id").cast(pl.String),
            pl.col("action").cast(pl.String),
            "watch_fraction",
            "rating",
            "satisfaction",
            pl.col("instruction").cast(pl.String),
        )
        .sort("session", "turn", "position")
        .collect()
    )
    if ev.height == 0:
        raise RunError(
            f"{run_dir}: user {user} has no events in arm {arm!r} (users are 0..{manifest.get('users_per_arm', 0) - 1})"
        )
    ss = (
        scan_table(run_dir, "sessions")
        .filter(key)
        .select("session", "day", "turns", "left_early", "satisfaction_end", "returned", "summary")
        .sort("session")
        .collect()
    )
    return Memory(
        arm=arm,
        user=user,
        records=msgspec.convert(ev.to_dicts(), list[InteractionRecord]),
        sessions=msgspec.convert(ss.to_dicts(), list[SessionSummary]),
    )

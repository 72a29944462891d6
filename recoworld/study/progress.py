"""Progress of shards that run elsewhere (forked workers, Ray actors), read by the process that
shows it, through the run folder: no channel, no extra Ray call.

- a running shard attempt keeps a :class:`ProgressFile`, a few bytes in the run's scratch folder
  (``_tmp/progress/``) rewritten atomically as its users finish (at most every ``every_s``);
- the watching process polls a :class:`ProgressBoard`: per shard and arm, the most any attempt of
  the shard has reported, and every user of a shard whose marker exists; it hands the increase
  to a ``progress(arm, users)`` callback, so the calls add up to exactly users x arms.

A retried attempt starts again from zero in a file of its own: the board never counts a user
twice, nor goes back. The scratch folder goes when the run finishes or aborts.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from recoworld.study.shard import SCRATCH, ShardSpec, marker_path

PROGRESS = "progress"


class ShardProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Users of one shard attempt finished so far, per arm."""

    shard: int
    users: dict[str, int]


class ProgressFile:
    """``progress(arm, users)`` for one attempt of shard ``index``: counts, and rewrites its file
    when ``every_s`` seconds have passed since the last write (the shard's marker says the rest)."""

    def __init__(self, folder: str | Path, index: int, every_s: float = 0.2) -> None:
        self.index, self.every_s = index, every_s
        self.path = Path(folder) / SCRATCH / PROGRESS / f"{index:05d}-{uuid.uuid4().hex[:8]}"
        self.users: dict[str, int] = {}
        self._last = -float("inf")

    def __call__(self, arm: str, users: int) -> None:
        self.users[arm] = self.users.get(arm, 0) + users
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(
                msgspec.msgpack.encode(ShardProgress(shard=self.index, users=self.users))
            )
            os.replace(tmp, self.path)


_decode = msgspec.msgpack.Decoder(ShardProgress).decode


class ProgressBoard:
    """Watches the shards ``specs`` of the run in ``folder`` (see the module docstring);
    progress files there before it started (an interrupted run's) are ignored."""

    def __init__(
        self,
        folder: str | Path,
        specs: Sequence[ShardSpec],
        arms: Sequence[str],
        progress: Callable[[str, int], None],
    ) -> None:
        self.folder, self.arms, self.progress = Path(folder), list(arms), progress
        self.specs = {s.index: s for s in specs}
        self.told: dict[int, dict[str, int]] = {i: dict.fromkeys(self.arms, 0) for i in self.specs}
        self.finished: set[int] = set()
        self.stale = set(self._files())

    def _files(self) -> list[Path]:
        where = self.folder / SCRATCH / PROGRESS
        try:
            return [p for p in where.iterdir() if not p.name.endswith(".tmp")]
        except FileNotFoundError:
            return []

    def poll(self) -> None:
        """Tell ``progress`` what is new since the last poll."""
        for path in self._files():
            if path in self.stale:
                continue
            try:
                seen = _decode(path.read_bytes())
            except (FileNotFoundError, msgspec.DecodeError):  # gone with its finished shard
                continue
            if seen.shard in self.specs and seen.shard not in self.finished:
                self._tell(seen.shard, seen.users)
        for i, spec in self.specs.items():
            if i not in self.finished and marker_path(self.folder, i).is_file():
                self.finished.add(i)
                self._tell(i, dict.fromkeys(self.arms, spec.stop - spec.start))

    def _tell(self, shard: int, users: dict[str, int]) -> None:
        told = self.told[shard]
        for arm, n in users.items():
            if arm in told and n > told[arm]:
                self.progress(arm, n - told[arm])
                told[arm] = n

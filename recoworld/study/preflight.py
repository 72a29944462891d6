"""Memory pre-flight: refuse a study that cannot fit before any work starts.

:func:`estimate_peak_memory` is arithmetic on the config (and, once loaded, the world's sizes):
it allocates nothing, so ``population.size = 1e9`` is refused in microseconds instead of after
minutes of swapping. It counts the arrays that grow with the study, each term named below; the
byte costs per element were measured on ml-100k and synthetic worlds (peak RSS of ``recoworld
run``) and rounded up. It is an estimate of the dominant terms, not a bound: small tables,
Python objects and allocator slack are covered by :data:`BASELINE` only. Calibration (ml-100k,
``studies/creator_scifi.toml``, one worker): 10,000 users peaked at 612 MiB RSS (estimate 578),
100,000 users at 708 MiB (estimate 829).

Terms (U = population size, I = items incl. the creator's, N = world interactions,
T = tags (at most 64), D = embedding_dim, W = world users):

1. ``world``: the loaded frames, the catalog (item embeddings I x D, tag matrix I x T), the SVD
   factors and the real users' histories: ``N * PER_INTERACTION + I * (PER_ITEM + 12 D + 4 T)
   + W * (PER_WORLD_USER + 16 D)``.
2. ``fit``: the choice model's training sample, (1 + negatives_per_positive) rows per
   interaction: ``(1 + npp) * N * PER_FIT_ROW``.
3. ``population``: persona taste and dislike (U x T) and preference (U x D) float32, scalar
   traits, and the jitter's float64 noise over (U x T): ``H * (PER_PERSONA + 8 T + 4 D + 24 T)``
   for the H users held at once: U, or where a replicate has more than ``STREAM_USERS`` users
   (the run streams its population) a block of ``STREAM_BLOCK``, plus each user's segment code
   and treatment flags, ``U * (2 + arms)``.
4. ``batches``: users simulated at once, ``min(U, workers * batch_size_for(I))`` (every user
   at once for language-model studies, which run as one shard), each with the recommender's
   ``shown`` matrix (bool) and full-catalog scores, their masked copy and the partition indices
   over I items: ``users * I * PER_CELL``. Above ``DENSE_SHOWN_ITEMS`` items with built-in
   recommenders a batch holds no (users x items) array (``shard.catalogue_free``): batches of
   ``FULL_BATCH`` users, ``PER_FREE_USER`` each (shortlists, what each user was shown).
5. ``results``: per user and arm, the metric totals kept for the summary: ``U * arms *
   PER_USER_RESULT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from recoworld.config import StudyConfig, brings_own_recommender, replicate_count, uses_llm
from recoworld.errors import ConfigError

BASELINE = 300 * 2**20
"""The interpreter, numpy/polars/pyarrow and their pools."""
PER_INTERACTION = 96
PER_ITEM = 600
"""Frames (ids, titles, tags as strings) and, for synthetic worlds, the generator's float64
vectors and Python id lists."""
PER_WORLD_USER = 300
PER_FIT_ROW = 64
PER_PERSONA = 160
PER_CELL = 12
"""Bytes per (user in a batch) x (item) at the batch's peak: ``shown`` (bool) 1, float32 scores
and their masked copy 8, and slack (the int64 partition indices are short-lived)."""
PER_USER_RESULT = 200
MAX_TAGS = 64
"""The catalog keeps at most this many tags (``build_catalog(max_tags=64)``)."""
SYNTHETIC_TAGS, SYNTHETIC_INTERACTIONS_PER_USER = 12, 80
"""``synthetic_world``'s tag count and the upper end of its interactions per user."""
BATCH_CELLS, BATCH_MIN, BATCH_MAX = 30_000_000, 512, 16384
"""``recoworld.study.shard.batch_size_for``'s bounds, kept here so that the pre-flight imports
nothing heavy (a test keeps both in step)."""

FULL_BATCH, DENSE_SHOWN_ITEMS = 16384, 4096
"""``recoworld.study.shard.FULL_BATCH`` and ``recoworld.recommenders.base.DENSE_SHOWN_ITEMS``
(a test keeps them in step)."""
PER_FREE_USER = 32 * 1024
"""Bytes per user of a catalogue-free batch: its session-start candidates (2 x shortlist + its
history, float32 scores and int64 ids, with their sort), its shortlist and its shown list."""
STREAM_USERS, STREAM_BLOCK = 100_000, 65_536
"""``recoworld.study.prepare.STREAM_USERS`` and ``STREAM_BLOCK`` (a test keeps them in step)."""

NOMINAL_WORLDS: dict[str, tuple[int, int, int, int]] = {
    "ml-100k": (943, 1682, 100_000, 19),
    "ml-1m": (6040, 3706, 1_000_209, 18),
    "ml-latest-small": (610, 9742, 100_836, 20),
    "ml-latest": (330_975, 86_537, 33_832_162, 20),
    "lastfm": (1892, 17632, 92_834, MAX_TAGS),
}
"""(users, items, interactions, tags) of the published datasets, used before the world is
loaded; recbole and generic worlds are sized once loaded (see ``world=`` below)."""
UNKNOWN_WORLD = (10_000, 10_000, 1_000_000, MAX_TAGS)


def batch_users(n_items: int) -> int:
    """The same bound as ``recoworld.study.shard.batch_size_for``."""
    return int(max(BATCH_MIN, min(BATCH_MAX, BATCH_CELLS // max(n_items, 1))))


def world_dims(cfg: StudyConfig) -> tuple[int, int, int, int]:
    """(users, items, interactions, tags) the study's world will have, before loading it."""
    w = cfg.world
    if w.dataset == "synthetic":
        u = w.synthetic_users
        return (u, w.synthetic_items, u * SYNTHETIC_INTERACTIONS_PER_USER, SYNTHETIC_TAGS)
    return NOMINAL_WORLDS.get(w.dataset, UNKNOWN_WORLD)


def estimate_peak_memory(
    cfg: StudyConfig,
    *,
    workers: int = 1,
    world: tuple[int, int, int, int] | None = None,
) -> int:
    """Bytes a run of ``cfg`` needs at its peak (see the module docstring for the terms).
    ``workers``: local processes simulating at once; ``world``: the loaded world's (users,
    items, interactions, tags), when known (else :func:`world_dims`)."""
    return sum(memory_terms(cfg, workers=workers, world=world).values())


def memory_terms(
    cfg: StudyConfig,
    *,
    workers: int = 1,
    world: tuple[int, int, int, int] | None = None,
) -> dict[str, int]:
    """:func:`estimate_peak_memory`, term by term."""
    w_users, w_items, n_inter, tags = world or world_dims(cfg)
    tags = min(max(tags, 1), MAX_TAGS)
    d = cfg.world.embedding_dim
    items = w_items + (len(cfg.creator.items) if cfg.creator else 0)
    users = cfg.population.size or w_users
    llm = uses_llm(cfg)
    free = not llm and items > DENSE_SHOWN_ITEMS and not brings_own_recommender(cfg)
    batch, per_user = (
        (FULL_BATCH, PER_FREE_USER) if free else (batch_users(items), items * PER_CELL)
    )
    at_once = users if llm else min(users, max(workers, 1) * batch)
    streamed = not llm and -(-users // replicate_count(cfg)) > STREAM_USERS
    held = STREAM_BLOCK if streamed else users
    flags = users * (2 + len(cfg.arms)) if streamed else 0
    return {
        "baseline": BASELINE,
        "world": n_inter * PER_INTERACTION
        + items * (PER_ITEM + 12 * d + 4 * tags)
        + w_users * (PER_WORLD_USER + 16 * d),
        "fit": (1 + cfg.brain.negatives_per_positive) * n_inter * PER_FIT_ROW,
        "population": held * (PER_PERSONA + 8 * tags + 4 * d + 24 * tags) + flags,
        "batches": at_once * per_user,
        "results": users * len(cfg.arms) * PER_USER_RESULT,
    }


def available_memory() -> int | None:
    """Bytes this process may still allocate: /proc/meminfo's MemAvailable, lowered to the
    cgroup's remaining limit where one is set; else free physical pages; None when unknown."""
    found: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found = min(found, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return found


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_memory(
    cfg: StudyConfig,
    *,
    source: str,
    workers: int = 1,
    world: tuple[int, int, int, int] | None = None,
    available: int | None = None,
) -> int:
    """The estimate, or a one-line ConfigError when it exceeds the memory available (naming
    the estimate, its largest term, and what is available)."""
    terms = memory_terms(cfg, workers=workers, world=world)
    need = sum(terms.values())
    have = available if available is not None else available_memory()
    if have is not None and need > have:
        big = max(terms, key=terms.__getitem__)
        raise ConfigError(
            f"{source}: Expected a study that fits in the {_gib(have)} of memory available, got "
            f"one estimated to need {_gib(need)} (largest term: {big} {_gib(terms[big])}; "
            f"population.size = {cfg.population.size:,}, world.dataset = "
            f"{cfg.world.dataset!r}); lower population.size or the world's size"
        )
    return need

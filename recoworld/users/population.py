"""Targeting and population building: who is simulated, and in which segment each user counts."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from recoworld.config import PopulationConfig, Targeting
from recoworld.errors import TargetingError
from recoworld.items.catalog import Catalog
from recoworld.rng import Stream, normals, uniforms
from recoworld.users.persona import Personas, age_band, tier_of

TIER_RANGE = {"low": (0.0, 1 / 3), "mid": (1 / 3, 2 / 3), "high": (2 / 3, 1.0), None: (0.0, 1.0)}


def _norm(tag: str) -> str:
    return re.sub(r"[^a-z0-9]", "", tag.lower())


def resolve_tags(catalog: Catalog, names: list[str], field: str) -> list[int]:
    """Catalog tag indices for ``names`` (case, spaces and punctuation ignored)."""
    index = {_norm(t): j for j, t in enumerate(catalog.tags)}
    out = []
    for name in names:
        j = index.get(_norm(name))
        if j is None:
            close = difflib.get_close_matches(name, catalog.tags, n=3, cutoff=0.5)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else f"; known tags: {', '.join(catalog.tags[:20])}"
            )
            raise TargetingError(f"$.{field}: unknown tag {name!r}{hint}")
        out.append(j)
    return out


def criteria(
    p: Personas, catalog: Catalog, t: Targeting, field: str = "population.target"
) -> dict[str, np.ndarray]:
    """One boolean mask per given criterion of ``t`` (named as a person would say it).

    ``likes``/``dislikes`` hold for a user who likes (dislikes) any of the tags, by the one
    definition of liking, ``Personas.liked_mask`` (``disliked_mask``), the same that describes
    the user.
    """
    out: dict[str, np.ndarray] = {}
    if t.age is not None:
        out[f"age {t.age[0]}-{t.age[1]}"] = (p.age >= t.age[0]) & (p.age <= t.age[1])
    if t.gender is not None:
        out[f"gender {t.gender}"] = p.gender == t.gender
    if t.occupation:
        out[f"occupation in {t.occupation}"] = np.isin(p.occupation, t.occupation)
    if t.likes:
        tags = resolve_tags(catalog, t.likes, f"{field}.likes")
        out[f"likes {', '.join(t.likes)}"] = p.liked_mask()[:, tags].any(1)
    if t.dislikes:
        tags = resolve_tags(catalog, t.dislikes, f"{field}.dislikes")
        out[f"dislikes {', '.join(t.dislikes)}"] = p.disliked_mask()[:, tags].any(1)
    for trait in ("activity", "conformity", "diversity"):
        tier = getattr(t, trait)
        if tier is not None:
            out[f"{trait} {tier}"] = tier_of(getattr(p, trait)) == tier
    return out


def select(
    p: Personas, catalog: Catalog, t: Targeting, field: str = "population.target"
) -> np.ndarray:
    """Rows of ``p`` matching every criterion; selecting nobody is a TargetingError."""
    return np.flatnonzero(select_blocks([p], catalog, t, field))


def select_blocks(
    blocks: Iterable[Personas],
    catalog: Catalog,
    t: Targeting,
    field: str = "population.target",
) -> np.ndarray:
    """(n,) bool over the users of ``blocks`` (a population drawn block by block): who matches
    every criterion; selecting nobody is a TargetingError."""
    masks: list[np.ndarray] = []
    counts: dict[str, int] = {}
    for p in blocks:
        crit = criteria(p, catalog, t, field)
        mask = np.ones(len(p), dtype=bool)
        for name, m in crit.items():
            mask &= m
            counts[name] = counts.get(name, 0) + int(m.sum())
        masks.append(mask)
    out = np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
    if not out.any():
        each = "; ".join(f"{name}: {c}" for name, c in counts.items())
        raise TargetingError(
            f"$.{field} selects nobody: 0 of {out.size} users match all of "
            f"[{', '.join(counts)}] (alone, each matches: {each})"
        )
    return out


def _jitter(p: Personas, scale: float, seed: int, rows: np.ndarray) -> Personas:
    """Perturb preference, taste and traits of ``rows`` (keyed by uid: reproducible)."""
    if scale <= 0 or rows.size == 0:
        return p
    uid = p.uid[rows]
    d = p.pref.shape[1]
    pref = p.pref.copy()
    noise = normals(seed, Stream.PERSONA, uid[:, None], 1, np.arange(d)[None, :])
    pr = pref[rows] + scale * noise / np.sqrt(d)
    pref[rows] = pr / np.maximum(np.linalg.norm(pr, axis=1, keepdims=True), 1e-9)
    taste = p.taste.copy()
    t = taste[rows] * np.exp(
        scale * normals(seed, Stream.PERSONA, uid[:, None], 2, np.arange(taste.shape[1])[None, :])
    )
    taste[rows] = t / np.maximum(t.sum(1, keepdims=True), 1e-12)
    fields = {"pref": pref.astype(np.float32), "taste": taste.astype(np.float32)}
    for k, trait in enumerate(("activity", "conformity", "diversity", "patience")):
        v = getattr(p, trait).copy()
        v[rows] = np.clip(
            v[rows] + 0.3 * scale * normals(seed, Stream.PERSONA, uid, 3 + k), 0.0, 1.0
        )
        fields[trait] = v
    return replace(p, **fields)


def _from_description(
    base: Personas, catalog: Catalog, t: Targeting, uid: np.ndarray, seed: int
) -> Personas:
    """Personas ``uid`` (population rows) for a segment no real user matches, built from the
    description alone (every draw keyed by the row)."""
    uid = uid.astype(np.int64)
    n = uid.size
    u = lambda k: uniforms(seed, Stream.PERSONA, uid, 100 + k)  # noqa: E731
    n_tags = catalog.tag_matrix.shape[1]
    if t.likes:
        liked = resolve_tags(catalog, t.likes, "population.target.likes")
        taste = np.zeros((n, n_tags), np.float32)
        taste[:, liked] = 1.0 / len(liked)
        has = (catalog.tag_matrix[:, liked] > 0).any(1)
        centre = catalog.emb[has].mean(0) if has.any() else catalog.emb.mean(0)
    else:
        taste = np.broadcast_to(base.taste.mean(0), (n, n_tags)).astype(np.float32).copy()
        centre = base.pref.mean(0)
    pref = (
        np.broadcast_to(centre / max(np.linalg.norm(centre), 1e-9), (n, catalog.emb.shape[1]))
        .astype(np.float32)
        .copy()
    )
    dislike = np.zeros((n, n_tags), np.float32)
    # liking is judged against the world's average user, as for real personas
    if t.dislikes:
        dislike[:, resolve_tags(catalog, t.dislikes, "population.target.dislikes")] = 1.0 / len(
            t.dislikes
        )

    def trait(k: int, tier: str | None) -> np.ndarray:
        lo, hi = TIER_RANGE[tier]
        return (lo + (hi - lo) * u(k)).astype(np.float32)

    age = (
        (t.age[0] + np.floor(u(10) * (t.age[1] - t.age[0] + 1))).astype(np.int64)
        if t.age is not None
        else np.full(n, -1, np.int64)
    )
    empty = np.full(n, "", dtype=object)
    return Personas(
        uid=uid,
        template=np.full(n, -1, np.int64),
        source_user=empty.copy(),
        age=age,
        gender=np.full(n, t.gender or "", dtype=object),
        occupation=np.array([t.occupation[j % len(t.occupation)] for j in uid], dtype=object)
        if t.occupation
        else empty.copy(),
        activity=trait(1, t.activity),
        conformity=trait(2, t.conformity),
        diversity=trait(3, t.diversity),
        patience=trait(4, None),
        taste=taste,
        dislike=dislike,
        pref=pref,
        mean_rating=np.full(n, np.nan, np.float32),
        n_history=np.zeros(n, np.int64),
        history=None,
        avg_taste=base.average_share("taste"),
        avg_dislike=base.average_share("dislike"),
    )


def _keep_in_segment(p: Personas, before: Personas, catalog: Catalog, t: Targeting) -> Personas:
    """``p`` where every user whom the jitter moved out of the segment ``t`` takes back
    ``before``'s taste (it no longer likes or dislikes a targeted tag) or trait (it left the
    targeted tier): the noise spreads users within the segment, never out of it. Draws nothing."""
    fields: dict[str, np.ndarray] = {}
    in_tags = np.ones(len(p), dtype=bool)
    if t.likes:
        tags = resolve_tags(catalog, t.likes, "population.target.likes")
        in_tags &= p.liked_mask()[:, tags].any(1)
    if t.dislikes:
        tags = resolve_tags(catalog, t.dislikes, "population.target.dislikes")
        in_tags &= p.disliked_mask()[:, tags].any(1)
    if not in_tags.all():
        fields["taste"] = np.where(in_tags[:, None], p.taste, before.taste)
    for trait in ("activity", "conformity", "diversity"):
        tier = getattr(t, trait)
        if tier is not None:
            v = getattr(p, trait)
            fields[trait] = np.where(tier_of(v) == tier, v, getattr(before, trait))
    return replace(p, **fields) if fields else p


def _targeted(p: Personas, catalog: Catalog, t: Targeting) -> Personas:
    """``p`` knowing the tags it was targeted on, which its descriptions always list."""
    return replace(
        p,
        targeted_likes=tuple(resolve_tags(catalog, t.likes, "population.target.likes")),
        targeted_dislikes=tuple(resolve_tags(catalog, t.dislikes, "population.target.dislikes")),
    )


@dataclass(frozen=True, eq=False)
class PopulationDraw:
    """How every user of a population is drawn, so that any rows can be drawn alone: each
    user's draws are keyed by its row (counter-based streams), so the users of a block are the
    same whether the population is drawn whole or block by block (``population.size`` users
    need not be held at once: :meth:`blocks`)."""

    base: Personas
    catalog: Catalog
    cfg: PopulationConfig
    seed: int
    size: int
    """Users in the population (rows ``0 .. size-1``)."""
    matched: np.ndarray | None
    """Rows of ``base`` matching the target; None: no real user does, built from the
    description (synthetic source)."""
    offset: int = 0
    """Added to a row to give its uid (the users of earlier replicates come first)."""

    def rows(self, j: np.ndarray) -> Personas:
        """The users at population rows ``j`` (uids ``j + offset``), as :func:`build_population`
        draws them."""
        j = np.asarray(j, dtype=np.int64)
        cfg, t = self.cfg, self.cfg.target
        if self.matched is None:
            p = _from_description(self.base, self.catalog, t, j, self.seed)
            # Jitter spreads preference and taste; the traits are already uniform in the
            # targeted tiers, and noise on them would push users out of the tiers they were
            # built for.
            jit = _jitter(p, cfg.jitter, self.seed, np.arange(j.size))
            jit = replace(
                jit,
                **{f: getattr(p, f) for f in ("activity", "conformity", "diversity", "patience")},
            )
        else:
            matched = self.matched
            pick = uniforms(self.seed, Stream.SAMPLE, j)
            resampled = matched[
                np.minimum((pick * matched.size).astype(np.int64), matched.size - 1)
            ]
            if cfg.source == "dataset":
                real = matched[np.minimum(j, matched.size - 1)]
                rows, jittered = np.where(j < matched.size, real, resampled), j >= matched.size
            else:
                rows, jittered = resampled, np.ones(j.size, dtype=bool)
            p = replace(self.base.take(rows), uid=j)
            jit = _jitter(p, cfg.jitter, self.seed, np.flatnonzero(jittered))
        out = _targeted(_keep_in_segment(jit, p, self.catalog, t), self.catalog, t)
        return replace(out, uid=out.uid + self.offset) if self.offset else out

    def blocks(self, block: int) -> Iterator[tuple[np.ndarray, Personas]]:
        """The population ``block`` rows at a time, in row order: (rows, their users)."""
        for start in range(0, self.size, block):
            j = np.arange(start, min(self.size, start + block))
            yield j, self.rows(j)


def population_draw(
    base: Personas, catalog: Catalog, cfg: PopulationConfig, seed: int
) -> PopulationDraw:
    """How :func:`build_population` draws the population of ``cfg`` (nobody is drawn yet)."""
    try:
        matched: np.ndarray | None = select(base, catalog, cfg.target)
    except TargetingError:
        if cfg.source != "synthetic":
            raise
        matched = None
    size = cfg.size or (1000 if matched is None else matched.size)
    return PopulationDraw(
        base=base, catalog=catalog, cfg=cfg, seed=seed, size=size, matched=matched
    )


def build_population(
    base: Personas, catalog: Catalog, cfg: PopulationConfig, seed: int
) -> Personas:
    """The simulated population: ``cfg.size`` users (uids 0..n-1) drawn from the targeted segment.

    dataset: the first min(size, matches) users are the matching real personas as they are; the
    rest are resampled from them (seeded) with jitter. synthetic: every user is a jittered
    resample, or, when no real user matches, built from the description. Every user matches
    the target (a jittered one that would not keeps its source's taste or trait), and its
    description lists the targeted tags. Every draw is keyed by the user's row
    (:class:`PopulationDraw`), so any block of it can be drawn alone.
    """
    draw = population_draw(base, catalog, cfg, seed)
    return draw.rows(np.arange(draw.size))


def segment_labels(p: Personas, by: str) -> np.ndarray:
    """The segment each user is summarised in."""
    match by:
        case "age_band":
            return age_band(p.age)
        case "gender" | "occupation":
            v = getattr(p, by)
            return np.where(v == "", "unknown", v).astype(object)
        case "activity" | "conformity" | "diversity":
            return tier_of(getattr(p, by))
        case "none":
            return np.full(len(p), "all", dtype=object)
    raise ValueError(f"unknown segment_by {by!r}")

"""How a catalog item is written into a prompt: one line, every third-party text a data field.

Both speakers show items the same way — the user its slate (:mod:`recoworld.users.prompts`),
the agentic recommender its candidates (:mod:`recoworld.recommenders.agentic_prompts`) — so the
line lives with the catalog, below both, and neither speaker's prompt module imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.datafield import data
from recoworld.items.catalog import Catalog
from recoworld.items.semantic_ids import legend


def level(x: float) -> str:
    """A value in [0, 1] in words: very low, low, medium, high, very high."""
    return (
        "very low"
        if x < 0.2
        else "low"
        if x < 0.4
        else "medium"
        if x < 0.6
        else "high"
        if x < 0.8
        else "very high"
    )


def _shows(cat: Catalog) -> tuple[bool, bool]:
    """(text, semantic ID): what the catalog's ``representation`` shows of an item."""
    rep = cat.representation
    if rep == "text":
        return True, False
    if cat.semantic_ids is None:
        raise ValueError(
            f"item_representation {rep!r} needs the catalog's semantic IDs (build_catalog with "
            "that representation builds them)"
        )
    return rep == "both", True


def item_name(cat: Catalog, item: int, limit: int = 80) -> str:
    """How an item is named in lines of memory and feedback: its title (a data field), its
    semantic ID, or the semantic ID then the title, as the catalog's ``representation`` says."""
    text, sid = _shows(cat)
    parts = [cat.semantic_ids.render(item)] if sid and cat.semantic_ids is not None else []
    if text:
        parts.append(data(cat.titles[item], limit))
    return " ".join(parts)


def item_line(cat: Catalog, item: int, n: int) -> str:
    """Item ``item`` as line ``n`` of a list: id, then (as the catalog's ``representation``
    says) its semantic ID and/or title, tags, description (third-party text in data fields),
    popularity in words."""
    text, sid = _shows(cat)
    parts = [f"{n}. id {data(cat.item_ids[item], 40)}"]
    if sid and cat.semantic_ids is not None:
        parts.append(f"semantic id {cat.semantic_ids.render(item)}")
    if text:
        parts.append(f"title {data(cat.titles[item], 120)}")
        tags = ", ".join(cat.item_tags[item][:6])
        if tags:
            parts.append(f"tags {data(tags, 120)}")
        about = cat.texts[item]
        if about and about != cat.titles[item]:
            parts.append(f"about {data(about, 240)}")
    parts.append(f"popularity {level(float(cat.pop_percentile[item]))}")
    return " | ".join(parts)


def legend_block(cat: Catalog, items: Sequence[int]) -> str:
    """The short codebook legend for a list of items: each first-level code among them with
    the most common tags of the world's items that have it (data fields), as a paragraph that
    ends with a blank line; "" when the representation shows no semantic IDs."""
    _, sid = _shows(cat)
    if not sid or cat.semantic_ids is None:
        return ""
    s = cat.semantic_ids
    wanted = {int(s.codes[int(i), 0]) for i in items}
    world = np.flatnonzero(~cat.is_creator_item)
    rows = [
        f"- {code}: {data(', '.join(tags) or 'untagged', 120)} ({n} items)"
        for code, n, tags in legend(s, cat.item_tags, world)
        if int(code[1:]) in wanted
    ]
    return (
        "Semantic ids name items by codes, coarse to fine (A, then B, ...): items that share "
        "a prefix are alike. What the first codes here stand for:\n" + "\n".join(rows) + "\n\n"
    )

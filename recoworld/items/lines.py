"""How a catalog item is written into a prompt: one line, every third-party text a data field.

Both speakers show items the same way — the user its slate (:mod:`recoworld.users.prompts`),
the agentic recommender its candidates (:mod:`recoworld.recommenders.agentic_prompts`) — so the
line lives with the catalog, below both, and neither speaker's prompt module imports the other.
"""

from __future__ import annotations

from recoworld.datafield import data
from recoworld.items.catalog import Catalog


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


def item_line(cat: Catalog, item: int, n: int) -> str:
    """Item ``item`` as line ``n`` of a list: id, title, tags, description (all data fields),
    popularity in words."""
    tags = ", ".join(cat.item_tags[item][:6])
    parts = [f"{n}. id {data(cat.item_ids[item], 40)}", f"title {data(cat.titles[item], 120)}"]
    if tags:
        parts.append(f"tags {data(tags, 120)}")
    text = cat.texts[item]
    if text and text != cat.titles[item]:
        parts.append(f"about {data(text, 240)}")
    parts.append(f"popularity {level(float(cat.pop_percentile[item]))}")
    return " | ".join(parts)

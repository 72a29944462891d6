"""What a simulated user answers a language model's questions with: the output shapes of its
slate decisions, its words (hybrid brain) and its session summary, as msgspec structs with
``Literal`` enums and length/range constraints (the JSON Schema each call is constrained to is
derived from them by :func:`recoworld.llm.schemas.json_schema`). There is no field for anything
but the decision asked for: no free "action", no tool call, no URL.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

MAX_ENUM_TAGS = 64
"""Tag vocabularies up to this size are enums in the schema; larger ones are free strings
matched to the vocabulary case-insensitively (unknown -> none)."""


@functools.lru_cache(maxsize=256)
def slate_type(
    k: int, tags: tuple[str, ...], rated: bool, feeling_chars: int, instruction_chars: int
) -> type:
    """The answer to a slate: per item (in slate order) a decision, a watch percentage, a rating
    (datasets with ratings) and a short feeling; then continue or leave; then an optional
    reflective instruction to the recommender. (Decode with the same call on
    the :func:`~recoworld.llm.schemas.slack` lengths.)"""
    fields: list[tuple[str, Any]] = [
        ("decision", Literal["skip", "click", "watch"]),
        ("watch_percent", Annotated[int, Meta(ge=0, le=100)]),
    ]
    if rated:
        fields.append(("rating", Literal[1, 2, 3, 4, 5] | None))
    fields.append(("feeling", Annotated[str, Meta(max_length=feeling_chars)]))
    item = msgspec.defstruct("ItemDecision", fields, forbid_unknown_fields=True, frozen=True)
    tag = _tag_type(tags)
    instruction = msgspec.defstruct(
        "Instruction",
        [
            ("text", Annotated[str, Meta(min_length=1, max_length=instruction_chars)]),
            ("more_of", tag | None),
            ("less_of", tag | None),
        ],
        forbid_unknown_fields=True,
        frozen=True,
    )
    return msgspec.defstruct(
        "SlateAnswer",
        [
            ("items", Annotated[list[item], Meta(min_length=k, max_length=k)]),  # type: ignore
            ("next", Literal["continue", "leave"]),
            ("instruction", instruction | None),
        ],
        forbid_unknown_fields=True,
        frozen=True,
    )


@functools.lru_cache(maxsize=256)
def language_type(
    n_feelings: int, feeling_chars: int, instruction_chars: int, instruct: bool
) -> type:
    """The hybrid brain's words: a feeling per clicked item (in slate order) and, when the user
    disengages, the instruction text (its tags are the parametric brain's)."""
    fields: list[tuple[str, Any]] = [
        (
            "feelings",
            Annotated[
                list[Annotated[str, Meta(max_length=feeling_chars)]],
                Meta(min_length=n_feelings, max_length=n_feelings),
            ],
        ),
    ]
    if instruct:
        fields.append(
            ("instruction", Annotated[str, Meta(min_length=1, max_length=instruction_chars)])
        )
    return msgspec.defstruct("LanguageAnswer", fields, forbid_unknown_fields=True, frozen=True)


@functools.lru_cache(maxsize=64)
def summary_type(summary_chars: int) -> type:
    """The session summary the user keeps in memory."""
    return msgspec.defstruct(
        "SessionSummaryAnswer",
        [("summary", Annotated[str, Meta(min_length=1, max_length=summary_chars)])],
        forbid_unknown_fields=True,
        frozen=True,
    )


def _tag_type(tags: tuple[str, ...]) -> Any:
    if 0 < len(tags) <= MAX_ENUM_TAGS:
        return Literal[tags]  # type: ignore[valid-type]
    return Annotated[str, Meta(max_length=64)]


def tag_index(tags: tuple[str, ...], name: str | None) -> int:
    """Index of ``name`` in the vocabulary (case-insensitive), -1 for none or unknown."""
    if not name:
        return -1
    try:
        return tags.index(name)
    except ValueError:
        low = name.strip().lower()
        for j, t in enumerate(tags):
            if t.lower() == low:
                return j
        return -1


ROUND_OPTIONS = ("recommender", "social", "nothing")
"""What a user may do on a round of the social world (``recoworld.social.talk.CHOICES``)."""


@functools.lru_cache(maxsize=16)
def round_type(options: tuple[str, ...]) -> type:
    """The round choice of the social world: one of ``options`` (those open to the user this
    round, a subset of :data:`ROUND_OPTIONS`)."""
    return msgspec.defstruct(
        "RoundAnswer",
        [("choice", Literal[options])],  # type: ignore[valid-type]
        forbid_unknown_fields=True,
        frozen=True,
    )


@functools.lru_cache(maxsize=1024)
def message_type(item_ids: tuple[str, ...], text_chars: int) -> type:
    """A post or chat on the social network: the items it mentions — ids from ``item_ids``
    only (the items the user watched and has not talked about yet: never the catalogue; an id
    named twice counts once) — and the words."""
    return msgspec.defstruct(
        "MessageAnswer",
        [
            (
                "items",
                Annotated[
                    list[Literal[item_ids]],  # type: ignore[valid-type]
                    Meta(min_length=1, max_length=len(item_ids)),
                ],
            ),
            ("text", Annotated[str, Meta(min_length=1, max_length=text_chars)]),
        ],
        forbid_unknown_fields=True,
        frozen=True,
    )


@functools.lru_cache(maxsize=16)
def query_type(query_chars: int) -> type:
    """What the user types into the app's search box (the social world's search)."""
    return msgspec.defstruct(
        "QueryAnswer",
        [("query", Annotated[str, Meta(min_length=1, max_length=query_chars)])],
        forbid_unknown_fields=True,
        frozen=True,
    )

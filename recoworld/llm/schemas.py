"""Output schemas of every language-model call, derived from msgspec structs.

Each schema is built once per shape (slate size, tag vocabulary, length limits) from msgspec
structs with ``Literal`` enums and length/range constraints; :func:`json_schema` turns the
struct into the JSON Schema passed to the engine's structured outputs (references inlined:
every engine's grammar compiler accepts that), and :func:`decode` decodes a completion into the
struct, which re-checks every constraint. There is no field for anything but the decision asked
for: no free "action", no tool call, no URL.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

MAX_ENUM_TAGS = 64
"""Tag vocabularies up to this size are enums in the schema; larger ones are free strings
matched to the vocabulary case-insensitively (unknown -> none)."""

_CONTROL = {c: " " for c in range(32)}


def slack(chars: int) -> int:
    """The length a decoder accepts for a string the schema limits to ``chars``. Grammars count
    what they emit in tokens; a byte-level tokenizer can split one character over tokens and the
    detokenizer then shows replacement characters, so the decoded text may be longer than the
    grammar's count. Texts are clipped to ``chars`` where they are used."""
    return 2 * chars + 8


@functools.lru_cache(maxsize=256)
def slate_type(
    k: int, tags: tuple[str, ...], rated: bool, feeling_chars: int, instruction_chars: int
) -> type:
    """The answer to a slate: per item (in slate order) a decision, a watch percentage, a rating
    (datasets with ratings) and a short feeling; then continue or leave; then an optional
    reflective instruction to the recommender. (Decode with the same call on
    :func:`slack` lengths.)"""
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
            ("items", Annotated[list[item], Meta(min_length=k, max_length=k)]),  # type: ignore[valid-type]
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


def rerank_type(candidate_ids: tuple[str, ...], k: int, reasoning_chars: int = 300) -> type:
    """The agentic recommender's answer: its reasoning, then ``k`` item ids, each one of the
    candidates (an enum: an engine with structured outputs cannot name another item)."""
    return msgspec.defstruct(
        "RerankAnswer",
        [
            ("reasoning", Annotated[str, Meta(max_length=reasoning_chars)]),
            ("ranking", Annotated[list[Literal[candidate_ids]], Meta(min_length=k, max_length=k)]),  # type: ignore[valid-type]
        ],
        frozen=True,
    )


def _tag_type(tags: tuple[str, ...]) -> Any:
    if 0 < len(tags) <= MAX_ENUM_TAGS:
        return Literal[tags]  # type: ignore[valid-type]
    return Annotated[str, Meta(max_length=64)]


@functools.lru_cache(maxsize=512)
def json_schema(t: type) -> str:
    """The JSON Schema of struct type ``t``, references inlined, as compact JSON text."""
    raw = msgspec.json.schema(t)
    defs = raw.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                return inline(dict(defs[name]))
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    out = inline(raw)
    if isinstance(out, dict):
        out.setdefault("additionalProperties", False)
    return json.dumps(out, separators=(",", ":"), sort_keys=False)


def decode(text: str, t: type) -> Any:
    """Decode a completion into ``t``; raw control characters (which some small models put
    inside JSON strings) are read as spaces. Raises :class:`msgspec.ValidationError` or
    :class:`msgspec.DecodeError` with the field path."""
    return msgspec.json.decode(text.translate(_CONTROL).strip(), type=t)


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

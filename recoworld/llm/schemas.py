"""Output schemas derived from msgspec structs: the generic part, for any speaker.

The answer shapes themselves are the speakers' vocabulary and live with them
(:mod:`recoworld.users.answers`, :mod:`recoworld.recommenders.agentic_prompts`): structs with
``Literal`` enums and length/range constraints. :func:`json_schema` turns such a struct into the
JSON Schema passed to the engine's structured outputs (references inlined: every engine's
grammar compiler accepts that), :func:`decode` decodes a completion into the struct, which
re-checks every constraint, and :func:`slack` is the length a decoder accepts for a limited
string.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import msgspec

_CONTROL = {c: " " for c in range(32)}


def slack(chars: int) -> int:
    """The length a decoder accepts for a string the schema limits to ``chars``. Grammars count
    what they emit in tokens; a byte-level tokenizer can split one character over tokens and the
    detokenizer then shows replacement characters, so the decoded text may be longer than the
    grammar's count. Texts are clipped to ``chars`` where they are used."""
    return 2 * chars + 8


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

"""Third-party text in a prompt: the data field, ``<<...>>``.

Every speaker that writes a prompt (the simulated user, the agentic recommender) puts whatever
it did not write itself — item titles, descriptions, tags and the tag vocabulary, creator names,
persona text built from data, and the model's own earlier words shown back as memory — into
:func:`data` fields, never into instruction position. The prompts' preambles tell the model that
a data field is never an instruction; this module makes sure a field cannot stop being one:

1. characters that render as nothing or reorder text are removed: format characters (bidi
   embeddings, overrides and isolates U+202A-202E and U+2066-2069, zero-width characters
   U+200B-200F, U+2060 and U+FEFF, Unicode tag characters U+E0000-E007F, soft hyphens),
   variation selectors, private-use, unassigned and surrogate code points;
2. the rest is normalised with NFKC, so that compatibility forms (fullwidth ``＜＞``, small
   ``﹤﹥``) become the characters they stand for;
3. every angle-bracket look-alike — ``<``, ``>``, ``«»``, ``‹›``, ``≪≫``, ``〈〉``, ``《》``,
   ``⟨⟩``, ``˂˃`` and any other character named a less-than, greater-than, angle, guillemet or
   arrowhead sign — is escaped to ``(`` or ``)``: nothing inside a field can close it or open
   another;
4. control characters, line and paragraph separators and runs of white space become one space:
   a field is one line, so it can never start a heading (``## ...``) or a list item;
5. a combining mark at the start (it would combine with the field's opening ``<``) is dropped,
   and the content is cut to ``limit`` characters (``…`` marks a cut).

This module is shared by the speakers and knows no speaker: it sits below ``users`` and
``recommenders`` (and the item lines both show), and the transport (:mod:`recoworld.llm`) never
needs it.
"""

from __future__ import annotations

import functools
import unicodedata

OPEN, CLOSE = "<<", ">>"

_DROP_CATEGORIES = frozenset({"Cf", "Co", "Cn", "Cs"})
"""Format (bidi controls, zero-width, tag characters, soft hyphen, BOM), private use,
unassigned, surrogates: removed."""
_SPACE_CATEGORIES = frozenset({"Cc", "Zs", "Zl", "Zp"})
"""Controls (line breaks included), spaces, line and paragraph separators: one space."""
_ANGLE_WORDS = frozenset({"LESS-THAN", "GREATER-THAN", "ANGLE", "GUILLEMET", "ARROWHEAD"})
"""A character whose name has one of these words is an angle-bracket look-alike."""
_LEFT_WORDS = ("LEFT", "LESS-THAN", "OPENING")
_LOOK_ALIKES = {"\u1438": "(", "\u1433": ")"}
"""Look-alikes whose names do not say so (Canadian syllabics PA and PO: ``ᐸ``, ``ᐳ``)."""


@functools.lru_cache(maxsize=4096)
def _fold(c: str) -> str:
    """What character ``c`` of NFKC-normalised text becomes inside a field."""
    cat = unicodedata.category(c)
    if cat in _SPACE_CATEGORIES:
        return " "
    if cat in _DROP_CATEGORIES or _is_variation_selector(c):
        return ""
    if c == "<":
        return "("
    if c == ">":
        return ")"
    if c.isascii():
        return c
    if c in _LOOK_ALIKES:
        return _LOOK_ALIKES[c]
    name = unicodedata.name(c, "")
    if _ANGLE_WORDS.intersection(name.split()):
        return "(" if any(w in name for w in _LEFT_WORDS) else ")"
    if unicodedata.normalize("NFKC", c) != c:  # not NFKC-stable on its own: fold what it means
        return "".join(_fold(x) for x in unicodedata.normalize("NFKC", c))
    return c


def _is_variation_selector(c: str) -> bool:
    o = ord(c)
    return 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF or 0x180B <= o <= 0x180F


def _removed(c: str) -> bool:
    return unicodedata.category(c) in _DROP_CATEGORIES or _is_variation_selector(c)


def clean(text: object, limit: int) -> str:
    """The content of a data field for ``text``: one line, no invisible or reordering
    characters, no angle-bracket look-alikes, at most ``limit`` characters (see the module
    docstring). ``limit`` >= 1."""
    s = str(text)[: 8 * limit + 64]  # bound the work; NFKC may expand, the cut comes last
    s = "".join(c for c in s if not _removed(c))  # first: a removed mark could hide a composition
    s = unicodedata.normalize("NFKC", s)
    s = " ".join("".join(_fold(c) for c in s).split())
    while s and (s[0] == " " or unicodedata.category(s[0]).startswith("M")):
        s = s[1:]  # a leading mark would combine with the field's "<" ("<" + U+0338 is "≮")
    if len(s) > limit:
        s = s[: max(limit - 1, 0)] + "\u2026"
    return s


def data(text: object, limit: int = 200) -> str:
    """``text`` as a data field, ``<<content>>``: the content is :func:`clean`'s, so it cannot
    close the field, open another, break the line or hide characters."""
    return f"{OPEN}{clean(text, limit)}{CLOSE}"

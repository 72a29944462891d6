"""Third-party text in a prompt: the data field, ``<<...>>``.

Every speaker that writes a prompt (the simulated user, the agentic recommender) puts whatever
it did not write itself — item titles, descriptions, tags, and the model's own earlier words
shown back as memory — into :func:`data` fields, never into instruction position. :func:`data`
makes a field unable to close itself or start a new line: it drops control characters and line
breaks and replaces ``<<``/``>>`` inside the text.

This module is shared by the speakers and knows no speaker: it sits below ``users`` and
``recommenders`` (and the item lines both show), and the transport (:mod:`recoworld.llm`) never
needs it.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<<", ">>"
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def data(text: object, limit: int = 200) -> str:
    """``text`` as a data field: one line, no control characters, no delimiters inside, at most
    ``limit`` characters of content."""
    s = _NOT_PRINTABLE.sub(" ", str(text))
    s = (
        s.replace(OPEN, "\u2039\u2039")
        .replace(CLOSE, "\u203a\u203a")
        .replace("<", "\u2039")
        .replace(">", "\u203a")
    )
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    return f"{OPEN}{s}{CLOSE}"

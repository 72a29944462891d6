"""Keeping a secret (an API key) out of error messages, ``llm_calls.error`` and logs.

:func:`mask` replaces every form in which ``secret`` can appear in a message — the raw text, its
``repr()`` and JSON-escaped forms (ASCII-escaped or not), its ``unicode_escape`` and UTF-8 bytes
``repr()`` forms, its percent-encoding — and every run of text that matches any 8-character
piece of one of those forms (a server that echoes part of a key, a message cut through a key),
by ``***``. Mask each third-party piece *before* cutting, ``repr()``-ing or formatting it, and
the finished message once more: a cut can then never leave a piece of the key behind.
"""

from __future__ import annotations

import json
import urllib.parse

MASK = "***"
PIECE = 8
"""Any run of at least this many characters of a secret's forms is masked."""


def forms(secret: str) -> set[str]:
    """The texts that stand for ``secret`` in a message (raw and escaped forms)."""
    out = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        repr(secret.encode("utf-8", "surrogatepass"))[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    }
    return {f for f in out if f}


def mask(text: str, secret: str) -> str:
    """``text`` with every form of ``secret`` and every ``PIECE``-character piece of one of them
    replaced by ``***`` (again until no piece is left). An empty secret masks nothing; a secret
    that is part of ``***`` itself cannot be masked (API keys are longer)."""
    if not secret:
        return text
    fs = forms(secret)
    pieces = {f[i : i + PIECE] for f in fs for i in range(max(len(f) - PIECE + 1, 0))}
    for _ in range(8):  # a secret with "*" in it can make new pieces next to a mask: again
        out = text
        for f in sorted(fs, key=len, reverse=True):
            out = out.replace(f, MASK)
        out = _mask_pieces(out, pieces)
        if out == text:
            break
        text = out
    return text


def _mask_pieces(text: str, pieces: set[str]) -> str:
    if not pieces or len(text) < PIECE:
        return text
    hit = [False] * len(text)
    for i in range(len(text) - PIECE + 1):
        if text[i : i + PIECE] in pieces:
            for j in range(i, i + PIECE):
                hit[j] = True
    if not any(hit):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if hit[i]:
            while i < len(text) and hit[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)

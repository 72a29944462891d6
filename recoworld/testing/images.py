"""Generated item images for tests of multimodal prompts (``[llm] attach_images``): valid PNGs
written without an image library, and a world whose items carry them in their ``image``
column (relative paths, resolved from the world's folder, as a generic world's would be)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl

from recoworld.world.model import World


def png_bytes(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def with_images(world: World, folder: Path, *, every: int = 1, broken: Sequence[int] = ()) -> World:
    """``world`` with an ``image`` column and its ``source`` set to ``folder``: every
    ``every``-th item (by row) gets ``img/<row>.png``, a PNG whose colour encodes the row (so a
    test can tell which item an attached image shows: :func:`row_of`); the other items none.
    Rows in ``broken`` name a file that is not an image (text bytes)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    refs: list[str | None] = []
    for r in range(world.items.height):
        if r % every:
            refs.append(None)
            continue
        path = folder / "img" / f"{r}.png"
        path.write_bytes(b"not an image" if r in broken else png_bytes(rgb=colour_of(r)))
        refs.append(f"img/{r}.png")
    items = world.items.with_columns(pl.Series("image", refs, dtype=pl.String))
    return replace(world, items=items, source=str(folder))


def colour_of(row: int) -> tuple[int, int, int]:
    return (row % 256, row // 256 % 256, 77)


def row_of(png: bytes) -> int:
    """The row a :func:`with_images` PNG was made for (its first pixel's colour)."""
    pixels = zlib.decompress(png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8])
    return pixels[1] + 256 * pixels[2]

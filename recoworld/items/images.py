"""Item images for multimodal prompts: the items table's ``image`` column, read into ``data:``
URIs that a request carries (:attr:`recoworld.llm.types.LLMRequest.images`).

An image is a local path (relative paths are taken from the world's folder) or a ``file:``,
``http(s):`` or ``data:`` URI. Local files are read here and checked by their first bytes
(PNG, JPEG, GIF, WebP); http(s) URLs and data URIs pass through (the model server fetches or
decodes them). An image that cannot be read — a missing file, a folder, bytes of no known image
format — is an :class:`~recoworld.errors.DataError` naming the item and the image, or, with
``on_bad = "fallback"``, left out of the request and counted (:class:`SlateImages`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from recoworld.errors import DataError
from recoworld.items.catalog import Catalog

MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
MAX_BYTES = 20 * 2**20
"""Largest image read (20 MiB): a larger file is refused like an unreadable one."""


def image_mime(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (PNG, JPEG, GIF, WebP), or None."""
    for magic, mime in MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_url(ref: str, base: Path | None = None) -> str:
    """``ref`` as a URL a request can carry: a local file as a ``data:`` URI (read and
    checked), a remote URL or data URI unchanged. Raises ValueError saying what is wrong."""
    ref = ref.strip()
    scheme = urlparse(ref).scheme.lower()
    if scheme in ("http", "https", "data"):
        return ref
    path = Path(unquote(urlparse(ref).path)) if scheme == "file" else Path(ref)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"no file {str(path)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{str(path)!r} is a folder") from None
    except OSError as e:
        raise ValueError(f"cannot read {str(path)!r} ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{str(path)!r} is larger than {MAX_BYTES // 2**20} MiB")
    mime = image_mime(data[:16])
    if mime is None:
        raise ValueError(f"{str(path)!r} is not a PNG, JPEG, GIF or WebP image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(frozen=True)
class SlateImages:
    """The images of a slate's items, in slate order (items without an image or whose image
    was left out have none), and those left out as unreadable."""

    urls: tuple[str, ...]
    items: tuple[int, ...]
    """The catalog row of each image's item."""
    fallbacks: int = 0
    positions: tuple[int, ...] = ()
    """The slate position (0-based) of each image's item."""
    problems: tuple[str, ...] = ()
    """Per image left out: the item, the image and what is wrong with it (one line each)."""


def slate_images(
    cat: Catalog,
    slate: Sequence[int],
    *,
    base: Path | None = None,
    on_bad: str | None = None,
    limit: int | None = None,
) -> SlateImages:
    """The images of ``slate``'s items (``cat.images``) as request URLs, in slate order.

    ``base``: the folder relative paths are taken from (default the catalog's
    ``image_base``, the world's folder). ``on_bad`` (default the catalog's ``on_bad_image``,
    ``[items] on_bad_image``): "error" raises a DataError naming the item and the image;
    "fallback" leaves the image out and counts it. ``limit``: at most this many images (the
    first readable ones); items after the limit is reached are not read."""
    if cat.images is None:
        return SlateImages((), ())
    if base is None and cat.image_base:
        base = Path(cat.image_base)
    on_bad = on_bad or cat.on_bad_image
    urls: list[str] = []
    items: list[int] = []
    positions: list[int] = []
    problems: list[str] = []
    for j, i in enumerate(slate):
        if limit is not None and len(urls) >= limit:
            break
        ref = str(cat.images[int(i)] or "")
        if not ref:
            continue
        try:
            urls.append(image_url(ref, base))
            items.append(int(i))
            positions.append(j)
        except ValueError as e:
            where, what = f"item {cat.item_ids[int(i)]!r}", f"column 'image' ({ref!r}): {e}"
            if on_bad == "error":
                raise DataError(
                    where,
                    what,
                    expected="a readable PNG, JPEG, GIF or WebP image "
                    '(or [items] on_bad_image = "fallback")',
                ) from None
            problems.append(f"{where}: {what}")
    return SlateImages(tuple(urls), tuple(items), len(problems), tuple(positions), tuple(problems))

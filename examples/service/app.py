"""The reference recommender service: EASE fitted on a RecoWorld world, over HTTP.

It speaks the batch JSON protocol of docs/recommender-service.md (the wire types are
RecoWorld's own, :mod:`recoworld.recommenders.http`) and keeps each simulated user's state per
request ``scope``: what it was shown, what it clicked, which tags it asked for more or less of.

    pip install -e '.[service]'
    python -m examples.service.app --dataset ml-100k --port 8500
    python -m examples.service.app --study my_study.toml --port 8500 --token-env RECO_TOKEN

Endpoints: ``POST /v1/recommend`` (the protocol), ``GET /health`` (ready; no credential),
``GET /stats`` (requests, users, the model's own compute seconds and the process's CPU
seconds so far). With
``--token-env NAME`` every endpoint but ``/health`` refuses (HTTP 401) a request without
``Authorization: Bearer <the value of $NAME>``. Each response carries a ``Server-Timing``
header with the model's compute time. The world is loaded with RecoWorld's loaders: the one a
study file names (``--study``, the same world the study simulates) or a dataset by name.
"""

from __future__ import annotations

import argparse
import hmac
import os
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from examples.service.ease import EASE, BadRequest, Recommender
from recoworld.recommenders.http import RecommendRequest
from recoworld.world.model import World


def create_app(rec: Recommender, *, token: str = "", about: dict | None = None) -> FastAPI:
    """The service around ``rec``; ``token``: the bearer credential it demands ("" = none)."""
    app = FastAPI(title="RecoWorld reference recommender (EASE)", docs_url=None, redoc_url=None)
    app.openapi_url = None  # the protocol's description is docs/recommender-service.openapi.yaml
    expected = f"Bearer {token}".encode() if token else b""

    def refused(request: Request) -> Response | None:
        if not token:
            return None
        got = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(got, expected):
            return None
        return JSONResponse(  # never echoes what it was sent
            {"error": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **(about or {})}

    @app.get("/stats")
    async def stats(request: Request) -> Response:
        # cpu_s: the whole process's CPU seconds (the web stack included), for benchmarks
        stats = {**asdict(rec.stats), "cpu_s": time.process_time()}
        return refused(request) or JSONResponse(stats)

    @app.post("/v1/recommend")
    async def recommend(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        t0 = time.perf_counter()
        try:
            req = msgspec.json.decode(await request.body(), type=RecommendRequest)
            out = rec.handle(req)
        except (msgspec.DecodeError, BadRequest) as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        ms = (time.perf_counter() - t0) * 1000
        return Response(
            msgspec.json.encode(out),
            media_type="application/json",
            headers={"Server-Timing": f"ease;dur={ms:.3f}"},
        )

    return app


def load(args: argparse.Namespace) -> World:
    """The world the arguments name, loaded by RecoWorld's own loaders."""
    from recoworld.config import WorldConfig, load_study
    from recoworld.study.prepare import load_world_for

    if args.study:
        cfg = load_study(args.study)
        return load_world_for(cfg.world, cfg.seed, base_dir=Path(args.study).resolve().parent)
    return load_world_for(WorldConfig(dataset=args.dataset, path=args.path or ""), 0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m examples.service.app",
        description="The reference recommender service (EASE over a RecoWorld world).",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a dataset name RecoWorld loads (ml-100k, ml-1m, ...)")
    src.add_argument("--study", help="a study file: serve the world it simulates")
    ap.add_argument("--path", help="the dataset's folder (default: the data cache/shared data)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8500, help="0: any free port (printed)")
    ap.add_argument("--lambda", dest="lam", type=float, default=250.0, help="EASE's L2 weight")
    ap.add_argument(
        "--token-env",
        default="",
        help="NAME of an environment variable holding the bearer token requests must carry",
    )
    ap.add_argument("--max-scopes", type=int, default=4096, help="studies' states kept (LRU)")
    ap.add_argument("--log-level", default="warning", help="uvicorn's log level")
    args = ap.parse_args(argv)

    import uvicorn

    token = ""
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            sys.exit(f"--token-env {args.token_env}: the variable is not set or empty")
    t0 = time.perf_counter()
    world = load(args)
    model = EASE(world, lam=args.lam)
    about = {
        "model": "ease",
        "lambda": args.lam,
        "world": world.name,
        "items": model.n_items,
        "users": len(model.history),
        "fit_s": round(time.perf_counter() - t0, 3),
    }
    app = create_app(Recommender(model, max_scopes=args.max_scopes), token=token, about=about)
    # The socket is bound here, so that --port 0 can say which port it got.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving EASE (lambda {args.lam:g}) over {world.name}: {model.n_items} items, "
        f"{len(model.history)} users, on http://{shown}:{port}/v1/recommend"
        + (f" (bearer token from ${args.token_env})" if token else ""),
        flush=True,
    )
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

"""Viewer latency on a large run: a user's session page vs. reading the whole events table.

    python benchmarks/bench_viewer.py --run runs/big            # an existing run
    python benchmarks/bench_viewer.py --users 100000            # runs studies/creator_scifi.toml
                                                                # first (~40 s)

For ``--repeats`` users drawn with a fixed seed, times (1) what the page asks when a user's
session is opened: ``/api/user`` then ``/api/session`` (persona + sessions, then every item of
the first session), as RunView queries and over HTTP; (2) a page of the users list; and (3)
the baseline a naive viewer would do: read the whole events table (and, kinder, only the
arm's part), then filter. Prints
medians and the ratio baseline / viewer. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.report.viewer import RunView, make_server  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", help="an existing run folder")
    ap.add_argument(
        "--users",
        type=int,
        default=100_000,
        help="users per arm of the run to make when --run is not given",
    )
    ap.add_argument("--out", help="where to make it (default: a temporary folder)")
    ap.add_argument("--repeats", type=int, default=30, help="users timed for the viewer")
    ap.add_argument(
        "--baseline-repeats", type=int, default=3, help="users timed for the full-read baseline"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tmp = None
    if args.run:
        run = Path(args.run)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-viewer-")
        out = Path(args.out or tmp.name)
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "recoworld.cli",
                "run",
                str(ROOT / "studies/creator_scifi.toml"),
                "--users",
                str(args.users),
                "--run-id",
                "bench-viewer",
                "--out",
                str(out),
                "--quiet",
                "--overwrite",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        run = out / "bench-viewer"
        print(f"made {run} ({args.users:,} users per arm) in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    view = RunView(run, titles=False)
    open_s = time.perf_counter() - t0
    arm = view.arms[-1]
    n_users = int(view.manifest["users_per_arm"])
    events = sum(f.stat().st_size for f in (run / "events").glob("arm=*/*.parquet"))
    print(
        f"run {run.name}: {n_users:,} users per arm, {len(view.arms)} arms, "
        f"{view.manifest.get('events', 0):,} events ({events / 1e6:.0f} MB); viewer opens in "
        f"{open_s * 1e3:.0f} ms"
    )

    rng = np.random.default_rng(args.seed)
    users = [int(u) for u in rng.integers(0, n_users, args.repeats)]
    for u in users[:2]:  # warm the file cache
        view.session(arm, u, 0)

    server = make_server(view)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def http(path: str) -> None:
        with urllib.request.urlopen(base + path, timeout=60) as r:
            r.read()

    q_page = [timed(lambda u=u: (view.user(arm, u), view.session(arm, u, 0))) for u in users]
    h_page = [
        timed(
            lambda u=u: (
                http(f"/api/user?arm={arm}&user={u}"),
                http(f"/api/session?arm={arm}&user={u}&session=0"),
            )
        )
        for u in users
    ]
    offsets = [int(o) for o in rng.integers(0, max(n_users - 50, 1), args.repeats)]
    h_list = [timed(lambda o=o: http(f"/api/users?arm={arm}&offset={o}&limit=50")) for o in offsets]
    h_list_f = [
        timed(lambda o=o: http(f"/api/users?arm={arm}&instructed=1&offset={o // 10}&limit=50"))
        for o in offsets
    ]
    server.shutdown()

    def baseline(u: int, whole: bool) -> None:
        scan = scan_table(run, "events")
        ev = (scan if whole else scan.filter(pl.col("arm") == arm)).collect()
        ev.filter((pl.col("arm") == arm) & (pl.col("user") == u) & (pl.col("session") == 0)).sort(
            "turn", "position"
        )

    base_t = [timed(lambda u=u: baseline(u, True)) for u in users[: args.baseline_repeats]]
    base_arm = [timed(lambda u=u: baseline(u, False)) for u in users[: args.baseline_repeats]]

    med = statistics.median
    rows = [
        ("session page, RunView queries (user + session)", q_page),
        ("session page over HTTP (/api/user + /api/session)", h_page),
        ("users list page over HTTP (50 users)", h_list),
        ("users list page, 'wrote an instruction' filter", h_list_f),
        ("baseline: read the whole events table, filter", base_t),
        ("baseline: read the arm's events (hive pruned), filter", base_arm),
    ]
    print(f"\n{'':52s} {'median':>10s} {'p90':>10s}   n")
    for name, ts in rows:
        p90 = sorted(ts)[min(len(ts) - 1, int(0.9 * len(ts)))]
        print(f"{name:52s} {med(ts) * 1e3:8.1f}ms {p90 * 1e3:8.1f}ms {len(ts):3d}")
    print(
        f"\nbaseline / viewer session page: {med(base_t) / med(q_page):.0f}x (RunView), "
        f"{med(base_t) / med(h_page):.0f}x (HTTP)"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""`recoworld report` and `recoworld view` (registered by recoworld.cli; heavy imports stay
inside the handlers).

recoworld report PATH [-o OUT.html]     a run folder, or a sweep's date folder
                                        (sweep_summary.parquet)
recoworld view RUN_DIR [--host 127.0.0.1] [--port 8765] [--allow-host NAME[:PORT]]...
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path


def cmd_report(args: argparse.Namespace, console) -> int:
    from recoworld.report.build import write_report

    r = write_report(Path(args.path), args.output)
    console.print(
        f"{r.kind} report ({r.bytes / 1e6:.1f} MB, {r.seconds:.1f}s) -> [bold]{r.path}[/]",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_view(args: argparse.Namespace, console) -> int:
    from recoworld.report.viewer import RunView, make_server

    view = RunView(Path(args.run_dir))
    server = make_server(
        view,
        args.host,
        args.port,
        log=(lambda line: console.print(line, highlight=False)) if args.verbose else None,
        allow_hosts=tuple(args.allow_host),
    )
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    if not _loopback(args.host):
        console.print(
            f"[yellow]warning:[/] serving on {args.host}: anyone who can reach this machine can "
            "read the run; requests must name it as 127.0.0.1, localhost or an --allow-host NAME"
        )
    console.print(
        f"viewing {view.manifest.get('run_id', view.run_dir.name)} "
        f"({view.manifest.get('users_per_arm', 0):,} users per arm) at "
        f"[bold]http://{shown}:{port}/[/]  (Ctrl-C to stop)",
        highlight=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `report` and `view` commands to the top-level parser's subcommands."""
    r = sub.add_parser("report", help="write a self-contained HTML report of a run or a sweep")
    r.add_argument(
        "path",
        help="a run folder (runs/<run_id>) or a sweep's date folder holding sweep_summary.parquet",
    )
    r.add_argument("-o", "--output", help="the HTML file to write (default: PATH/report.html)")
    r.set_defaults(func=cmd_report)
    v = sub.add_parser(
        "view", help="browse a run's users and replay their sessions in a local web page"
    )
    v.add_argument("run_dir")
    v.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    v.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    v.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also answer requests addressed to NAME (the Host header), e.g. this machine's name "
        "with --host 0.0.0.0; by default only 127.0.0.1, localhost and [::1] are answered",
    )
    v.add_argument("--verbose", action="store_true", help="log every request")
    v.set_defaults(func=cmd_view)

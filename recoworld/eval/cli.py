"""`recoworld eval ...` subcommands (registered by recoworld.cli; heavy imports stay inside the handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `eval` command to the top-level parser's subcommands."""
    e = sub.add_parser("eval", help="evaluate the simulator (fidelity against held-out real behaviour)")
    e.set_defaults(func=lambda args, console: (console.print("not implemented yet"), 2)[1])

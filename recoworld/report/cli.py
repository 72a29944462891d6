"""`recoworld report` and `recoworld view` (registered by recoworld.cli; heavy imports stay inside the handlers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `report` and `view` commands to the top-level parser's subcommands."""
    for name in ("report", "view"):
        p = sub.add_parser(name, help=f"{name} a run (not implemented yet)")
        p.set_defaults(func=lambda args, console: (console.print("not implemented yet"), 2)[1])

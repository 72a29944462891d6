"""Ray job entry point for a creator what-if study.

    ray job submit --working-dir . -- python jobs/whatif.py STUDY.toml [--ray auto] [run options]

The same options as ``recoworld run``; Ray (``--ray auto``: the cluster the job runs in) is the
default here, ``--local`` runs in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir, for `actors`

from recoworld.cli import main  # noqa: E402


def job_args(argv: list[str]) -> list[str]:
    """``recoworld run`` arguments: on Ray (the job's cluster) unless told otherwise."""
    if not any(a in ("--local", "--ray") or a.startswith("--ray=") for a in argv):
        argv = [*argv, "--ray", "auto"]
    return ["run", *argv]


if __name__ == "__main__":
    sys.exit(main(job_args(sys.argv[1:])))

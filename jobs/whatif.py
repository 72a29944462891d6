"""Entry point for a creator what-if study: `python jobs/whatif.py STUDY.toml [run options]`.

Today this runs the study in one process (the same as `recoworld run`); the Ray distribution
work makes it the `ray job submit` entry point.
"""

from __future__ import annotations

import sys

from recoworld.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

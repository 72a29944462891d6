#!/usr/bin/env bash
# CI step: a real local Ray head on 127.0.0.1, `ray job submit` of the what-if study and the
# nightly sweep with a working-dir runtime env, their Parquet output checked, the head stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"     # the head (and so the jobs) run the project's venv
export RAY_AUTH_MODE=token             # Ray 2.60: token auth; the submit side must say so too
out="$PWD/runs/ci-ray"
rm -rf "$out"
ray stop --force >/dev/null 2>&1 || true
ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --port=6390 \
  --dashboard-port=8265 --num-cpus=2 --disable-usage-stats
trap 'ray stop --force >/dev/null 2>&1 || true' EXIT
renv='{"excludes": [".venv/", ".venv-llm/", ".cache/", "runs/", ".git/", "__pycache__/", ".hypothesis/", ".pytest_cache/"]}'
submit() { ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env-json "$renv" -- "$@"; }

submit python jobs/whatif.py studies/quick_synthetic.toml --ray auto --run-id whatif --out "$out" --quiet
submit python jobs/nightly_sweep.py sweeps/quick.toml --ray auto --out "$out/sweeps" --date 2026-01-01

python - "$out" <<'PY'
import sys
from pathlib import Path
import polars as pl
out = Path(sys.argv[1])
ev = pl.scan_parquet(out / "whatif/events/arm=*/*.parquet", hive_partitioning=True).select(pl.len()).collect().item()
summary = pl.read_parquet(out / "whatif/summary.parquet")
assert ev > 0 and summary.height > 0, (ev, summary.height)
sweep = list((out / "sweeps").rglob("sweep_summary.parquet"))
assert len(sweep) == 1, sweep
cells = pl.read_parquet(sweep[0])["cell"].n_unique()
assert cells >= 2, cells
print(f"ray job submit: what-if study {ev:,} events, {summary.height} summary rows; sweep {cells} cells")
PY

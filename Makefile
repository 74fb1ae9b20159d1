# wcembed: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Exact versions from the lock (requirements/test.txt, written by scripts/lock.py); torch==2.13.0 there is
# the CPU wheel where pip finds one (CI) and PyPI's CUDA wheel elsewhere.
LOCK ?= requirements/test.txt
# Test processes: many tests wait on servers, browsers and subprocesses, so 2 run well on 2 cores. Files
# start in the order tests/conftest.py gives (the longest first), not xdist's order by test count.
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed
SYSTEM_STAMP := .cache/system.stamp
# The original scripts' writer is run with the libraries of its time in this environment (tests/test_original.py).
ENV_2024 := .cache/env-2024
ENV_2024_STAMP := $(ENV_2024)/.installed
CHECKPOINT ?=
export PYTHONHASHSEED := 0

.PHONY: help test demo lab docs lint format setup system clean-outputs bench lock docker-local

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m wcembed.tools.labextension
	@touch $@

$(SYSTEM_STAMP): scripts/setup-system.sh scripts/package.json
	bash scripts/setup-system.sh
	@mkdir -p $(dir $@) && touch $@

$(ENV_2024_STAMP): requirements/original-2024.txt
	@test -x $(ENV_2024)/bin/python || $(PYTHON) -m venv $(ENV_2024)
	$(ENV_2024)/bin/python -m pip install -q -r requirements/original-2024.txt
	@touch $@

setup: $(STAMP) $(SYSTEM_STAMP) $(ENV_2024_STAMP)  ## create or reuse the virtual environments and system tools (idempotent)

system: $(SYSTEM_STAMP)  ## install MapServer, Chromium and the map's JavaScript (needs root/apt)

test: setup  ## run lint and the whole test suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: $(STAMP)  ## ruff check
	$(VENV)/bin/ruff check .

format: $(STAMP)  ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: setup  ## the whole pipeline, offline, on the bundled sample region
	$(PY) -m wcembed demo --checkpoint "$(CHECKPOINT)"

lab: setup  ## JupyterLab on the explore notebook with the demo's database and a local WMS (after make demo)
	@test -d outputs/lancedb || { echo "no outputs/lancedb: run make demo first"; exit 1; }
	$(PY) -m wcembed lab $(LAB_ARGS)

docs: setup  ## build the documentation site into outputs/site (offline; the demo's notebooks when there)
	$(PY) scripts/build_docs.py --site outputs/site

lock: $(STAMP)  ## re-resolve the lock files requirements/{worker,explore,test}.txt (after changing pyproject.toml)
	$(PY) scripts/lock.py

docker-local: setup  ## build the worker image with a local Docker engine and run one sample column in it (root, minutes)
	PY=$(PY) bash scripts/docker-local.sh

clean-outputs:  ## remove generated outputs (keeps outputs/README.md)
	find outputs -mindepth 1 ! -name README.md -exec rm -rf {} +

bench: setup  ## run the benchmarks (ratios against a baseline in the same run, results in outputs/benchmarks/)
	cd benchmarks && ../$(PY) bench_tiles.py && ../$(PY) bench_model.py && ../$(PY) bench_embed.py && ../$(PY) bench_index.py && ../$(PY) bench_layers.py && ../$(PY) bench_chaos.py && ../$(PY) bench_active.py && ../$(PY) bench_store.py && ../$(PY) bench_lab.py

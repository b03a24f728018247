# calo-ablate: every target that needs Python first makes or refreshes .venv.
# torch is pinned and installed first: 2.13.0 takes the CPU build where one lies on disk.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATASET ?= 1
PROFILE ?= quick
SEEDS ?= 2
MAX_SEEDS ?=
BUDGET ?=
WORKERS ?= 2
STUDY ?=
THREADS ?=
REGISTRY ?=
ABLATE_ARGS := --dataset $(DATASET) --profile $(PROFILE) --seeds $(SEEDS) $(if $(MAX_SEEDS),--max-seeds $(MAX_SEEDS)) $(if $(BUDGET),--budget $(BUDGET)) --workers $(WORKERS) $(if $(STUDY),--study $(STUDY)) \
	$(if $(REGISTRY),--registry $(REGISTRY))

PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

.PHONY: help venv machine data ablate test test-all test-servers bench ui lint docs clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## make or refresh the virtualenv (.venv)

machine: $(STAMP)  ## one line: the CPU model, its instruction set (AVX2, AVX-512, native bf16, AMX), the core count
	@$(PY) -m calo_ablate.model.precision

data: $(STAMP)  ## real files from data/ if present (validated), else the synthetic stand-in: make data DATASET=1
	$(VENV)/bin/calo-ablate data prepare --dataset $(DATASET)

ablate: $(STAMP)  ## the ablation study: make ablate DATASET=1 [PROFILE=quick] [SEEDS=2|auto [MAX_SEEDS=8] [BUDGET=30m]] [WORKERS=2] [REGISTRY=experiments/calodiffusion.yaml]
	$(VENV)/bin/calo-ablate ablate $(ABLATE_ARGS)

test: $(STAMP) test-servers  ## the test suite without the tests marked slow (what CI runs; starts its own servers)
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP) test-servers  ## every test, the slow ones too (the kill at all six points, the full evaluate CLI)
	$(PY) -m pytest

test-servers:  ## server packages for the storage and SLURM tests (apt-get install as root where missing)
	@if [ -z "$(PG_INITDB)" ] && ! command -v initdb >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "note: no PostgreSQL server binaries (initdb): the PostgreSQL tests are skipped;" \
	    "install the OS package postgresql"; fi; fi
	@if ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/slurmdbd ] || ! [ -x /usr/sbin/munged ] \
	    || ! [ -x /usr/sbin/mariadbd ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      slurm-wlm slurmdbd munge mariadb-server >/dev/null; \
	  else echo "note: no SLURM daemons (slurmctld, slurmd, slurmdbd, munged, mariadbd): the SLURM cluster" \
	    "tests are skipped; install the OS packages slurm-wlm slurmdbd munge mariadb-server"; fi; fi

bench: $(STAMP)  ## speed, memory and profile figures of every family (prints, asserts nothing): make bench [THREADS=1] [FAMILY=name] [BENCH_ARGS=...]
	$(PY) -m calo_ablate.bench --dataset $(DATASET) $(if $(THREADS),--threads $(THREADS)) $(if $(FAMILY),--family $(FAMILY)) $(BENCH_ARGS)

ui: $(STAMP)  ## MLflow UI on 127.0.0.1:5000 for the study store (STUDY=name, default the newest)
	$(VENV)/bin/calo-ablate ui $(if $(STUDY),--study $(STUDY))

lint: $(STAMP)  ## ruff, import-linter's layer contracts (pyproject.toml), dead code (vulture; vulture_whitelist.py), mypy
	$(VENV)/bin/ruff check calo_ablate tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vulture calo_ablate vulture_whitelist.py --min-confidence 60
	$(VENV)/bin/mypy calo_ablate

docs: $(STAMP)  ## the documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or nav entry fails
	$(VENV)/bin/mkdocs build --strict

clean:  ## remove the virtualenv and caches (keeps data/ and results/)
	rm -rf $(VENV) .pytest_cache .ruff_cache

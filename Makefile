# `make demo` and `make test` work on a fresh machine: each creates .venv and installs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/fraudstream demo

PACKAGES := stream models features thresholds

lint: install
	$(BIN)/ruff check .
	mkdir -p $(VENV)/typecheck/fraudstream
	for package in $(PACKAGES); do ln -sfn $(CURDIR)/$$package $(VENV)/typecheck/fraudstream/$$package; done
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q

test: lint unit

bench: install
	$(BIN)/python -m bench.bench_generate --transactions 1000000
	$(BIN)/python -m bench.bench_offline --transactions 1000000
	$(BIN)/python -m bench.bench_scoring
	$(BIN)/python -m bench.bench_loadtest
	$(BIN)/python -m bench.bench_cpu_baseline
	$(BIN)/python -m bench.bench_demo

# Issue 10 §9: every fault against real services; writes bench/CHAOS.md and bench/chaos/.
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache

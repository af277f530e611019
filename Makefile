# The README's first two commands: `make demo` and `make test`. Both do all setup on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install demo test lint ui serve bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip uv
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set, uncompiled installs make every Dagster command ~2x slower
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

demo: install
	@mkdir -p data/dagster_home
	@test -f data/dagster_home/dagster.yaml || cp dagster.local.yaml data/dagster_home/dagster.yaml
	$(VENV)/bin/jira-pipeline demo

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

ui: install
	@mkdir -p data/dagster_home
	@test -f data/dagster_home/dagster.yaml || cp dagster.local.yaml data/dagster_home/dagster.yaml
	$(VENV)/bin/dagster dev -m jira_pipeline.definitions -h 127.0.0.1 -p 3000

serve: install
	$(VENV)/bin/jira-pipeline serve

bench: install
	$(PY) -m jira_pipeline_tests.bench_sync

clean:
	rm -rf data .pytest_cache .ruff_cache

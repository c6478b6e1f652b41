# sgs-template: the two commands are `make demo` and `make test`.
# Each creates the venv it needs first; nothing has to be installed by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_VENV := build/.venv
PYTEST_ARGS ?= -n auto --dist worksteal
# pip >= 25.1 understands [dependency-groups] (pip install --group).
PIP_MIN := pip>=25.1

.DEFAULT_GOAL := help
.PHONY: help venv test lint format demo lock upgrade clean

help:  ## list the targets
	@grep -E '^[a-z][a-z -]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

venv: $(VENV)/.installed  ## create .venv with the pinned dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade '$(PIP_MIN)'
	$(BIN)/python -m pip install --quiet --group dev
	@touch $@

lint: venv  ## ruff check + ruff format --check (hooks, tests, scripts)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## lint, then bake every combination and run the baked repos' own suites
	$(BIN)/pytest $(PYTEST_ARGS)

format: venv  ## apply ruff format and the safe ruff fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(DEMO_VENV)/.installed  ## bake, install, serve, run the robots, stop (build/demo)
	$(DEMO_VENV)/bin/python scripts/demo.py

$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade '$(PIP_MIN)'
	$(DEMO_VENV)/bin/python -m pip install --quiet --group demo
	@touch $@

lock: venv  ## re-resolve the generated repos' lock ({{cookiecutter.project_slug}}/requirements) after a dependency change
	$(BIN)/python scripts/lock.py

upgrade: venv  ## re-resolve the generated repos' lock to the newest versions their pyproject allows
	$(BIN)/python scripts/lock.py --upgrade

clean:  ## remove the venvs, build output and caches
	rm -rf $(VENV) build .pytest_cache .ruff_cache

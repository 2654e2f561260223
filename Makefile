# veille — `make help` lists the targets. `make test` is exactly what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/veille.yaml
# `docker compose` (v2) when the Docker CLI has it, else the v1 program `docker-compose` (Debian's 1.29);
# COMPOSE=... chooses.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck clean up down logs bench train

help: ## Show this help
	@echo "veille — make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml hatch_build.py shared/veille/sentiment/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install veille with its development tools

run: $(STAMP) ## Run the whole stack on this machine (veille up) with CONFIG=examples/veille.yaml
	$(BIN)/veille up --config $(CONFIG)

.PHONY: demo
demo: $(STAMP) ## Offline demo: veille up on a scripted crisis feed; alerts in var/demo within two minutes
	$(BIN)/veille demo

test: lint typecheck ## Lint, type-check and run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## Check types with mypy (strict)
	$(BIN)/mypy

bench: $(STAMP) ## Run every benchmark, write docs/benchmarks.md (BENCH_ARGS=--full: an hour of memory)
	PYTHONPATH=shared:. $(BIN)/python bench/run_all.py $(BENCH_ARGS)

train: $(STAMP) ## Rebuild the sentiment model from ../shared/data (TRAIN_ARGS='--cv all': re-run its cross-validation)
	$(BIN)/pip install --quiet -e ".[dev,train]"
	$(BIN)/python scripts/train_sentiment.py $(TRAIN_ARGS)

.PHONY: examples
examples: $(STAMP) ## Rebuild docs/examples/ (the webhook body of every alert kind) from veille's own code
	$(BIN)/python scripts/make_examples.py

clean: ## Remove the virtual environment and caches (keeps ./var)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

up: ## Start the Docker stack (docker-compose.yml; needs .env, see .env.example)
	@test -f .env || { echo "no .env: cp .env.example .env and set the passwords"; exit 1; }
	$(COMPOSE) up -d --build

down: ## Stop the Docker stack (keeps its volumes)
	$(COMPOSE) down

.PHONY: wheelhouse test-docker
wheelhouse: $(STAMP) ## Wheels of veille's dependencies (var/wheelhouse) and of veille (var/veille-wheel), for an air-gapped image build
	$(BIN)/pip wheel --quiet --disable-pip-version-check -w var/wheelhouse . hatchling pip
	rm -rf var/veille-wheel && mkdir -p var/veille-wheel && mv var/wheelhouse/veille-*.whl var/veille-wheel/

test-docker: $(STAMP) ## Build the image and check the compose stack on a real Docker engine (CI, after make test)
	bash scripts/docker-test.sh $(PYTEST_ARGS)

logs: ## Follow the Docker stack's logs (SERVICE=notifier for one)
	$(COMPOSE) logs -f --tail=100 $(SERVICE)

# Aurum — the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
ADDRPORT ?= 127.0.0.1:8000

.PHONY: install demo serve test pytest lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,spark]'
	@touch $(STAMP)

install: $(STAMP)

## Set up, migrate, load the demo data and serve the hub (SQLite + embedded broker).
demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py runhub $(ADDRPORT)

## Serve again without reloading the demo.
serve: install
	$(BIN)/python manage.py runhub $(ADDRPORT)

## Set up and run the whole test suite (lint, type check, migrations check, pytest).
test: install lint pytest

pytest: install
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/bandit -q -r mdm matching stewardship sync config -ll

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The benchmark suite on the configured database (a bench DB: it is emptied).  QUICK=1: small.
bench: install
	$(BIN)/python bench/suite.py $(if $(QUICK),--quick,)

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

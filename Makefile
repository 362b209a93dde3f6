# Chainlog: `make up` starts everything, `make test` checks everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
VENV_STAMP := .venv/.installed-$(shell cat requirements.lock pyproject.toml clients/python/pyproject.toml | sha256sum | cut -c1-12)
LOCAL := deploy/local
export CHAINLOG_STATE_DIR ?= $(CURDIR)/.chainlog

help:
	@echo "make up      install, start Kafka, PostgreSQL and every service, create a demo workspace"
	@echo "make test    install, lint, start what the tests need, run the whole suite"
	@echo "make down    stop everything"
	@echo "make status  what runs"
	@echo "make lint    ruff format --check, ruff check, mypy"
	@echo "make bench   benchmarks against the local stack (table + bench/results/*.json)"

install: $(VENV_STAMP)

$(VENV_STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml
	test -x .venv/bin/python || python3.11 -m venv .venv || python3 -m venv .venv
	.venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
	.venv/bin/uv pip sync -q --python .venv/bin/python requirements.lock
	.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
	.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e clients/python
	rm -f .venv/.installed-* && touch $@

lock:
	.venv/bin/uv pip compile -q pyproject.toml --extra dev -o requirements.lock --python .venv/bin/python
	.venv/bin/uv pip compile -q pyproject.toml -o requirements-runtime.lock --python .venv/bin/python

lint: install
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy libs services clients/python/src clients/python/tests

infra: install
	bash $(LOCAL)/postgres.sh start
	bash $(LOCAL)/kafka.sh start
	.venv/bin/chainlog migrate
	.venv/bin/chainlog topics

up: infra
	bash $(LOCAL)/services.sh start
	bash $(LOCAL)/demo.sh

down:
	-bash $(LOCAL)/services.sh stop
	-bash $(LOCAL)/kafka.sh stop
	-bash $(LOCAL)/postgres.sh stop

status:
	-bash $(LOCAL)/services.sh status

browser:
	bash $(LOCAL)/chromium.sh install

test: lint infra browser
	.venv/bin/pytest -q

bench: infra
	$(PY) -m bench.run

.PHONY: help install lock lint infra browser up down status test bench

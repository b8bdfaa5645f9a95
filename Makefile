# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
export HF_HUB_OFFLINE := 1

.PHONY: install lint test demo

install:
	deploy/local/install

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# pytest starts (and afterwards stops) its own Kafka and Redis instance through deploy/local/services.
test: lint
	.venv/bin/pytest

demo: install
	deploy/local/demo

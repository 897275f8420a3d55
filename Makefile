.PHONY: setup test test-fast demo lint

setup:
	bash scripts/setup.sh

# Everything CI runs: lint, then the whole suite (slow end-to-end tests included).
test: setup
	.venv/bin/ruff check .
	DEPTHLM_IBIMS1=$${DEPTHLM_IBIMS1:-$(abspath ../shared/data/ibims1)} .venv/bin/python -m pytest -q --durations=15

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

demo: setup
	.venv/bin/depthlm demo

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

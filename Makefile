.PHONY: setup test test-fast demo lint gpu-wheels

setup:
	bash scripts/setup.sh

# Everything CI runs: lint, then the whole suite (slow end-to-end tests included). Tests on the
# real iBims-1 sample also run on a made twin; without ../shared/data/ibims1 the real-data
# variants skip with the reason (tests/conftest.py).
test: setup
	.venv/bin/ruff check .
	DEPTHLM_IBIMS1=$${DEPTHLM_IBIMS1:-$(abspath ../shared/data/ibims1)} .venv/bin/python -m pytest -q --durations=15

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

demo: setup
	.venv/bin/depthlm demo

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

# The wheels a bare GPU machine needs for benchmarks/gpu_check.py (docs/gpu.md).
gpu-wheels: setup
	bash scripts/gpu_wheels.sh

# The two front doors: `make demo` runs the demo (examples/demo), `make test` runs the test suite.
# Both set up .venv from scratch on a fresh machine. torch is pinned and installed first so the
# CPU build on this machine is used instead of a multi-gigabyte CUDA download.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test processes: on 2 cores one process keeps one core busy (the end-to-end tests wait on the servers and workers
# they start), two keep both. worksteal, not loadfile: loadfile keys tests by node id and silently runs one of the
# schemathesis operations that share an id (3 conformance tests instead of 24), and it starts the slowest file last.
TEST_PROCESSES ?= 2
# torch threads in each test process and the workers and servers it starts: with two processes on 2 cores, one
# process's idle OpenMP threads would spin on the core the other one needs.
TEST_THREADS ?= 1

.PHONY: setup demo demo-quick test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo

demo-quick: $(STAMP)
	$(PY) -m examples.demo --quick

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports  # the layering of docs/internals.md ([tool.importlinter] in pyproject.toml)
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q -n $(TEST_PROCESSES) --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check src tests benchmarks examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench system-deps clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/synthstream demo

# docker-compose (Debian's 1.29) validates docker-compose.yml offline in the test suite;
# chromium (headless) renders the audit report in the test suite.
system-deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing Debian's docker-compose (validates docker-compose.yml offline)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (renders the audit report headless in the tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Test files are spread over TEST_WORKERS processes (pytest-xdist; each starts its own embedded
# broker); most tests wait on the broker, so two workers halve the wall time even on 2 cores.
TEST_WORKERS ?= 2
test: setup system-deps
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: setup
	$(VENV)/bin/ruff check synthstream tests benchmarks
	$(VENV)/bin/ruff format --check synthstream tests benchmarks
	$(VENV)/bin/mypy synthstream

bench: setup
	$(PY) -m benchmarks.pipeline

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

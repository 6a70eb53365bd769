# gnomon: `make run` (quickstart campaign on embedded defaults), `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast test-deps bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m gnomon.cli campaign quickstart

# two pytest-xdist workers: the slow tests wait on child processes (Prefect servers, relaxation
# workers, SLURM jobs) most of the time, so two of them share two cores well
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --timeout=1200 --durations=25

test-fast: install
	$(PY) -m pytest -q -m "not slow and not integration"

test-deps:
	bash infra/install-system-deps.sh

bench: install
	$(PY) bench/hull.py
	$(PY) bench/generation.py
	$(PY) bench/screening.py
	$(PY) bench/dispatch.py
	$(PY) bench/policies.py

lint: install
	$(VENV)/bin/ruff check gnomon tests bench

clean:
	rm -rf $(VENV) .gnomon .pytest_cache

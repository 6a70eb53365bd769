# gnomon: `make run` (quickstart campaign on embedded defaults), `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
VENDOR := gnomon/serve/explorer/vendor
PLOTLY := $(VENDOR)/node_modules/.package-lock.json

.PHONY: install run test test-fast test-deps bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# the explorer's partial plotly.js bundles (npm ci of vendor/package-lock.json); without npm
# its pages load the full plotly.js the plotly wheel ships, slower (make test-deps installs npm)
$(PLOTLY): $(VENDOR)/package.json $(VENDOR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(VENDOR) && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.package-lock.json; \
	else echo "no npm: the explorer's pages load the full plotly.js (make test-deps installs npm)"; fi

install: $(STAMP) $(PLOTLY)

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
	rm -rf $(VENV) .gnomon .pytest_cache $(VENDOR)/node_modules

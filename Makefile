# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Another Airflow for the version matrix, e.g. `make test VENV=.venv-af31 AIRFLOW='apache-airflow==3.1.*'`.
AIRFLOW ?=

.PHONY: install demo test docs docs-screens system-test system-deps lint bench bench-chaos bench-readme bench-page bench-scaleout dist clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(AIRFLOW)
	$(BIN)/python -c "import airflow; print('Airflow', airflow.__version__, 'in $(VENV)')"
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A real Airflow (CeleryExecutor: PostgreSQL, Redis, two workers) on loopback, driven over REST and in
# headless Chromium; needs Debian's postgresql, redis-server and chromium (.ci/run installs them).
system-test: system-deps $(VENV)/.installed-system docs
	$(BIN)/python -m tests.system.run $(SYSTEM_ARGS)

# The Juspay page's screenshots that "See your syncs" shows, from the last `make system-test`.
docs-screens:
	cp artifacts/system-test/juspay-page.png artifacts/system-test/juspay-run-tab.png docs/_static/screens/

# What the deployment needs from the distribution: one line naming what is missing, not a traceback.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "make system-test needs Debian's$$missing: apt-get install -y$$missing (as root; .ci/run does)"; \
	  exit 1; \
	fi

$(VENV)/.installed-system: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[system]' $(AIRFLOW)
	touch $@

# Benchmarks against the bundled sandbox (loopback only); sizes: `make bench BENCH_ARGS="--help"`.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Case 8 alone: 100,000 rows over overlapping runs with kills, pauses, SIGTERM and outages (seed printed).
bench-chaos: install
	$(BIN)/python -m bench.run --cases chaos $(BENCH_ARGS)

# Case 9: the README's DAG as typed, 100,000 rows, on one SQLite file, two files and PostgreSQL (its own).
bench-readme: install
	$(BIN)/python -m bench.readme_dag $(BENCH_ARGS)

# Case 10: the Juspay page at a year of history (8,760 runs, 10M ledger rows) on a PostgreSQL of its own.
bench-page: install
	$(BIN)/python -m bench.page $(BENCH_ARGS)

# Case 6: the sharded sync on a CeleryExecutor deployment (what system-test needs); --rows N.
bench-scaleout: system-deps $(VENV)/.installed-system
	$(BIN)/python -m bench.scaleout $(BENCH_ARGS)

# The wheel and sdist, and their metadata checked as PyPI would (CI runs this after the tests).
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DOCS_VENV) .pytest_cache build dist *.egg-info

# The documentation site (docs/): Sphinx with warnings as errors and every reference resolved.
# In its own virtualenv with only what the site needs (the docs extra), and the Airflow of `make test`'s
# .venv when there is one (else the newest pip resolves, as `make test` would now).
DOCS_VENV ?= .venv-docs
docs: $(DOCS_VENV)/.installed
	rm -rf docs/_build/html
	$(DOCS_VENV)/bin/python -m sphinx -b html -n -W --keep-going docs docs/_build/html
	@echo "open docs/_build/html/index.html"

$(DOCS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade pip
	airflow="$(AIRFLOW)"; \
	if [ -z "$$airflow" ] && [ -x $(BIN)/python ]; then \
	  airflow="apache-airflow==$$($(BIN)/python -c 'import airflow; print(airflow.__version__)')"; \
	fi; \
	echo "docs: installing .[docs] $$airflow into $(DOCS_VENV)"; \
	$(DOCS_VENV)/bin/python -m pip install --quiet -e '.[docs]' $$airflow
	$(DOCS_VENV)/bin/python -c "import airflow; print('Airflow', airflow.__version__, 'in $(DOCS_VENV)')"
	touch $@

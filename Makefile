# ingest-worker: `make run` runs the pipeline on embedded services, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export XDG_RUNTIME_DIR ?= /tmp

.PHONY: install run test lint typecheck unit integration e2e soak bench asyncapi schemas golden clean lock interop docs docs-gen browser screenshots

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ingest-worker dev

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The suite on TEST_WORKERS processes (pytest-xdist; each has its own embedded PostgreSQL and
# broker, and a test file stays on one process). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: lint typecheck docs
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP)
	$(VENV)/bin/pytest tests/e2e $(PYTEST_ARGS)

soak: $(STAMP)
	$(PY) -m tests.e2e.soak $(SOAK_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# Real tools against the real thing: promtool on the rules, a real Prometheus scraping
# `ingest-worker dev` (installs Debian's prometheus package when missing; needs root for that),
# a real Alertmanager delivering to the gateway (installs prometheus-alertmanager likewise).
interop: $(STAMP)
	$(PY) interop/prometheus.py
	$(PY) interop/alertmanager.py
	$(MAKE) browser

# The console in a real browser: Playwright driving Debian's chromium (installed when missing
# and root; Playwright cannot download its own browsers here). `make test` deselects these.
browser: $(STAMP)
	$(PY) interop/chromium.py
	$(VENV)/bin/pytest tests/console -m browser $(PYTEST_ARGS)

# docs/img/console-*.png from a seeded `ingest-worker dev` (ports as `make run`: stop it first).
screenshots: $(STAMP)
	$(PY) interop/screenshots.py

# Rewrite every tests/sources/<source>/<case>.expected.json from the mappers (review the diff).
golden: $(STAMP)
	-$(VENV)/bin/pytest tests/sources -q --force-regen
	$(VENV)/bin/pytest tests/sources -q

# The documentation site (MkDocs Material) into site/; --strict fails on a broken link or page.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

# Rewrite the generated pages (CLI and configuration references, source pages) from the code.
docs-gen: $(STAMP)
	$(PY) -m ingest_worker.service.docgen .

asyncapi: $(STAMP)
	$(VENV)/bin/ingest-worker asyncapi --output docs/asyncapi.json
	$(VENV)/bin/ingest-worker schemas --output-dir docs/schemas

# Re-resolve the pinned versions CI installs (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade "pip>=24" && .lock-venv/bin/pip install -q -e '.[dev,bench]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build site src/*.egg-info

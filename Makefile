# make run: serve on http://127.0.0.1:8080 with an embedded Redis. make test: run every test.
# make bench: python -m bench, which loads a bare handler and the service with wrk over loopback (needs /usr/bin/wrk:
# apt-get install wrk); prints a table of ratios to the bare handler and writes bench/results.json. A few minutes.
# make lock: regenerate requirements.txt and requirements-dev.txt from pyproject.toml, and package-lock.json from
# package.json (axe-core, for the accessibility tests), keeping every pin that still fits (run it
# after adding or bumping a dependency). make lock-upgrade: move every pin to the newest release. make test-latest: the suite
# against the newest releases, ignoring the locks (not run in CI: it shows drift before a lock bump has to deal with it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_LOCK := requirements.txt
DEV_LOCK := requirements-dev.txt
# The lock tool itself, pinned so that `make lock` is repeatable.
PIP_TOOLS := pip-tools==7.7.0 pip==26.3
COMPILE = $(LOCKER)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--build-deps-for wheel --no-emit-index-url --no-emit-find-links
LOCKER := .venv-lock
LATEST := .venv-latest

.PHONY: run test bench lock lock-upgrade test-latest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Each stamp records which lock the virtualenv holds; the project itself goes in editable, without
# build isolation, so its build backend (setuptools) also comes from the lock.
$(VENV)/.runtime: $(RUNTIME_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(RUNTIME_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(DEV_LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(VENV)/.runtime
	$(BIN)/python -m service

# axe-core for the accessibility tests, exactly as package-lock.json pins it (its integrity hash
# included). Without npm the tests that need it skip, and fail under CI=true.
node_modules/.stamp: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the accessibility tests will skip (apt-get install nodejs npm)"; fi

test: $(VENV)/.dev node_modules/.stamp
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(VENV)/.dev
	$(BIN)/python -m bench

lock: $(LOCKER)/bin/pip-compile
	$(COMPILE) -o $(RUNTIME_LOCK) pyproject.toml
	$(COMPILE) --extra test -c $(RUNTIME_LOCK) -o $(DEV_LOCK) pyproject.toml
	npm install --package-lock-only --ignore-scripts --no-audit --no-fund

lock-upgrade: $(LOCKER)/bin/pip-compile
	$(COMPILE) --upgrade -o $(RUNTIME_LOCK) pyproject.toml
	$(COMPILE) --upgrade --extra test -c $(RUNTIME_LOCK) -o $(DEV_LOCK) pyproject.toml

$(LOCKER)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCKER)
	$(LOCKER)/bin/pip install --quiet $(PIP_TOOLS)

test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	$(LATEST)/bin/pip install --quiet --upgrade -e '.[test]'
	$(LATEST)/bin/pip list --format=freeze
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(LOCKER) $(LATEST) *.egg-info node_modules

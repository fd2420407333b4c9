# make run: serve on http://127.0.0.1:8080 with an embedded Redis. make test: run every test.
# make bench: load a bare handler and the service with wrk over loopback (needs /usr/bin/wrk: apt-get install wrk);
# prints a table and writes bench/results.json. A few minutes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench user clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m service

test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) *.egg-info

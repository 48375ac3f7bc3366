# Two commands for a newcomer on a fresh machine:
#   make once   set up a virtualenv and run `soak once` on the embedded default
#               (mock providers + a real LiteLLM proxy, quick profile)
#   make test   set up (incl. Debian packages nginx, hey, wrk, prometheus) and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: once test lint system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[litellm,test,fast,dashboards]'
	touch $@

once: $(VENV)/.installed
	@$(BIN)/soak once || { code=$$?; echo "soak once exited $$code (1: an SLO was breached or the run failed," \
	  "2: usage or config error); the reports say which: soak-results/report.md" >&2; exit $$code; }

system-deps:
	bash ./scripts/install-system-deps.sh

test: $(VENV)/.installed system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest --durations=40

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist soak-results .pytest_cache

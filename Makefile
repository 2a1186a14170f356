# Markwise: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv demo run test lint format bench clean openapi

# The virtual environment is rebuilt whenever the dependencies change.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Migrate, seed the demo school, then serve the web app and a qcluster together.
demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "Markwise is starting on http://$(HOST):$(PORT)/  (Ctrl-C stops it)"
	@echo "Log in as teacher / markwise-demo, student / markwise-demo or admin / markwise-demo."
	@$(MAKE) --no-print-directory run

# Web server and task cluster; stopping one stops both.
run: $(STAMP)
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/python manage.py qcluster & \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# PYTEST_ARGS narrows the run, e.g. make test PYTEST_ARGS='-m "not llama"' skips the
# llama.cpp group (its first run builds llama-server: cmake and a C++ compiler, minutes).
test: lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest $(PYTEST_ARGS)

# The API's OpenAPI document, committed so that changes to it show in review; a test
# (tests/test_api_schema.py) fails when the code and docs/openapi.yaml disagree.
openapi: $(STAMP)
	$(BIN)/python manage.py spectacular --lang en --validate --fail-on-warn --file docs/openapi.yaml

bench: $(STAMP)
	$(BIN)/python bench/grading_throughput.py
	$(BIN)/python bench/multi_worker.py
	$(BIN)/python bench/deadline_rush.py
	$(BIN)/python bench/calibration.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles test-artifacts

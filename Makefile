# Two set-up commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the test suite needs: systemd-analyze verifies the units; mosquitto is the
# MQTT peer; chromium drives the browser tests; bash, curl, jq and bc are what the Akash
# provider's container gives its bid-price script, which the tests run with only those.
SYSTEM_PACKAGES := systemd mosquitto chromium chromium-driver curl jq bc

.PHONY: run test bench lint venv system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/sunrig demo --port 8080

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: $(VENV)/.installed-test system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test system-deps
	$(BIN)/python bench/run.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/agent.py
	$(BIN)/sunrig bench economics --scenario scenarios/owner-8gpu.toml
	$(BIN)/sunrig bench economics --scenario scenarios/seed-study-40gpu.toml

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

# Two set-up commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the test suite needs: systemd-analyze verifies the units; mosquitto is the
# MQTT peer; chromium drives the browser tests; bash, curl, jq and bc are what the Akash
# provider's container gives its bid-price script, which the tests run with only those;
# prometheus brings promtool, which checks what /metrics serves.
SYSTEM_PACKAGES := systemd mosquitto chromium chromium-driver curl jq bc prometheus
# `make run PORT=8090` when 8080 is taken
PORT ?= 8080

# The tests serve a tiny model through a real llama-cpp-python server. PyPI has only its source,
# so its wheel is built once, for the CPU, into a cache outside the checkout (which `make clean`
# leaves alone) and reused; its Python dependencies come with the test extra.
LLAMA_VERSION := 0.3.16
LLAMA_WHEEL_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sunrig/wheels
LLAMA_WHEEL := $(LLAMA_WHEEL_DIR)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF

.PHONY: run test bench bench-emhass lint venv system-deps clean llama-wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed | llama-wheel
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(LLAMA_WHEEL)
	touch $@

llama-wheel: | $(BIN)/python
	@if ! ls $(LLAMA_WHEEL) >/dev/null 2>&1; then \
	  echo "building llama-cpp-python once (about 25 minutes on two cores); later runs reuse it"; \
	  mkdir -p $(LLAMA_WHEEL_DIR) && CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q \
	    --no-deps -w $(LLAMA_WHEEL_DIR) 'llama-cpp-python==$(LLAMA_VERSION)'; \
	fi

venv: $(VENV)/.installed

run: $(VENV)/.installed
	MALLOC_ARENA_MAX=2 $(BIN)/sunrig demo --port $(PORT)

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
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/tee.py
	$(BIN)/sunrig bench economics --scenario scenarios/owner-8gpu.toml
	$(BIN)/sunrig bench economics --scenario scenarios/seed-study-40gpu.toml

# EMHASS beside the planner (bench/planner.py runs it when present): its own environment in the
# cache outside the checkout, never a dependency of sunrig nor of `make test`
EMHASS_VERSION := 0.18.7
EMHASS_VENV := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sunrig/emhass-venv

bench-emhass: $(VENV)/.installed-test
	@if ! $(EMHASS_VENV)/bin/python -c 'import emhass.optimization' 2>/dev/null; then \
	  echo "installing EMHASS $(EMHASS_VERSION) into $(EMHASS_VENV)"; \
	  $(PYTHON) -m venv $(EMHASS_VENV) && $(EMHASS_VENV)/bin/pip install -q --upgrade pip && \
	  $(EMHASS_VENV)/bin/pip install -q 'emhass==$(EMHASS_VERSION)'; \
	fi
	$(BIN)/python bench/planner.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

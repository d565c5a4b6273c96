# The two commands a fresh machine needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean
CHROMIUM := /usr/bin/chromium
SLURMCTLD := /usr/sbin/slurmctld
IPROUTE := /usr/sbin/tc

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.installed-base

# `make run PORT=9000 HOME_DIR=/tmp/baige-dev` picks the port and the data directory (default
# 8080 and ~/.baige). Only values given on make's command line count, not the environment's.
run_flag = $(if $(filter command line,$(origin $(1))),$(2) $($(1)))
run: $(VENV)/.installed-base
	$(BIN)/baige up --fake-nodes 2 $(call run_flag,PORT,--port) $(call run_flag,HOME_DIR,--home)

test: lint typecheck unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (Playwright's own download cannot work here).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "Chromium is missing: run 'sudo apt-get install chromium' for the browser tests"; fi

# The Slurm backend's tests start a real Slurm 22.05 on this machine (Debian's packages).
$(SLURMCTLD):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			slurm-wlm slurmd slurmctld slurm-client munge; \
	else echo "Slurm is missing: run 'sudo apt-get install slurm-wlm munge' for its tests"; fi

# `baige diagnose`'s test builds a network of namespaces shaped with tc (Debian's iproute2).
$(IPROUTE):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; \
	else echo "iproute2 is missing: run 'sudo apt-get install iproute2' for the network tests"; fi

unit: $(VENV)/.installed-test $(CHROMIUM) $(SLURMCTLD) $(IPROUTE)
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/sched_cycle.py
	$(BIN)/python bench/control_plane.py
	$(BIN)/python bench/console_pages.py
	$(BIN)/python bench/plan_search.py
	$(BIN)/python bench/ckpt_save.py --sizes 0.5 1
	$(BIN)/python bench/ckpt_gpu.py
	$(BIN)/python bench/sim_scale.py
	$(BIN)/python bench/runtime_faults.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

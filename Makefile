# nirdeploy: two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv (Python 3.10, pinned packages from requirements.lock) when it is missing.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.nirdeploy-installed
OUT   ?= demo_out

.PHONY: venv demo test test-ordered test-fast bench readme lock clean-venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  base=$$(scripts/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --upgrade "pip>=23" wheel; \
	$(PY) -m pip install --quiet -r requirements.lock; \
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .; \
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nirdeploy demo -o $(OUT)

# The suite runs shuffled (pytest-randomly) with a fixed seed, so that CI is reproducible and no
# test depends on running after another; `make test TEST_SEED=123` tries another order,
# `make test-ordered` runs the files in their own order.
TEST_SEED ?= 20261203

test: $(STAMP)
	$(PY) -m pytest -q -p randomly --randomly-seed=$(TEST_SEED) tests

test-ordered: $(STAMP)
	$(PY) -m pytest -q -p no:randomly tests

bench: $(STAMP)
	$(PY) -m benchmarks.run

# Regenerate README.md's supported-layers table by probing every pattern on every backend's code
# path (toolchain/reports/support.py; no Lava, a few seconds); tests/test_support_table.py fails
# when the README's table differs from what the code does now.
readme: $(STAMP)
	$(PY) -m toolchain.reports.support --write README.md

# Regenerate the lock file from the current venv (after changing pyproject.toml).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^nirdeploy' > requirements.lock

clean-venv:
	rm -rf $(VENV)

# The two README commands: `make demo` (a small meta-training run with its plots, on CPU)
# and `make test` (the test suite). Both create .venv and install the package first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export JAX_PLATFORMS ?= cpu
export METARL_COMPILATION_CACHE ?= $(CURDIR)/.jax_cache

.PHONY: install demo test test-all bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.train --algo=maml --env=point_corner --preset=demo --num_steps=100 \
		--seed=0 --logdir=$(DEMO_DIR)
	$(BIN)/python -m experiments.evaluate --logdir=$(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n 2 --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=25

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check metarl_jax experiments benchmarks tests

clean:
	rm -rf $(VENV) .jax_cache runs/demo

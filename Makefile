# The two README commands: `make demo` (a paper claim's smallest reproduction with its plots, on CPU)
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

# The smallest version of MAESN's Fig. 6 claim: MAESN (structured exploration) against MAML on
# sparse-reward point navigation, 3 seeds each as one program, verdict table and figures.
demo: $(STAMP)
	$(BIN)/python -m experiments.reproduce --claim=maesn_fig6 --scale=demo --out=$(DEMO_DIR) --quiet

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n 2 --dist=loadfile --durations=15

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist=loadfile --durations=25

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check metarl_jax experiments benchmarks tests

clean:
	rm -rf $(VENV) .jax_cache runs/demo

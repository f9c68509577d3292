# The two README commands: `make demo` (a paper claim's smallest reproduction with its plots, on CPU)
# and `make test` (the test suite). Both create .venv and install the package first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export JAX_PLATFORMS ?= cpu
export METARL_COMPILATION_CACHE ?= $(CURDIR)/.jax_cache

.PHONY: install demo test test-all bench gpu-wheels bench-gpu lint clean

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

# The GPU run-book (benchmarks/gpu_runbook.py, under 8 minutes on one GPU). A GPU machine with jax and
# CUDA lacks MuJoCo, MJX, brax and a few pure-Python packages; `make gpu-wheels`, on a machine with pip
# access, downloads them (the versions of this .venv) as CPython 3.12 manylinux wheels into .whl/ (git-ignored),
# which travels with the checkout; `make bench-gpu`, on the GPU machine, installs .whl/ with --no-index into
# /tmp/site and runs the run-book with the GPU's own python3 (no .venv there).
GPU_WHEELS := mujoco mujoco-core mujoco-studio glfw pyopengl mujoco-mjx trimesh brax jaxopt ml-collections \
	flask flask-cors itsdangerous blinker tensorboardX flashbax
GPU_PLATFORMS := $(foreach n,2_28 2_27 2_17,--platform manylinux_$(n)_x86_64) --platform manylinux2014_x86_64 \
	--platform manylinux1_x86_64
GPU_PYTHON ?= python3
# Where a remote GPU machine's results are collected, if set (e.g. a device tool's $OUT).
BENCH_GPU_COPY_TO ?= $(OUT)

gpu-wheels: $(STAMP)
	rm -rf .whl && mkdir -p .whl
	$(BIN)/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_PLATFORMS) -d .whl $$($(BIN)/python -c "import importlib.metadata as m; \
		print(' '.join(f'{n}=={m.version(n)}' for n in '$(GPU_WHEELS)'.split()))")

bench-gpu:
	@test -d .whl || { echo "bench-gpu: no .whl/ folder: run 'make gpu-wheels' where pip can reach PyPI, then carry .whl"; exit 1; }
	$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
	PYTHONPATH=/tmp/site:$(CURDIR) JAX_PLATFORMS= PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m benchmarks.gpu_runbook
	$(if $(BENCH_GPU_COPY_TO),cp benchmarks/RESULTS.md $$(ls -t benchmarks/results/*.json | head -1) $(BENCH_GPU_COPY_TO)/)

lint: $(STAMP)
	$(BIN)/ruff check metarl_jax experiments benchmarks tests

clean:
	rm -rf $(VENV) .jax_cache runs/demo

# keras_lincon: `make demo` runs the main job, `make test` the tests.
# Both set everything up first (system packages via apt when missing, .venv, pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
# One TensorFlow only: `probability` pulls `tensorflow` (through tf-keras); no tensorflow-cpu.
EXTRAS := cdd,probability,jax,projection,onnx,data,plots,tests
# PyPI's Linux x86_64 torch is a CUDA build of several GB, so make installs torch
# only from a CPU wheel found in pip's --find-links folders (or TORCH_WHEEL=path);
# without it the torch backend tests skip.
FIND_LINKS  ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
TORCH_WHEEL ?= $(firstword $(foreach d,$(FIND_LINKS),$(wildcard $(d)/torch-*+cpu-*.whl)))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-all lint bench wheel clean docs

$(STAMP): setup.cfg setup.py Makefile scripts/system_deps.sh scripts/check_one_tf.py
	bash scripts/system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# Older setups installed tensorflow-cpu beside tensorflow (one shared folder): remove both, reinstall one.
	@if $(PIP) show -q tensorflow-cpu >/dev/null 2>&1; then \
	  echo "Removing tensorflow-cpu and tensorflow (two TF distributions in one folder); reinstalling tensorflow"; \
	  $(PIP) uninstall -y -q tensorflow-cpu tensorflow; fi
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@if [ -n "$(TORCH_WHEEL)" ]; then $(PIP) install -q "$(TORCH_WHEEL)" || \
	  echo "note: could not install $(TORCH_WHEEL); torch backend tests will skip"; \
	else echo "note: no CPU torch wheel found (PyPI's is a multi-GB CUDA build); torch backend tests will skip"; fi
	$(BIN)/python scripts/check_one_tf.py
	touch $(STAMP)

setup: $(STAMP)

# A fresh folder per run: the CLI refuses to write into a non-empty one.
demo: setup
	$(BIN)/keras-lincon vae --out runs/vae-$$(date +%Y%m%d-%H%M%S)

# Lint, format and type check (ruff.toml, mypy.ini); `ruff format .` fixes formatting.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest exits 5 when it collects no test: make treats that as a failure.
# Line coverage of the library is printed at the end (files at 100% are left out).
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900 --cov=keras_lincon --cov-report=term:skip-covered

test-all: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=1800 -m ""

bench: setup
	$(BIN)/python benchmarks/generators.py
	$(BIN)/python benchmarks/layer.py
	$(BIN)/python benchmarks/inference.py

# The documentation site in build/site/ (docs/, mkdocs.yml): the benchmark figures from
# benchmarks/results/, then mkdocs with warnings as errors. Installs the `docs` extra when missing.
docs: setup
	$(BIN)/python -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || $(PIP) install -q -e ".[docs]"
	$(BIN)/python scripts/docs_benchmark_plots.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict
	@echo "site: build/site/index.html"

# sdist and wheel in dist/ (no compiler needed: the package is pure Python).
wheel: setup
	rm -rf dist build
	$(BIN)/python -m build -o dist .

clean:
	rm -rf $(VENV) build dist *.egg-info runs

# keras_lincon: `make demo` runs the main job, `make test` the tests.
# Both set everything up first (system packages via apt when missing, .venv, pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := tensorflow-cpu,probability,projection,tests
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-all bench clean

$(STAMP): setup.cfg setup.py scripts/system_deps.sh
	bash scripts/system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/keras-lincon vae

# pytest exits 5 when it collects no test: make treats that as a failure.
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900

test-all: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=1800 -m ""

bench: setup
	$(BIN)/python benchmarks/generators.py
	$(BIN)/python benchmarks/layer.py
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf $(VENV) build *.egg-info runs

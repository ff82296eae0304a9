# tlkit: `make demo` runs the main job, `make test` runs the tests. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tlkit-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install data demo test test-fast bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,onnx]"
	touch $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (no internet here for keras.datasets).
data:
	@if [ -f $(FMNIST) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	else \
	  echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (files under /usr/share/datasets/fashion-mnist)"; exit 1; \
	fi

demo: install data
	$(VENV)/bin/tlkit demo

test: install data
	$(PY) -m pytest -q

# everyday work: the suite without the modules that train for minutes (tests/conftest.py)
test-fast: install data
	$(PY) -m pytest -q -m "not slow"

bench: install data
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

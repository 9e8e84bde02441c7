# Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Use the local mirror of the datasets next to the checkout when there is one (CI sets it explicitly).
XLT_DATA_MIRROR ?= $(wildcard $(abspath ../shared/data))
export XLT_DATA_MIRROR
export XLT_DATA_DIR ?= $(abspath data)
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8
PYTEST_ARGS ?= -n 2 --dist loadfile
# Every extra is installed for the tests (hf: PyTorch peer and interop; tpu: libtpu for ahead-of-time TPU
# compiles; tfds: `tfds:` sources on a dataset built locally), and a test whose extra is missing fails
# instead of skipping.
EXTRAS ?= test,hf,tpu,tfds
export XLT_REQUIRE_EXTRAS ?= 1

.PHONY: install data demo test test-slow chaos bench lint clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

data: install
	$(PY) -m xlt_jax.data.download

demo: data
	$(PY) -m xlt_jax.demo --workdir runs/demo

test: data
	$(PY) -m pytest $(PYTEST_ARGS) -m "not slow" tests

test-slow: data
	$(PY) -m pytest $(PYTEST_ARGS) -m slow tests

# A longer hard-kill campaign: random-time SIGKILLs of pretraining (XLT_CHAOS_KILLS, XLT_CHAOS_SEED).
chaos: data
	XLT_CHAOS_KILLS=$${XLT_CHAOS_KILLS:-50} $(PY) -m pytest -s -m slow tests/test_chaos.py

bench: data
	$(PY) -m xlt_jax.bench data
	$(PY) -m xlt_jax.bench train

lint: install
	$(VENV)/bin/ruff check xlt_jax configs tests

clean:
	rm -rf $(VENV) runs

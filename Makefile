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

.PHONY: install data demo test bench lint clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

data: install
	$(PY) -m xlt_jax.data.download

demo: data
	$(PY) -m xlt_jax.demo --workdir runs/demo

test: data
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: data
	$(PY) -m xlt_jax.bench data
	$(PY) -m xlt_jax.bench train

lint: install
	$(VENV)/bin/ruff check xlt_jax configs tests

clean:
	rm -rf $(VENV) runs

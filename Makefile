# Everything runs inside ./.venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Use the local mirror of the datasets next to the checkout when there is one (CI sets it explicitly).
XLT_DATA_MIRROR ?= $(wildcard $(abspath ../shared/data))
export XLT_DATA_MIRROR
export XLT_DATA_DIR ?= $(abspath data)
PYTEST_ARGS ?= -n 2 --dist loadfile
# Every extra is installed for the tests (hf: PyTorch peer and interop; tpu: libtpu for ahead-of-time TPU
# compiles; tfds: `tfds:` sources on a dataset built locally; parse: UDPipe for syntax on parsed text), and
# a test whose extra is missing fails instead of skipping.
EXTRAS ?= test,hf,tpu,tfds,parse
export XLT_REQUIRE_EXTRAS ?= 1

# The tests shard over 8 fake CPU devices; demo, replicate and bench train on the one real CPU device (fake
# devices split every matmul 8 ways on 2 cores and add collectives).
test test-slow fuzz chaos: export XLA_FLAGS ?= --xla_force_host_platform_device_count=8

.PHONY: core install data demo replicate test test-slow fuzz chaos bench lint clean

# Two stages: the core packages (all that demo and replicate need: ~1 min on a fresh machine), then the extras
# (torch, libtpu, tensorflow-datasets, UDPipe, pytest: several minutes) for the tests, bench and lint.
$(VENV)/.core: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

core: $(VENV)/.core

install: $(VENV)/.installed

data: core
	$(PY) -m xlt_jax.data.download

demo: data
	$(PY) -m xlt_jax.demo --workdir runs/demo

# The paper's English findings at CPU scale (configs/experiments/replicate.py); rerunning continues.
replicate: data
	$(PY) -m xlt_jax.experiments.grid --config configs/experiments/replicate.py --workdir runs/replicate
	$(PY) -m xlt_jax.experiments.readme --sections replicate

test: data install
	$(PY) -m pytest $(PYTEST_ARGS) -m "not slow" tests

test-slow: data install
	$(PY) -m pytest $(PYTEST_ARGS) -m slow tests

# Hostile-input fuzzing: every reader, config string and transform spec on thousands of damaged real files
# (`make test` runs a deterministic sample of the same tests). The statistics give the cases run per test.
fuzz: data install
	$(PY) -m pytest $(PYTEST_ARGS) -m fuzz --hypothesis-profile=fuzz --hypothesis-show-statistics tests

# A longer hard-kill campaign: random-time SIGKILLs of pretraining (XLT_CHAOS_KILLS, XLT_CHAOS_SEED).
chaos: data install
	XLT_CHAOS_KILLS=$${XLT_CHAOS_KILLS:-50} $(PY) -m pytest -s -m slow tests/test_chaos.py

# Each benchmark's JSON line is kept in runs/bench/NAME.json; the README's performance tables come from them.
bench: data install
	mkdir -p runs/bench
	$(PY) -m xlt_jax.bench peer --layers unrolled | tee runs/bench/peer.log | tail -1 > runs/bench/peer.json
	XLT_HOST_ALLOCATOR=system $(PY) -m xlt_jax.bench peer --layers unrolled | tee runs/bench/peer_system.log | tail -1 > runs/bench/peer_system.json
	$(PY) -m xlt_jax.bench train --models roberta8 | tee runs/bench/train.log | tail -1 > runs/bench/train.json
	$(PY) -m xlt_jax.bench train --models roberta8 --seq-len 512 | tee runs/bench/train_512.log | tail -1 > runs/bench/train_512.json
	$(PY) -m xlt_jax.bench profile --layers unrolled | tee runs/bench/profile.log | tail -1 > runs/bench/profile.json
	for b in input tpu data; do $(PY) -m xlt_jax.bench $$b | tee runs/bench/$$b.log | tail -1 > runs/bench/$$b.json; done
	$(PY) -m xlt_jax.experiments.readme --sections performance

lint: install
	$(VENV)/bin/ruff check xlt_jax configs tests

clean:
	rm -rf $(VENV) runs

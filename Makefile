# One command for a newcomer on a fresh Linux machine: `make test` makes a virtual
# environment in .venv, installs fastgan with its test tools, runs the suite on the CPU
# (Triton kernels through Triton's interpreter), then builds the C++ sampler against
# the wheel's libtorch and runs its end-to-end ctest (needs cmake and a C++17 compiler).
PYTHON ?= python3
VENV ?= .venv
# Pinned: an open range pulls the newest (multi-GB CUDA) wheel.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BUILD ?= build
# Two jobs: CI machines (and this project's shared ones) have two cores.
JOBS ?= 2

.PHONY: install test native clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH)"
	$(PY) -m pip install -e ".[test]"
	# MovieLens-100K ships inside recbole; --no-deps: only its data files are read
	# (fastgan.recsys), none of its code or dependencies is needed.
	$(PY) -m pip install --no-deps recbole==1.2.1
	touch $@

test: install
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) native

# fastgan-sample (native/) and its ctest: export small generators, sample them from C++
# and from Python with the same seed and condition, compare.
native: install
	cmake -S . -B $(BUILD) -DFASTGAN_PYTHON=$(abspath $(PY))
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure

clean:
	rm -rf $(VENV) $(BUILD) *.egg-info .pytest_cache .hypothesis

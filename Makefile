# One command for a newcomer on a fresh Linux machine: `make test` makes a virtual
# environment in .venv, installs fastgan with its test tools, and runs the suite on
# the CPU (Triton kernels through Triton's interpreter).
PYTHON ?= python3
VENV ?= .venv
# Pinned: an open range pulls the newest (multi-GB CUDA) wheel.
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test clean

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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

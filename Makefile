# `make target=cpu` sets up .venv, runs the CPU chain and its benchmark; `make test` runs the tests.
# `make target=cpu-int8` calibrates, quantises, evaluates and benchmarks INT8.
PYTHON ?= python3
VENV ?= .venv
target ?= cpu
SHARED_DATA := ../shared/data/widerface-val-mini
DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
PY := $(VENV)/bin/python

.PHONY: run setup test clean
.DEFAULT_GOAL := run

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[export,test]'
	touch $@

setup: $(VENV)/.installed

# The chain (INT8 targets calibrate and quantise first), then the benchmark into the same run folder.
run: setup
	$(PY) -m toolkit run --target $(target) $(if $(DATA),--data $(DATA))
	$(PY) -m toolkit bench --target $(target) $(if $(DATA),--data $(DATA))

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf runs

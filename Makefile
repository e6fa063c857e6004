# `make target=cpu` sets up .venv, runs the CPU chain and its benchmark; `make test` runs the tests;
# `make serve target=cpu` serves the target's deployment over HTTP.
# `make target=cpu-int8` calibrates, quantises, evaluates and benchmarks INT8.
# Targets whose file says runs_in = "container" (Ascend, TensorRT) build their image and run in it;
# MODE=host|container overrides; MODE=emulate runs an Ascend or TensorRT target's numerics on this CPU (its
# AP, then its report row; no benchmark: an emulation's speed is the CPU's). Image builds take BASE_IMAGE=,
# EXTRA_CA_CERT= and INDEX_URL=.
PYTHON ?= python3
VENV ?= .venv
target ?= cpu
SHARED_DATA := ../shared/data/widerface-val-mini
DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
PY := $(VENV)/bin/python
MODE ?= auto
# runs_in from the target file, or from the file it extends
RUNS_IN := $(shell f=targets/$(target).toml; while [ -f "$$f" ]; do \
	r=$$(sed -n 's/^runs_in *= *"\([a-z]*\)".*/\1/p' "$$f"); [ -n "$$r" ] && { echo $$r; break; }; \
	b=$$(sed -n 's/^extends *= *"\([^"]*\)".*/\1/p' "$$f"); [ -n "$$b" ] || break; f=targets/$${b%.toml}.toml; done)
# the target's backend, when pyproject.toml has an extra of that name (openvino, tensorrt): `run` installs it
BACKEND := $(shell f=targets/$(target).toml; while [ -f "$$f" ]; do \
	r=$$(sed -n 's/^backend *= *"\([a-z]*\)".*/\1/p' "$$f"); [ -n "$$r" ] && { echo $$r; break; }; \
	b=$$(sed -n 's/^extends *= *"\([^"]*\)".*/\1/p' "$$f"); [ -n "$$b" ] || break; f=targets/$${b%.toml}.toml; done)
EXTRA := $(if $(BACKEND),$(shell grep -q '^$(BACKEND) = \[' pyproject.toml && echo $(VENV)/.extra-$(BACKEND)))
WHERE := $(if $(filter auto,$(MODE)),$(or $(RUNS_IN),host),$(MODE))
BUILD_OPTS := $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(if $(EXTRA_CA_CERT),--extra-ca-cert $(EXTRA_CA_CERT)) \
	$(if $(INDEX_URL),--index-url $(INDEX_URL))

.PHONY: run setup image serve test clean
.DEFAULT_GOAL := run

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[export,test]'
	touch $@

setup: $(VENV)/.installed

# An optional extra of pyproject.toml (ray, openvino), installed once.
$(VENV)/.extra-%: $(VENV)/.installed
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$*]'
	touch $@

# The chain (INT8 targets calibrate and quantise first), then the benchmark into the same run folder
# (an emulation: the target's report row instead).
run: setup $(EXTRA) $(if $(filter container,$(WHERE)),image)
	$(PY) -m toolkit run --target $(target) --mode $(WHERE) $(if $(DATA),--data $(DATA))
ifeq ($(WHERE),emulate)
	$(PY) -m toolkit report --target $(target)
else
	$(PY) -m toolkit bench --target $(target) --mode $(WHERE) $(if $(DATA),--data $(DATA))
endif

# The target's deployment as an HTTP service on 127.0.0.1:$(PORT) (its run folder converted first where needed;
# container targets in their image); Ctrl-C or SIGTERM drains it. ENGINE=ray: on Ray Serve.
PORT ?= 8080
ENGINE ?= local
serve: setup $(if $(filter ray,$(ENGINE)),$(VENV)/.extra-ray) $(EXTRA) $(if $(filter container,$(WHERE)),image)
	$(PY) -m toolkit serve --target $(target) --mode $(WHERE) --port $(PORT) --engine $(ENGINE) $(if $(DATA),--data $(DATA))

# The target's image; Docker's layer cache makes a rebuild with nothing changed take seconds.
image: setup
	$(PY) -m toolkit build --target $(target) $(BUILD_OPTS)

# The tests also run the Ray engine (2 local workers) and the openvino targets.
test: setup $(VENV)/.extra-ray $(VENV)/.extra-openvino
	$(PY) -m pytest -q -rs -p no:cacheprovider

clean:
	rm -rf runs

# Two entry points on a fresh machine:
#   make layer RECIPE=tf18    build dist/tf18/ (creates .venv on first use)
#   make test                 every test tier (unit, functional, integration)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RECIPE ?= tf18
BACKEND ?= auto
ARCH   ?=
BASE_IMAGE ?=

.PHONY: layer test unit bench recipes clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

layer: $(VENV)/.installed
	$(BIN)/layers build $(RECIPE) --backend $(BACKEND) $(if $(ARCH),--arch $(ARCH)) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

recipes: $(VENV)/.installed
	$(BIN)/layers recipes

test: $(VENV)/.installed
	$(BIN)/python -m pytest

unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit

bench: $(VENV)/.installed
	$(BIN)/python -m bench.build_bench
	$(BIN)/python -m bench.docker_bench
	$(BIN)/python -m bench.publish_bench
	$(BIN)/python -m bench.rebuild_bench
	$(BIN)/python -m bench.fit_bench
	$(BIN)/python -m bench.loadcheck_bench
	$(BIN)/python -m bench.pack_bench
	$(BIN)/python -m bench.emulation_bench

clean:
	rm -rf dist $(VENV) .pytest_cache

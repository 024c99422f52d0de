# Two entry points (see README): `make run` and `make test`. Everything else is set-up they share.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed
EXT := $(VENV)/.ext-built
export PYO3_PYTHON := $(abspath $(BIN)/python)
RUST_SOURCES := $(shell find rust -type f \( -name '*.rs' -o -name '*.py' -o -name Cargo.toml \)) Cargo.toml pyproject.toml

.PHONY: run test setup build lint typecheck cargo-test pytest bench clean

# About five minutes of self-play from the in-house base model on the CPU, in a fresh output
# folder each time: per-step validity and accuracy, held-out before -> after, curves.png.
RUN_DIR ?= runs/cpu-base-$(shell date +%Y%m%d-%H%M%S)
run: build
	$(BIN)/azr train --preset cpu-base --set run.output_dir=$(RUN_DIR)

test: build lint typecheck cargo-test pytest

setup: $(DEPS)

build: $(EXT)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS): requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements/dev.txt
	touch $@

# maturin develop compiles the extension and installs the package (editable) into .venv.
$(EXT): $(DEPS) $(RUST_SOURCES)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop --release --quiet
	touch $@

lint: $(DEPS)
	cargo fmt --all --check
	cargo clippy --all-targets --all-features --quiet -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches

# Type checks need the built extension (the stub is checked against it).
typecheck: build
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest azr._executor

cargo-test:
	cargo test --quiet

pytest: build
	$(BIN)/python -m pytest -q

bench: build
	$(BIN)/python benches/executor.py

clean:
	rm -rf $(VENV) target

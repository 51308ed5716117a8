# ibx: the two set-up commands are `make demo` and `make test`.
#
# `make demo` (and `make install`) install only what the product needs
# (`pip install -e .`); `make test` and the other development targets add the
# development tools (`.[dev]`: pytest, hypothesis, ruff, mypy, ...). Each
# stamp is remade when pyproject.toml changes; a development install also
# satisfies the product stamp, and a product install never the development one.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP     := $(VENV)/.installed-product
DEV_STAMP := $(VENV)/.installed-dev
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install install-dev demo console test test-slow lint format bench clean

$(STAMP): pyproject.toml
	@echo "ibx: installing the product into $(VENV); the first install takes a few minutes (TenSEAL, MPyC, OpenDP, ...)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	@touch $(STAMP)

$(DEV_STAMP): pyproject.toml
	@echo "ibx: installing the product and its development tools into $(VENV); the first install takes a few minutes"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	@touch $(DEV_STAMP) $(STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/python -m exchange.demo

# the web console on the world `make demo` left in .ibx-demo (its URL, the sign-in lines; Ctrl-C stops it)
console: $(STAMP)
	$(BIN)/python -m exchange.demo console

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

test-slow: $(DEV_STAMP)
	$(BIN)/python -m pytest -m slow

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) .ibx .ibx-demo .pytest_cache .mypy_cache .ruff_cache

# Each target creates/uses .venv itself: on a fresh machine `make demo` and `make test` are the whole set-up.
# pip keeps no wheel cache (--no-cache-dir): TensorFlow and JAX would otherwise take ~1.5 GB twice on disk.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg setup.py pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install lint test test-fast demo bench clean

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-cache-dir -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

LINTED := kerasrecon cli tests benchmarks scripts setup.py

# ruff (pinned in setup.cfg's dev extra): lint rules and formatting, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Full suite (notebooks included), one test file per worker process (pytest-xdist; module fixtures
# are built once); pytest exits 5 when it collects nothing, which fails make. The 15 slowest tests are
# listed at the end.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

# Unit tier: no training and no SavedModel, one test file per worker as in `test` (about 45 s on
# 2 cores); KERAS_BACKEND=jax runs it on JAX.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile -m "not slow"

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out bench_out

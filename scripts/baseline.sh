#!/usr/bin/env bash
# Baseline of the embedded SmolLM2-135M-Instruct (docs/baseline.md).
#   scripts/baseline.sh                 # every benchmark, one after the other
#   scripts/baseline.sh ifeval medmcqa  # only these
# Each benchmark writes its own report, so a partial run still leaves the finished ones.
# Multiple choice is scored by letter, cloze (acc, acc_norm) and circular letter log-likelihood on PyTorch;
# IFEval generates on the ONNX Runtime engine when an export of the model is cached (--engine auto).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BALANCEDBIO_DATA:-../shared/data}/benchmarks
OUT=${OUT:-docs/baseline}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MC="--modes loglik,cloze,circular"
declare -A ARGS=(
  # Samples only: 20 and 30 items cannot tell one model from another.
  [medqa]="--data $DATA/medqa_us_4options_test_sample20.jsonl $MC"
  [mmlu_medical]="--data $DATA/mmlu_medical_test_sample $MC"
  # PubMedQA's 500 test items (the reader keeps the test split of ori_pqal.json).
  [pubmedqa]="--data $DATA/ori_pqal.json $MC"
  # The fixed, seeded 1,000-item subset of MedMCQA dev that every later run scores.
  [medmcqa]="--data $DATA/medmcqa_dev.jsonl --ids docs/baseline/medmcqa_ids.txt $MC"
  [ifeval]="--data $DATA/ifeval_input_data.jsonl --max_new_tokens 256 --threads ${OMP_NUM_THREADS}"
)
mkdir -p "$OUT"
for name in "${@:-medmcqa pubmedqa medqa mmlu_medical ifeval}"; do
  for one in $name; do
    start=$(date +%s)
    # shellcheck disable=SC2086  # the arguments are meant to split
    $PY -m training.evaluate --model smollm2-135m --benchmark "$one" --out "$OUT/$one" ${ARGS[$one]}
    echo "$one: $(( $(date +%s) - start )) s wall for the whole command (OMP_NUM_THREADS=${OMP_NUM_THREADS}," \
         "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(date -u +%FT%TZ))" | tee -a "$OUT/wall_times.txt"
  done
done

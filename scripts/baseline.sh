#!/usr/bin/env bash
# Baseline of the embedded SmolLM2-135M-Instruct on the full benchmark files (docs/baseline.md).
# Each benchmark writes its own report, so a partial run still leaves the finished ones.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BALANCEDBIO_DATA:-../shared/data}/benchmarks
OUT=${OUT:-docs/baseline}
PY=${PY:-.venv/bin/python}
run() {  # name, then the evaluate arguments
  local name=$1; shift
  local start=$(date +%s)
  $PY -m training.evaluate --model smollm2-135m --benchmark "$name" --out "$OUT/$name" "$@"
  echo "$name: $(( $(date +%s) - start )) s wall for the whole command" | tee -a "$OUT/wall_times.txt"
}
mkdir -p "$OUT"
run medqa        --data "$DATA/medqa_us_4options_test_sample20.jsonl"
run mmlu_medical --data "$DATA/mmlu_medical_test_sample"
run pubmedqa     --data "$DATA/ori_pqal.json"
run ifeval       --data "$DATA/ifeval_input_data.jsonl" --max_new_tokens 512
run medmcqa      --data "$DATA/medmcqa_dev.jsonl"
$PY -m training.evaluate --compare "$OUT/medqa" "$OUT/mmlu_medical" "$OUT/pubmedqa" "$OUT/ifeval" "$OUT/medmcqa" > /dev/null || true

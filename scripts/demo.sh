#!/usr/bin/env bash
# The whole pipeline on the tiny offline model, on CPU, in a few minutes (run by `make demo`):
#   data build -> train tiny -> eval (aime24, amc23) -> cost summary -> report.
# Everything goes under $DEMO_DIR (default ./demo); rerunning replaces the demo's own outputs only.
set -euo pipefail
cd "$(dirname "$0")/.."
OPENRS=${OPENRS:-.venv/bin/openrs}
DEMO_DIR=${DEMO_DIR:-demo}
LIMIT=${DEMO_LIMIT:-5}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
SAMPLE=openrs_cli/evalsets/data/train-sample-deepscaler.jsonl

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/5 data: decontaminated training set from the bundled DeepScaleR sample"
$OPENRS data build custom --source "$SAMPLE" --out "$DEMO_DIR/data" --overwrite

step "2/5 train: GRPO on the tiny model through accelerate (CPU)"
$OPENRS train tiny "dataset.id=$DEMO_DIR/data" --run-dir "$DEMO_DIR/runs/tiny" --overwrite

step "3/5 eval: the trained model on aime24 and amc23 (first $LIMIT problems, 2 samples)"
$OPENRS eval --model "$DEMO_DIR/runs/tiny/final" --tasks aime24,amc23 --samples 2 --limit "$LIMIT" \
  --max-new-tokens 64 --label tiny-demo --out "$DEMO_DIR/eval"

step "4/5 cost: what the run used"
$OPENRS cost summary "$DEMO_DIR/runs/tiny"

step "5/5 report: the paper's tables and figures with the tiny run beside them"
$OPENRS report --results "$DEMO_DIR/eval" --runs "$DEMO_DIR/runs" --out "$DEMO_DIR/report"

printf '\nreport: %s\n' "$(realpath "$DEMO_DIR/report/report.html")"

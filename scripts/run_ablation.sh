#!/usr/bin/env bash
# The four-way ablation (PIPs++ baseline, +objectness, +attention, both) on a 2-core CPU.
#
#   bash scripts/run_ablation.sh [RUNS_DIR] [DATA_DIR]
#
# 1. one training set for all runs: DATA_DIR if it exists, else the procedural synthetic set
#    (48 train / 12 val / 12 test sequences, 24 frames, 144x176) generated there;
# 2. the four experiments with the reduced ':cpu' config (same steps, data, optimiser; only the
#    paper's additions differ), once per seed in SEEDS;
# 3. each run evaluated on EVAL_DATA/EVAL_SPLIT (PIPs++ protocol), plus the zero-motion baseline,
#    then the table (mean over seeds and each seed) from scripts/ablation_table.py.
# Environment: SEEDS="0 1" (default "0"), STEPS (default: the config's 600), EVAL_DATA (default
# DATA_DIR), EVAL_SPLIT (default test), EVAL_RESOLUTION (HxW; default: eval's own), PARALLEL=2
# (two runs at a time, each pinned to one core).
# Training resumes from a run's checkpoints and finished evaluations are kept, so re-running the
# script only redoes what is missing.
set -euo pipefail
RUNS=${1:-runs/ablation}
DATA=${2:-data/ablation}
PARALLEL=${PARALLEL:-2}
SEEDS=${SEEDS:-0}
STEPS=${STEPS:-}
EVAL_DATA=${EVAL_DATA:-$DATA}
EVAL_SPLIT=${EVAL_SPLIT:-test}
EVAL_RESOLUTION=${EVAL_RESOLUTION:-}
EXPERIMENTS=(pips2_baseline ablation_objectness_only ablation_attention_only objprior)
mkdir -p "$RUNS"
[ -d "$DATA/train" ] || objtrack synth --out "$DATA" --num-seqs 48 --frames 24 --size 144x176 --seed 0

train() {
  local exp=$1 seed=$2 core=$3
  local pin=() extra=()
  if (( PARALLEL > 1 )) && command -v taskset > /dev/null; then pin=(taskset -c "$core"); fi
  if [ -n "$STEPS" ]; then extra=(--config.max_steps="$STEPS"); fi
  "${pin[@]}" objtrack train --config "configs/$exp.py:cpu" --workdir "$RUNS/${exp}_s$seed" \
    --config.data.root="$DATA" --config.seed="$seed" --config.progress_bar=False "${extra[@]}" \
    > "$RUNS/${exp}_s$seed.log" 2>&1
  echo "trained $exp seed $seed"
}
i=0
for seed in $SEEDS; do
  for exp in "${EXPERIMENTS[@]}"; do
    train "$exp" "$seed" $((i % PARALLEL)) &
    i=$((i + 1))
    if (( i % PARALLEL == 0 )); then wait; fi
  done
done
wait

EVAL=(--dataset synthetic --data-root "$EVAL_DATA" --split "$EVAL_SPLIT" --window 8 --iters 4 --no-progress)
if [ -n "$EVAL_RESOLUTION" ]; then EVAL+=(--resolution "$EVAL_RESOLUTION"); fi
[ -f "$RUNS/zero_motion.json" ] || objtrack eval "${EVAL[@]}" --baseline zero --out "$RUNS/zero_motion.json" | tail -n 3
for seed in $SEEDS; do
  for exp in "${EXPERIMENTS[@]}"; do
    out="$RUNS/${exp}_s$seed.json"
    [ -f "$out" ] || objtrack eval "${EVAL[@]}" --checkpoint "$RUNS/${exp}_s$seed" --out "$out" | tail -n 3
  done
done
python3 scripts/ablation_table.py "$RUNS"

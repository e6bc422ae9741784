#!/usr/bin/env bash
# Reproduces the README ablation and the shipped weights on a 2-core CPU (about 10 min per run).
#
#   bash scripts/run_ablation.sh [RUNS_DIR] [DATA_DIR]
#
# 1. one synthetic dataset for all runs (48 train / 12 val / 12 test sequences, 24 frames, 144x176);
# 2. the four experiments with the reduced ':cpu' config (same steps, data, optimiser, seed);
# 3. each run evaluated on the held-out test split (PIPs++ protocol), plus the zero-motion baseline.
# PARALLEL=2 (default) trains two runs at a time, each pinned to one core (taskset).
# Training resumes from a run's checkpoints, so re-running the script only redoes what is missing.
set -euo pipefail
RUNS=${1:-runs/ablation}
DATA=${2:-data/ablation}
PARALLEL=${PARALLEL:-2}
EXPERIMENTS=(pips2_baseline ablation_objectness_only ablation_attention_only objprior)
mkdir -p "$RUNS"
[ -d "$DATA/test" ] || objtrack synth --out "$DATA" --num-seqs 48 --frames 24 --size 144x176 --seed 0

train() {
  local exp=$1 core=$2
  local pin=()
  if (( PARALLEL > 1 )) && command -v taskset > /dev/null; then pin=(taskset -c "$core"); fi
  "${pin[@]}" objtrack train --config "configs/$exp.py:cpu" --workdir "$RUNS/$exp" \
    --config.data.root="$DATA" --config.progress_bar=False > "$RUNS/$exp.log" 2>&1
  echo "trained $exp"
}
i=0
for exp in "${EXPERIMENTS[@]}"; do
  train "$exp" $((i % PARALLEL)) &
  i=$((i + 1))
  if (( i % PARALLEL == 0 )); then wait; fi
done
wait

EVAL=(--dataset synthetic --data-root "$DATA" --split test --window 8 --iters 4 --no-progress)
objtrack eval "${EVAL[@]}" --baseline zero --out "$RUNS/zero_motion.json" | tail -n 3
for exp in "${EXPERIMENTS[@]}"; do
  objtrack eval "${EVAL[@]}" --checkpoint "$RUNS/$exp" --out "$RUNS/$exp.json" | tail -n 3
done
python3 scripts/ablation_table.py "$RUNS"

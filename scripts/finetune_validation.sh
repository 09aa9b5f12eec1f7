#!/usr/bin/env bash
# Choose singlecoil-r4's template fine-tuning without the evaluated slices (docs/results.md, "The
# fine-tuning chosen on validation data"). For each seed: a 4000-step base on the real training volumes,
# then three fine-tunings with the demo template (1000 steps lr 3e-4, 500 steps lr 3e-4, 1000 steps
# lr 1e-4). Validation runs train on the template's slices 0-35 only (its first 48 slices prepared
# alone, --val-fraction 0.25) and are scored on slices 36-47 and on the real training set's held-out
# volume; final runs train on slices 0-47 and are scored on the held-out real MR and slices 48-59.
# Every fit runs at once (one GPU takes them all: 5-cascade steps take 0.02-0.03 s on an H200 with
# KERAS_BACKEND=jax; on a 2-core CPU run SEEDS=0 and expect hours).
# Needs real_train_noisy and real_eval_noisy as scripts/pretrained.sh prepares them, in WORK_DIR.
# Usage: [SEEDS="0 1 2"] [BIN=.venv/bin] bash scripts/finetune_validation.sh [WORK_DIR]
#   (SCALE=N divides every step count by N: a quick check that the script runs.)
set -euo pipefail
ROOT=$(pwd)
BIN=${BIN:-$ROOT/.venv/bin}
K=$BIN/kerasrecon
SEEDS=${SEEDS:-"0 1 2"}
SCALE=${SCALE:-1}
W=${1:-pretrained_out}
cd "$W"
[ -d demo_noisy ] || $K data prepare demo demo_noisy --phase smooth --noise 0.01 --sim-seed 0
if [ ! -d demo48_noisy ]; then
  "$BIN/python" -c "import numpy as np; from kerasrecon.data.demo import demo_images; \
    np.save('demo48.npy', demo_images()[:48])"
  $K data prepare demo48.npy demo48_noisy --phase smooth --noise 0.01 --sim-seed 0
fi
mkdir -p ftval
F="--config pretrained:singlecoil-r4 --data real_train_noisy --precision float32 --log-every 250"
for s in $SEEDS; do
  [ -d ftval/base$s ] || $K fit $F --pretrain-steps $((4000 / SCALE)) --seed "$s" --out ftval/base$s > ftval/log_base$s.txt 2>&1 &
done
wait
opts() { case $1 in a) echo "--pretrain-steps $((1000 / SCALE)) --lr 3e-4" ;; b) echo "--pretrain-steps $((500 / SCALE)) --lr 3e-4" ;;
  c) echo "--pretrain-steps $((1000 / SCALE)) --lr 1e-4" ;; esac; }
for s in $SEEDS; do
  for v in a b c; do
    ft="$F --init-from ftval/base$s --seed $s $(opts $v) --checkpoint-every $((1000 / SCALE))"
    [ -d ftval/val_$v$s ] || $K fit $ft --extra-data demo48_noisy --val-fraction 0.25 --out ftval/val_$v$s \
      > ftval/log_val_$v$s.txt 2>&1 &
    [ -d ftval/fin_$v$s ] || $K fit $ft --extra-data demo_noisy --out ftval/fin_$v$s > ftval/log_fin_$v$s.txt 2>&1 &
  done
done
wait
# The first run of a comparison is named after its loss (mse: val_a0, fin_a0), the others after their
# directories.
C="compare --baselines zero_filled --no-figures --force"
$K $C ftval/val_* --data real_train_noisy --split val --out ftval/cmp_val_real > /dev/null
$K $C ftval/val_* --data demo48_noisy --split val --val-fraction 0.25 --out ftval/cmp_val_template > /dev/null
$K $C ftval/fin_* --data real_eval_noisy --split all --ensemble 8 --out ftval/cmp_real8 > /dev/null
$K $C ftval/fin_* --data demo_noisy --split val --ensemble 8 --out ftval/cmp_template8 > /dev/null
for c in cmp_val_real cmp_val_template cmp_real8 cmp_template8; do echo "== $c"; sed -n '3,20p' ftval/$c/table.md; done

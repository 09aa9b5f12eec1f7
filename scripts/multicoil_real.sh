#!/usr/bin/env bash
# Multi-coil on real MR of other anatomies (README "Multi-coil ... other anatomies"):
#   the real volumes of scripts/cs_comparison.sh measured through 8 simulated coils (smooth phase,
#   noise 0.005 per coil, ACS maps from the simulated data), R = 4 2-D Poisson, mask seed 0, seed 0.
#   Models train on the brain EPI/DWI volumes; the 13 slices of other anatomies are evaluated;
#   SENSE-TV's λ is swept on training slices only.
# Needs: the real set (WORK_DIR/real, written by scripts/cs_comparison.sh or scripts/real_mr_set.py);
#   for the first comparison also the demo runs of scripts/multicoil_demo.sh (MC_OUT, default multicoil_out).
# Usage: bash scripts/multicoil_real.sh [WORK_DIR]     (default cs_out/, git-ignored)
set -euo pipefail
BIN=${BIN:-$(pwd)/.venv/bin}
K=$BIN/kerasrecon
MC=$(realpath -m "${MC_OUT:-multicoil_out}")
W=${1:-cs_out}
cd "$W"
[ -d real ] || "$BIN/python" "$OLDPWD/scripts/real_mr_set.py" real
SIM="--coils 8 --phase smooth --noise 0.005 --coil-maps acs --acs-lines 24"
for part in train eval; do
  [ -d mc_real_$part ] || $K data prepare real/$part mc_real_$part $SIM
done
cmp() { out=$1; shift; $K compare "$@" --data mc_real_eval --split all --baselines tv --no-figures --force \
          --out "$out" > "$out.log" 2>&1; echo "== $out"; sed -n '1,8p' "$out/table.md"; }

# 1. The demo's models (trained on the embedded template only), λ swept on the template's training slices.
for M in poisson random; do
  [ -d "$MC/run_$M" ] && cmp mc_real_demo_$M "$MC/run_$M" --baseline-tune-data "$MC/data"
done

# 2. Trained on the real EPI/DWI volumes: whole-slice windows (DC off in training) vs own-grid patches
#    (multi-coil DC in training); same steps, sizes and masks otherwise.
COMMON="--data mc_real_train --loss mse --mask poisson -R 4 --seed 0 --patch-size 64 --batch-size 4 --blocks 4
        --filters 32 --cascades 2 --mask-per-sample --lr 1e-3 --lr-schedule cosine --pretrain-steps 3000 --steps 0
        --checkpoint-every 500 --log-every 100 --vgg-weights none --precision float32"
mkdir -p runs
for S in slice patch; do
  t0=$SECONDS; $K fit $COMMON --sampling $S --out runs/MC4_$S --force > fit_MC4_$S.log 2>&1
  echo "MC4_$S: $((SECONDS - t0)) s" | tee -a fit_times.txt
done
# Factor: the single-coil R = 4 recipe's patch size and length (48x48, 5000 steps; flags given later win).
t0=$SECONDS; $K fit $COMMON --sampling patch --patch-size 48 --pretrain-steps 5000 --out runs/MC4_patch48 --force \
  > fit_MC4_patch48.log 2>&1; echo "MC4_patch48: $((SECONDS - t0)) s" | tee -a fit_times.txt
cmp mc_real_R4 runs/MC4_patch runs/MC4_slice runs/MC4_patch48 --baseline-tune-data mc_real_train

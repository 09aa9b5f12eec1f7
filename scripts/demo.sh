#!/usr/bin/env bash
# `make demo`: the main job on the embedded real-MR demo set (60 axial T1 brain slices), small enough
# for 2 CPU cores. Writes everything under demo_out/ (git-ignored); re-running resumes/overwrites nothing.
set -euo pipefail
BIN=.venv/bin
OUT=${DEMO_OUT:-demo_out}
mkdir -p "$OUT"
echo "== masks at R = 4, 6, 8 (444×448, seed 0)"
for R in 4 6 8; do
  [ -e "$OUT/mask_R$R.png" ] || $BIN/kerasrecon mask --kind poisson --acceleration $R --shape 444 448 --seed 0 --out "$OUT/mask_R$R.png"
done

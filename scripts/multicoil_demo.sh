#!/usr/bin/env bash
# Multi-coil demo measurement: 8 simulated coils, smooth phase, noise 0.005 per coil.
set -euo pipefail
B=.venv/bin/kerasrecon
O=${MC_OUT:-multicoil_out}
mkdir -p $O
[ -e $O/data/manifest.json ] || $B data prepare demo $O/data --coils 8 --phase smooth --noise 0.005 --coil-maps acs --acs-lines 24
for M in poisson random; do
  R=$O/run_$M
  /usr/bin/time -f "fit $M %e s" $B fit --data $O/data --loss mse --mask $M --acceleration 4 --seed 0 --sampling slice \
    --patch-size 64 --batch-size 8 --blocks 4 --filters 32 --cascades 2 --mask-per-sample --lr 1e-3 --lr-schedule cosine \
    --pretrain-steps 1200 --steps 0 --checkpoint-every 400 --log-every 100 --precision float32 --out $R --force
  $B compare $R --baselines tv --out $O/eval_$M --force --no-figures
done

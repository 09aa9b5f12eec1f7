#!/usr/bin/env bash
# Retrain the pretrained models shipped in kerasrecon/pretrained/ from scratch, measure each against
# converged classical baselines, and write its files, card and registry entry.
#   singlecoil-r4, singlecoil-r8: real brain EPI/DWI volumes (scripts/real_mr_set.py), realistic
#     simulation (smooth random phase, complex k-space noise σ = 1 % of the peak), 2-D Poisson masks.
#   multicoil-r4: the same volumes through 8 simulated birdcage coils (noise 0.5 %), maps from 24 ACS
#     columns, multi-coil data consistency in training; fine-tuned with the demo template's training
#     slices through the same coils (its last 12 slices, the demo table's, are never trained on).
# singlecoil-r4 and multicoil-r4: MSE only, cascades of 4 blocks × 32 filters (singlecoil-r4: 6 cascades;
# multicoil-r4: 4 cascades sharing one set of weights), batch 4, a new mask per sample, Adam 1e-3 with
# cosine decay, seed 0; singlecoil-r4 (5000 steps, in bfloat16: --precision mixed_bfloat16, 0.71× the float32
# time on a CPU with AVX512_BF16 or AMX, at the same quality; docs/training.md) is then fine-tuned for 1000 steps at 3e-4 on 72×72 patches with the demo
# template's training slices added (--extra-data); multicoil-r4 is then fine-tuned for 500 steps with MoDL's conjugate-gradient data
# consistency (--cg-iters 5 --init-from), the demo template's training slices added (--extra-data). singlecoil-r8: plug-and-play from converged TV with a bias-free
# U-Net denoiser (kerasrecon.pnp, scripts/pnp.py), 6000 MSE steps of batch 16, seed 1. 19–29 min each on a
# 2-core CPU beside other jobs (fit_times.txt).
# Scored on held-out real MR of other anatomies (shoulder, abdomen, 3 T T1 head slices, T1 coronal brain) and on
# the demo template's 12 held-out slices, beside zero-filling and TV / SENSE-TV run to convergence
# with λ swept on training slices only.
# Needs once: pip install nibabel dipy pydicom-data   (the real images ship inside these packages).
# Usage: bash scripts/pretrained.sh [WORK_DIR]   (default pretrained_out/, git-ignored); then
#        review WORK_DIR/*/table.md and commit kerasrecon/pretrained/.
set -euo pipefail
ROOT=$(pwd)
BIN=${BIN:-$ROOT/.venv/bin}
K=$BIN/kerasrecon
W=${1:-pretrained_out}
mkdir -p "$W" && cd "$W"

[ -d real ] || "$BIN/python" "$ROOT/scripts/real_mr_set.py" real
for part in train eval; do
  [ -d real_${part}_noisy ] || $K data prepare real/$part real_${part}_noisy --phase smooth --noise 0.01 --sim-seed 0
  [ -d mc_real_$part ] || $K data prepare real/$part mc_real_$part --coils 8 --phase smooth --noise 0.005 \
    --coil-maps acs --acs-lines 24 --sim-seed 0
done
[ -d demo_noisy ] || $K data prepare demo demo_noisy --phase smooth --noise 0.01 --sim-seed 0
[ -d mc_demo ] || $K data prepare demo mc_demo --coils 8 --phase smooth --noise 0.005 --coil-maps acs --acs-lines 24 \
  --sim-seed 0

COMMON="--loss mse --mask poisson --blocks 4 --filters 32 --batch-size 4 --mask-per-sample
        --steps 0 --lr 1e-3 --lr-schedule cosine --checkpoint-every 500 --log-every 100 --vgg-weights none
        --seed 0 --sampling patch"
mkdir -p runs
fit() { name=$1; shift; local t0=$SECONDS; $K fit $COMMON "$@" --out runs/$name > fit_$name.log 2>&1
        echo "$name: $((SECONDS - t0)) s" | tee -a fit_times.txt; }
[ -d runs/singlecoil-r4-base ] || fit singlecoil-r4-base --data real_train_noisy -R 4 --patch-size 64 --pretrain-steps 5000 \
    --augment --cascades 6 --precision mixed_bfloat16
# singlecoil-r4: that model fine-tuned for 1000 steps at a 3e-4 cosine learning rate on the real volumes and the
# demo template's training slices (--extra-data demo_noisy; its last 12 slices, the demo table's, are never
# trained on). 1000 steps at 3e-4 beat 500 steps and a 1e-4 rate on validation data, for three seeds
# (scripts/finetune_validation.sh: the template's slices 36-47 held out of training, and the real set's
# held-out volume). Its 72×72 patches (1.27× the pixels of the base's 64×64) beat 64×64 on the held-out
# volume, ×8: 38.62 against 38.54 dB; adding the template at half resolution (demo_half) lost (38.35).
[ -d runs/singlecoil-r4 ] || fit singlecoil-r4 --data real_train_noisy --extra-data demo_noisy -R 4 --patch-size 72 \
    --pretrain-steps 1000 --lr 3e-4 --checkpoint-every 250 --log-every 50 --augment --cascades 6 \
    --precision mixed_bfloat16 --init-from runs/singlecoil-r4-base
[ -d runs/multicoil-r4-base ] || fit multicoil-r4-base --data mc_real_train -R 4 --patch-size 64 --pretrain-steps 3000 \
    --precision float32 --augment --cascades 4 --share-weights
# multicoil-r4: that model fine-tuned with MoDL's data consistency (--cg-iters 5: each cascade solves the
# SENSE problem argmin ‖Ax − y‖² + μ‖x − z‖² by 5 conjugate-gradient iterations, μ learned per cascade),
# 500 steps at a 3e-4 cosine learning rate, on the real volumes and the demo template's training slices
# (--extra-data mc_demo: 48 slices of 370×301 beside the real set's 48 of 128×128, each slice equally likely).
[ -d runs/multicoil-r4 ] || fit multicoil-r4 --data mc_real_train --extra-data mc_demo -R 4 --patch-size 64 \
    --pretrain-steps 500 --lr 3e-4 --checkpoint-every 250 --log-every 50 --precision float32 --augment --cascades 4 \
    --share-weights --cg-iters 5 --init-from runs/multicoil-r4-base
# singlecoil-r8: plug-and-play from converged TV (kerasrecon.pnp). The denoiser also trains on the demo
# template, at full and at half resolution (scripts/pnp.py's docstring); scripts/pnp.py chooses the
# solver's settings on the held-out EPI volume and writes the run with them to pnp_r8/model.
if [ ! -d demo_half ]; then
  "$BIN/python" -c "import numpy as np; from kerasrecon.data.demo import demo_images; \
    np.save('demo_half.npy', demo_images()[:, :370, :300].reshape(60, 185, 2, 150, 2).mean((2, 4)))"
  $K data prepare demo_half.npy demo_half --phase smooth --noise 0.01 --sim-seed 0
fi
if [ ! -d runs/singlecoil-r8 ]; then
  "$BIN/python" "$ROOT/scripts/pnp.py" pnp_r8 --train real_train_noisy --train demo_noisy --train demo_half \
    --eval real_eval_noisy --steps 6000 --seed 1 > fit_singlecoil-r8.log 2>&1
  echo "singlecoil-r8: $(sed -n 's/^trained .* in \([0-9]*\) s$/\1/p' fit_singlecoil-r8.log) s" | tee -a fit_times.txt
  cp -r pnp_r8/model runs/singlecoil-r8
fi

# Converged baselines (the default stopping rule), λ swept on the training split of a dataset of the
# same simulation; the evaluated slices are never used for tuning.
cmp() { out=$1; shift; $K compare "$@" --baselines tv --no-figures --force --out "$out" > "$out.log" 2>&1
        echo "== $out"; sed -n '1,14p' "$out/table.md"; }
for R in 4 8; do
  cmp real_r$R runs/singlecoil-r$R --data real_eval_noisy --split all --baseline-tune-data real_train_noisy
  cmp demo_r$R runs/singlecoil-r$R --data demo_noisy --split val --baseline-tune-data demo_noisy
done
cmp mc_real_r4 runs/multicoil-r4 --data mc_real_eval --split all --baseline-tune-data mc_real_train

# The same comparisons with self-ensemble ×8 (mirrored/transposed acquisitions averaged), TV at the
# λ the sweeps above chose.
lam() { "$BIN/python" -c "import json; print(json.load(open('$1/summary.json'))['meta']['baselines']['tv']['lam'])"; }
for R in 4 8; do
  cmp real_r${R}_ens8 runs/singlecoil-r$R --data real_eval_noisy --split all --baseline-lambdas "$(lam real_r$R)" --ensemble 8
done
# singlecoil-r4 leads TV on the demo template with its self-ensemble: that table too.
cmp demo_r4_ens8 runs/singlecoil-r4 --data demo_noisy --split val --baseline-lambdas "$(lam demo_r4)" --ensemble 8
cmp mc_real_r4_ens8 runs/multicoil-r4 --data mc_real_eval --split all --baseline-lambdas "$(lam mc_real_r4)" --ensemble 8
# The demo template through 8 coils: SENSE-TV at the λ of the real-MR sweep (about 140 s per 370×301
# slice on 2 cores, so a sweep on the template's training slices would take hours).
cmp mc_demo_r4 runs/multicoil-r4 --data mc_demo --split val --baseline-lambdas "$(lam mc_real_r4)"

# Factor: a learned data-consistency step per cascade (--learned-dc; 2 cascades, 5000 steps on the real
# volumes alone), beside the shipped model on the same slices, masks and TV λ. Since 0.15 the shipped
# model's last 1000 steps include the demo template; runs/singlecoil-r4-base is its real-only start.
[ -d runs/singlecoil-r4-ldc ] || fit singlecoil-r4-ldc --data real_train_noisy -R 4 --patch-size 64 --pretrain-steps 5000 --augment --cascades 2 --learned-dc
cmp ldc_r4 runs/singlecoil-r4 runs/singlecoil-r4-ldc --data real_eval_noisy --split all --baseline-lambdas "$(lam real_r4)"

for name in singlecoil-r4 singlecoil-r8 multicoil-r4; do
  R=${name##*-r}; tables=(real_r$R/table.md real_r${R}_ens8/table.md demo_r$R/table.md)
  [ "$name" = singlecoil-r4 ] && tables+=(demo_r4_ens8/table.md)
  [ "$name" = multicoil-r4 ] && tables=(mc_real_r4/table.md mc_real_r4_ens8/table.md mc_demo_r4/table.md)
  "$BIN/python" "$ROOT/scripts/package_pretrained.py" runs/$name "$name" --fit-log fit_times.txt \
    --tables "${tables[@]}"
done

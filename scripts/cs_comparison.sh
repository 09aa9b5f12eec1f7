#!/usr/bin/env bash
# kerasrecon vs compressed sensing: the README's "Results against compressed sensing".
#   real MR of other anatomies/scanners (scripts/real_mr_set.py) and the demo template,
#   noise-free and realistic (smooth random phase + complex k-space noise σ = 1 % of the peak),
#   R = 4 and R = 8, 2-D Poisson masks, mask seed 0, training seed 0.
# Training budget: each model ≤ 30 min on the 2-core CPU machine (times are printed).
# Needs once: pip install nibabel dipy pydicom-data (the real images ship inside these packages).
# Usage: bash scripts/cs_comparison.sh [WORK_DIR]     (default cs_out/, git-ignored)
set -euo pipefail
BIN=${BIN:-$(pwd)/.venv/bin}
K=$BIN/kerasrecon
W=${1:-cs_out}
mkdir -p "$W" && cd "$W"

[ -d real ] || "$BIN/python" "$OLDPWD/scripts/real_mr_set.py" real
for part in train eval; do
  [ -d real_${part}_clean ] || $K data prepare real/$part real_${part}_clean
  [ -d real_${part}_noisy ] || $K data prepare real/$part real_${part}_noisy --phase smooth --noise 0.01 --sim-seed 0
done
[ -d demo_noisy ] || $K data prepare demo demo_noisy --phase smooth --noise 0.01 --sim-seed 0

# Models: MSE only (no GAN steps), 4 blocks × 32 filters per stage, batch 4, Adam 1e-3 with cosine
# decay, trained on the realistic brain EPI/DWI volumes (128×128); whole volumes held out.
COMMON="--data real_train_noisy --loss mse --blocks 4 --filters 32 --batch-size 4 --steps 0 --lr 1e-3
        --lr-schedule cosine --checkpoint-every 100 --log-every 20 --vgg-weights none --seed 0 --mask poisson"
fit() { name=$1; shift; local t0=$SECONDS; $K fit $COMMON "$@" --out runs/$name > fit_$name.log 2>&1
        echo "$name: $((SECONDS - t0)) s" | tee -a fit_times.txt; }
mkdir -p runs
fit P4L --sampling patch --patch-size 48 --cascades 2 --mask-per-sample --pretrain-steps 5000 -R 4  # best, R = 4
fit P8L --sampling patch --patch-size 48 --cascades 2 --mask-per-sample --pretrain-steps 5000 -R 8
fit P8W --sampling patch --patch-size 64 --cascades 2 --mask-per-sample --pretrain-steps 5000 -R 8  # best, R = 8
fit P8X --sampling patch --patch-size 48 --cascades 2 --mask-per-sample --pretrain-steps 10000 -R 8 # factor: steps
fit A4 --sampling slice --patch-size 128 --cascades 3 --pretrain-steps 1200 -R 4   # whole slices, 3 cascades
fit B8 --sampling slice --patch-size 128 --cascades 3 --pretrain-steps 1200 -R 8   # same, R = 8
fit C4 --sampling slice --patch-size 128 --cascades 1 --pretrain-steps 1200 -R 4   # factor: cascades
fit P4 --sampling patch --patch-size 48  --cascades 1 --pretrain-steps 1200 -R 4   # factor: patches vs slices

# λ of TV / L1-wavelet: swept on the training split of a dataset with the evaluated condition.
cmp() { out=$1; shift; $K compare "$@" --baselines tv,l1wavelet --no-figures --force --out "$out" > "$out.log" 2>&1
        echo "== $out"; sed -n '1,12p' "$out/table.md"; }
cmp real_noisy_R4 runs/P4L runs/P4 runs/A4 runs/C4 --data real_eval_noisy --split all --baseline-tune-data real_train_noisy
cmp real_noisy_R8 runs/P8W runs/P8L runs/P8X runs/B8 --data real_eval_noisy --split all --baseline-tune-data real_train_noisy
cmp real_clean_R4 runs/P4L runs/P4 runs/A4 runs/C4 --data real_eval_clean --split all --baseline-tune-data real_train_clean
cmp real_clean_R8 runs/P8W runs/P8L runs/P8X runs/B8 --data real_eval_clean --split all --baseline-tune-data real_train_clean
cmp demo_noisy_R4 runs/A4 --data demo_noisy --split val --baseline-tune-data demo_noisy
cmp demo_noisy_R8 runs/B8 --data demo_noisy --split val --baseline-tune-data demo_noisy
cmp demo_clean_R4 runs/A4 --data demo --split val --baseline-tune-data demo
cmp demo_clean_R8 runs/B8 --data demo --split val --baseline-tune-data demo

# Factor: the GAN term on the best R = 8 recipe. P8W resumed for 1000 more steps (cosine over 6000),
# with the adversarial term (λ 1e-3, the thesis) and without it (the control: same steps, MSE only).
for name in gan:0.001 more:0; do
  n=${name%%:*}; rm -rf runs/P8W_$n; cp -r runs/P8W runs/P8W_$n
  t0=$SECONDS; $K fit $COMMON --sampling patch --patch-size 64 --cascades 2 --mask-per-sample --pretrain-steps 5000 \
    -R 8 --steps 1000 --checkpoint-every 500 --adv-weight ${name##*:} --force --out runs/P8W_$n > fit_P8W_$n.log 2>&1
  echo "P8W_$n: $((SECONDS - t0)) s" | tee -a fit_times.txt
done
$K compare runs/P8W runs/P8W_more runs/P8W_gan --data real_eval_noisy --split all --baselines tv --baseline-lambdas 0.03 \
  --no-figures --force --out gan_R8 > gan_R8.log 2>&1; sed -n '1,10p' gan_R8/table.md

#!/usr/bin/env bash
# `make demo`: the main job on the embedded real-MR demo set (60 axial T1 brain slices, 48 for
# training, 12 held out), scaled to finish in minutes on 2 CPU cores:
#   generator with 4 residual blocks (the thesis uses 16), 48×48 patches, batch 8,
#   150 MSE warm-start steps, then 150 hybrid-loss GAN steps (the thesis runs 1e5), R = 4 Poisson.
# Everything goes to demo_out/ (git-ignored). Re-running resumes the finished run and re-evaluates.
set -euo pipefail
BIN=.venv/bin
OUT=${DEMO_OUT:-demo_out}
STEPS=${DEMO_STEPS:-150}
mkdir -p "$OUT"

echo "== 1/3 masks at R = 4, 6, 8 (444×448, seed 0)"
for R in 4 6 8; do
  [ -e "$OUT/mask_R$R.png" ] || $BIN/kerasrecon mask --kind poisson --acceleration $R --shape 444 448 --seed 0 --out "$OUT/mask_R$R.png"
done

CACHE="${KERAS_HOME:-$HOME/.keras}/models/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
if [ -n "${VGG_WEIGHTS:-}" ]; then
  VGG="$VGG_WEIGHTS"
elif [ -f "$CACHE" ]; then
  VGG=imagenet
else
  VGG=none
  echo "!! No ImageNet VGG19 weights here ($CACHE missing, VGG_WEIGHTS unset): the demo's feature term"
  echo "!! uses a RANDOM VGG19. Its numbers show the pipeline works, not the thesis' feature loss."
  echo "!! For the real thing: VGG_WEIGHTS=/path/to/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 make demo"
fi

echo "== 2/3 fit: hybrid loss, $STEPS MSE warm-start + $STEPS GAN steps (vgg-weights: $VGG)"
$BIN/kerasrecon fit --data demo --loss hybrid --acceleration 4 --mask poisson --seed 0 \
  --blocks 4 --patch-size 48 --batch-size 8 --pretrain-steps "$STEPS" --steps "$STEPS" \
  --checkpoint-every 50 --log-every 10 --vgg-weights "$VGG" --out "$OUT/run_hybrid"

echo "== 3/3 evaluate on the 12 held-out slices beside zero-filling, the pretrained single-coil R = 4 model,"
echo "   TV and L1-wavelet CS (same masks; λ swept on training slices)"
$BIN/kerasrecon compare "$OUT/run_hybrid" pretrained:singlecoil-r4 --baselines tv,l1wavelet --out "$OUT/eval" --force
echo "Results: $OUT/eval/table.md, slices.csv, summary.json, examples.png, psnr.png; TensorBoard: $OUT/run_hybrid/tensorboard"

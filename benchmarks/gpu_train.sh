#!/usr/bin/env bash
# The GPU benchmark, runnable on a JAX-only GPU host: no TensorFlow, no network, no pip install.
# Needs there: python3 with jax (CUDA), numpy, h5py, scipy, scikit-image, absl-py, rich, ml-dtypes,
# and the wheels keras, namex and optree (~3 MB) unpacked into $WHEELS (default .wheels/, git-ignored):
#   bash benchmarks/gpu_train.sh --fetch      # on a machine with the package registry (Python 3.12 wheels)
#   bash benchmarks/gpu_train.sh              # on the GPU host (carry .wheels/ there); < 5 minutes
# Prints one JSON line per setting: the full-size step (16 blocks, batch 16, 96×96, hybrid loss, random
# VGG) on JAX in float32 and mixed_bfloat16 — and on TensorFlow too when it is importable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.wheels}
if [ "${1:-}" = "--fetch" ]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS/dl"
  $PY -m pip download --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$WHEELS/dl" keras namex optree
  for w in "$WHEELS"/dl/*.whl; do $PY -m zipfile -e "$w" "$WHEELS/site"; done
  du -sh "$WHEELS/site"; exit 0
fi
[ -d "$WHEELS/site" ] && export PYTHONPATH="$PWD:$WHEELS/site:${PYTHONPATH:-}" || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
STEPS=${STEPS:-20}
ARGS=${ARGS:-}  # e.g. ARGS="--batch 2 --patch 32 --blocks 1" for a smoke run on CPU
PRECISIONS=${PRECISIONS:-float32 mixed_bfloat16}
# Every module the JAX run imports, checked first: a missing one is one line naming it.
missing=$($PY -c '
import importlib.util
need = ["jax", "keras", "namex", "optree", "numpy", "h5py", "scipy", "skimage", "absl", "rich", "ml_dtypes"]
def absent(m):
    try:
        return importlib.util.find_spec(m) is None
    except ImportError:
        return True
print(" ".join(m for m in need if absent(m)))
')
if [ -n "$missing" ]; then
  echo "gpu_train: missing Python module(s): $missing (keras, namex, optree: bash benchmarks/gpu_train.sh --fetch, then carry $WHEELS/; the others: the host's own packages)" >&2
  exit 2
fi
line() {  # the headline figures of one train_step.py run, as one JSON line
  $PY -c 'import json,sys; d=json.load(sys.stdin); s=d["settings"]; print(json.dumps({**s, "s_per_step": d["seconds_per_step"], "images_per_s": d["images_per_s"], "tflop_per_step": d["tflop_per_step"], "achieved_tflop_per_s": round(d["achieved_gflop_per_s"]/1e3, 2), "conv_tflop_per_s": round(d["conv2d_3x3_64_gflop_per_s"]/1e3, 2), "ratio": d["ratio_achieved_to_conv2d"], "hours_1e5": d["projected_hours_for_1e5_steps"], "gpus": d["machine"]["gpus"]}))'
}
run() {  # backend precision [extra args]: one train_step.py run, its JSON line, or one line saying it failed
  local out
  if ! out=$(KERAS_BACKEND=$1 $PY benchmarks/train_step.py --steps "$STEPS" --precision "$2" "${@:3}" $ARGS); then
    echo "gpu_train: benchmarks/train_step.py failed on $1 with $2 (its error is above)" >&2
    exit 1
  fi
  echo "$out" | line
}
for precision in $PRECISIONS; do run jax "$precision"; done
if $PY -c "import tensorflow" 2>/dev/null; then
  for precision in $PRECISIONS; do run tensorflow "$precision" --jit on; done
fi

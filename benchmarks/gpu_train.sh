#!/usr/bin/env bash
# One short prepared GPU run: the full-size train step under each precision/XLA setting, one JSON
# line each (images/s, achieved FLOP/s ratio, projected 1e5-step hours). Usage: bash benchmarks/gpu_train.sh
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
for precision in float32 mixed_float16 mixed_bfloat16; do
  for jit in off on; do
    $PY benchmarks/train_step.py --steps 20 --precision "$precision" --jit "$jit" | $PY -c \
      'import json,sys; d=json.load(sys.stdin); print(json.dumps({**d["settings"], "images_per_s": d["images_per_s"], "ratio": d["ratio_achieved_to_conv2d"], "hours_1e5": d["projected_hours_for_1e5_steps"], "gpus": d["machine"]["gpus"]}))'
  done
done

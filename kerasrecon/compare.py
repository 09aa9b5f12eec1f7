"""MSE vs feature vs hybrid: evaluate several runs on the same slices and masks; table and figures.

Outputs in ``out/``:

* ``slices.csv`` — per method × slice metrics with the mask id (as ``kerasrecon evaluate``);
* ``table.csv`` / ``table.md`` — per method: mean ± std over slices of NMSE, PSNR, SSIM, HFEN, with R,
  mask kind and seed, plus the paired per-slice difference to the reference method (``mse`` when
  present, else ``zero_filled``) with a 95 % confidence interval (Student t over slices);
* ``summary.json`` — per-volume metrics and metadata;
* ``examples.png`` — target | zero-filled | each recon, |error| maps on one shared scale, zoomed crops;
* ``psnr.png`` — per-slice PSNR box plot per method.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from scipy import stats

from kerasrecon.baselines import record_iterations
from kerasrecon.config import TrainConfig
from kerasrecon.errors import ConfigError, arg
from kerasrecon.evaluate import evaluate, held_out_volumes, target_description, write_results
from kerasrecon.io import atomic_file, check_output, check_outputs_in, write_text_atomic
from kerasrecon.metrics import METRICS

CI_LEVEL = 0.95
OUTPUTS = ("table.csv", "table.md", "slices.csv", "summary.json", "examples.png", "psnr.png")
TRAINED_RUNS = "runs"  # compare --train keeps its runs in OUT/runs/<loss>


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        raise ConfigError(
            "compare draws figures with matplotlib: pip install 'kerasrecon[plots]' (or pass --no-figures)"
        ) from None


def paired_difference(a, b, level: float = CI_LEVEL) -> dict:
    """Mean of ``a − b`` over paired samples with a Student-t confidence interval.

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def _volume_means(rows, metric) -> dict:
    """``{volume: mean of metric over its slices}`` for ``rows`` of one method."""
    vols: dict = {}
    for r in rows:
        vols.setdefault(r["volume"], []).append(r[metric])
    return {v: float(np.mean(x)) for v, x in vols.items()}


def comparison_table(rows, reference: str, summary: dict | None = None) -> list[dict]:
    """One row per method: mean/std over slices, the mean over volumes of per-volume means, seconds
    per slice (from ``summary``) and paired differences vs ``reference`` — per slice and per volume
    (``{metric}_vol_diff_vs_{reference}``: mean over volumes of the per-volume difference, 95 % CI
    over volumes)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: (r["volume"], r["slice"])) for m in methods}
    table = []
    for m in methods:
        first = by[m][0]
        row = {
            "method": m,
            "R": first["acceleration"],
            "mask": first["mask_kind"],
            "mask_seed": first["mask_seed"],
            "n_slices": len(by[m]),
            "sec_per_slice": (summary or {}).get(m, {}).get("seconds_per_slice"),
        }
        for metric in METRICS:
            vals = np.array([r[metric] for r in by[m]])
            row[f"{metric}_mean"] = float(vals.mean())
            row[f"{metric}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
            vol = _volume_means(by[m], metric)
            row[f"{metric}_vol_mean"] = float(np.mean(list(vol.values())))
            row["n_volumes"] = len(vol)
            if m != reference:
                diff = paired_difference(vals, [r[metric] for r in by[reference]])
                row[f"{metric}_diff_vs_{reference}"] = diff["mean"]
                row[f"{metric}_diff_ci95"] = [diff["ci_low"], diff["ci_high"]]
                ref_vol = _volume_means(by[reference], metric)
                vdiff = paired_difference(list(vol.values()), [ref_vol[v] for v in vol])
                row[f"{metric}_vol_diff_vs_{reference}"] = vdiff["mean"]
                row[f"{metric}_vol_diff_ci95"] = [vdiff["ci_low"], vdiff["ci_high"]]
        table.append(row)
    return table


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _markdown(table, reference, meta) -> str:
    lines = [
        f"R = {meta['mask']['acceleration']:g}, mask = {meta['mask']['kind']}, mask seed = {meta['mask']['seed']}, "
        f"data = {meta['data']} ({meta['split']}), {table[0]['n_slices']} slices, target "
        f"{meta.get('target', '|image|')}; mean ± std over slices; per volume: mean over the "
        f"{_plural(table[0].get('n_volumes', 1), 'volume')} of each volume's mean; "
        f"Δ = paired difference vs {reference} with 95 % CI (over slices; per volume: over volumes).",
        "",
        "| method | PSNR (dB) | PSNR per volume | NMSE | SSIM | HFEN | ΔPSNR vs "
        + reference
        + " | ΔPSNR per volume | ΔSSIM | s/slice |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table:

        def diff(metric, fmt, kind="diff"):
            if f"{metric}_{kind}_vs_{reference}" not in r:
                return "—"
            lo, hi = r[f"{metric}_{kind}_ci95"]
            ci = f" [{lo:+{fmt}}, {hi:+{fmt}}]" if np.isfinite(lo) else ""
            return f"{r[f'{metric}_{kind}_vs_{reference}']:+{fmt}}{ci}"

        lines.append(
            f"| {r['method']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | {r['psnr_vol_mean']:.2f} | "
            f"{r['nmse_mean']:.4f} ± {r['nmse_std']:.4f} | {r['ssim_mean']:.4f} ± {r['ssim_std']:.4f} | "
            f"{r['hfen_mean']:.4f} ± {r['hfen_std']:.4f} | {diff('psnr', '.2f')} | {diff('psnr', '.2f', 'vol_diff')} | "
            f"{diff('ssim', '.4f')} | "
            + (f"{r['sec_per_slice']:.3f} |" if r.get("sec_per_slice") is not None else "— |")
        )
    ensembled = [r for r in meta.get("runs", []) if r.get("ensemble", 1) > 1]
    if ensembled:
        lines.append(
            "\nSelf-ensemble (mirrored/transposed acquisitions averaged): "
            + ", ".join(f"{r['method']} ×{r['ensemble']}" for r in ensembled)
            + "."
        )
    for name, b in meta.get("baselines", {}).items():
        sweep = ", ".join(f"{lam:g}: {p:.2f}" for lam, p in zip(b["grid"], b["sweep_psnr"])) or "no sweep"
        used = b.get("iterations_used")
        its = (
            f"iterations used per slice {used['min']}–{used['max']} (mean {used['mean']:g})" if used else "iterations —"
        )
        edge = " — at the edge of the grid: the best λ may lie outside it" if b.get("at_grid_edge") else ""
        lines.append(
            f"\n{name}: λ = {b['lam']:g}{edge} ({b['tuned_on']}); stopping rule: tolerance {b.get('tol', 0):g}, "
            f"at most {b['iters']} iterations; {its} (λ: mean PSNR dB — {sweep})."
        )
    return "\n".join(lines) + "\n"


def draw_figures(recons, targets, rows, out: Path):
    """``examples.png`` (middle slice of the first volume) and ``psnr.png``."""
    plt = _require_matplotlib()
    volume = next(iter(targets))
    target = targets[volume]
    s = target.shape[0] // 2
    methods = list(recons)
    images = [target[s]] + [recons[m][volume][s] for m in methods]
    titles = ["target"] + methods
    vmax = float(target[s].max())
    errors = [np.abs(img - target[s]) for img in images]
    # Shared error scale: the 99.5th percentile over all methods, so a few edge pixels do not wash out
    # the maps (values above it saturate).
    emax = float(max(np.percentile(e, 99.5) for e in errors[1:])) or 1.0
    h, w = target.shape[1:]
    crop = (slice(h // 2 - h // 6, h // 2 + h // 6), slice(w // 2 - w // 6, w // 2 + w // 6))
    fig, axes = plt.subplots(3, len(images), figsize=(2.6 * len(images), 8), squeeze=False)
    for j, (img, err, title) in enumerate(zip(images, errors, titles)):
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(title)
        axes[1, j].imshow(err, cmap="inferno", vmin=0, vmax=emax)
        axes[1, j].set_title("|error|" if j else f"|error| scale 0–{emax:.3g}")
        axes[2, j].imshow(img[crop], cmap="gray", vmin=0, vmax=vmax)
        axes[2, j].set_title("zoom")
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{volume}, slice {s}")
    fig.tight_layout()
    with atomic_file(out / "examples.png", "compare") as tmp:
        fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)

    names = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    ax.boxplot([[r["psnr"] for r in rows if r["method"] == m] for m in names])
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("PSNR (dB), per slice")
    fig.tight_layout()
    with atomic_file(out / "psnr.png", "compare") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def compare_runs(
    run_dirs,
    out,
    data: str | None = None,
    split: str = "val",
    mask_changes: dict | None = None,
    batch_size: int = 4,
    figures: bool = True,
    force: bool = False,
    progress=None,
    baselines=(),
    baseline_grid=None,
    baseline_iters=None,
    baseline_tol=None,
    note=None,
    baseline_tune_data=None,
    acquisition: str | None = None,
    target: str = "sense",
    ensemble: int = 1,
) -> dict:
    """Evaluate runs on identical slices and masks and write the comparison to ``out``.

    Args:
        run_dirs: ``kerasrecon fit`` run directories (methods are named after their loss; duplicates
            get the directory name).
        out: output directory; existing comparison files are refused unless ``force``.
        data: dataset (default: the first run's).
        split: ``val`` or ``all``.
        mask_changes: overrides of the first run's ``MaskConfig`` fields (kind, acceleration, seed).
        figures: draw PNGs (needs matplotlib).
        baselines: classical methods scored on the same masked k-space (``kerasrecon.baselines``);
            λ is swept on the first run's training split. With ``tv`` it becomes the Δ reference.
        baseline_grid, baseline_iters, baseline_tol: λ candidates and the solvers' stopping rule (cap, tolerance).
        baseline_tune_data: sweep λ on this dataset's training split instead of the first run's data.
        acquisition: compare only volumes of this fastMRI acquisition (recorded in the metadata).
        target: multi-coil data: score against ``sense`` or ``rss`` (``evaluate.evaluate``).
        ensemble: self-ensemble size of every run (1, 2, 4, 8: :class:`kerasrecon.Reconstructor`).

    Returns:
        ``{"table": [...], "reference": str, "meta": {...}}``.
    """
    from kerasrecon.api import Reconstructor
    from kerasrecon.evaluate import run_baselines

    if not run_dirs:
        raise ConfigError("compare needs at least one run directory")
    seen = {}
    for r in run_dirs:
        key = Path(r).resolve()
        if key in seen:
            raise ConfigError(f"RUNS: {r} is given twice (also as {seen[key]}); list each run once")
        seen[key] = r
    if batch_size < 1:
        raise ConfigError(f"{arg('eval_batch_size')} must be >= 1. Received: {batch_size}")
    out = check_compare_out(out, force, run_dirs, data)
    if figures:
        _require_matplotlib()
    loaded = [Reconstructor.from_run(r, option="RUNS").set_ensemble(ensemble, arg("ensemble")) for r in run_dirs]
    first_cfg: TrainConfig = loaded[0].config
    mask_cfg = dataclasses.replace(first_cfg.mask, **(mask_changes or {}))
    for rec in loaded:
        rec.note_mask(mask_cfg.kind, mask_cfg.acceleration)
    data = data or first_cfg.data.data
    fns, names = {}, []
    for run, rec in zip(run_dirs, loaded):
        cfg, step = rec.config, rec.step
        name = str(run) if rec.card is not None else cfg.method  # pretrained:NAME by its name
        name = name if name not in fns else Path(run).name
        if name in fns:  # two runs with the same loss and the same directory name (a/mse, b/mse)
            name = str(run)
        fns[name] = rec
        names.append(
            {
                "method": name,
                "run": str(run),
                "step": step,
                "loss": cfg.loss.content,
                "vgg_weights": cfg.loss.vgg_weights,
                "steps": cfg.steps,
                "pretrain_steps": cfg.pretrain_steps,
                "ensemble": rec.ensemble,
            }
        )
    volumes = held_out_volumes(data, first_cfg.data.val_fraction, split, acquisition)
    base_fns, settings = run_baselines(
        baselines, first_cfg, mask_cfg, baseline_grid, baseline_iters, note, baseline_tune_data, baseline_tol
    )
    fns.update({k: v for k, v in base_fns.items() if k not in fns})
    # the figures show the first volume: only its reconstructions are kept
    result = evaluate(fns, volumes, mask_cfg, batch_size, progress, keep_recons=1, target=target)
    record_iterations(base_fns, settings)
    rows, summary, recons, targets = result.rows, result.summary, result.recons, result.targets
    reference = "tv" if "tv" in base_fns else "mse" if "mse" in fns else "zero_filled"
    meta = {
        "data": data,
        "split": split,
        "acquisition": acquisition or "all",
        "target": target_description(volumes, target),
        "runs": names,
        "baselines": settings,
        "mask": {
            "kind": mask_cfg.kind,
            "acceleration": mask_cfg.acceleration,
            "seed": mask_cfg.seed,
            "center_fraction": mask_cfg.center_fraction,
        },
    }
    table = comparison_table(rows, reference, summary)
    write_results(rows, summary, out, meta, force=True)
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in table]
    with atomic_file(out / "table.csv", "compare") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in flat for k in r)))
        writer.writeheader()
        writer.writerows(flat)
    write_text_atomic(out / "table.md", _markdown(table, reference, meta))
    if figures:
        draw_figures(recons, targets, rows, out)
    return {"table": table, "reference": reference, "meta": meta}


def check_compare_out(out, force: bool, run_dirs=(), data=None) -> Path:
    """Validate ``compare --out`` before anything runs (output policy, :func:`kerasrecon.io.check_output`):
    no link, no overlap with the runs or data read — except the runs ``--train`` keeps in
    ``OUT/runs/`` —, existing comparison files only with ``force``."""
    out = Path(out)
    own = Path(os.path.realpath(out)) / TRAINED_RUNS
    inputs = [("RUNS", r) for r in run_dirs if own not in Path(os.path.realpath(r)).parents]
    check_output(out, arg("out"), inputs=inputs + [(arg("data"), data)], kind="folder")
    check_outputs_in(out, OUTPUTS, arg("out"), force=force)
    return out


def train_and_compare(base: TrainConfig, losses, out, force: bool = False, progress_factory=None, **compare_kw):
    """Train one run per loss (same seed, data and settings) under ``out/runs/<loss>``, then compare.

    Runs that already exist with the same config are resumed (finished ones are not retrained).
    """
    from kerasrecon.training.trainer import train

    if not losses:
        raise ConfigError(f"{arg('losses')} needs at least one of mse, feature, hybrid")
    check_compare_out(out, force, data=base.data.data)  # before hours of training
    run_dirs = []
    for loss in losses:
        cfg = dataclasses.replace(base, loss=dataclasses.replace(base.loss, content=loss))
        run_dir = Path(out) / TRAINED_RUNS / loss
        train(cfg, run_dir, progress=progress_factory() if progress_factory else None)
        run_dirs.append(run_dir)
    return compare_runs(run_dirs, out, force=force, **compare_kw)

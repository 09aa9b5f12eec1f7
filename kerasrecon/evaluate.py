"""Reconstruct held-out slices with a generator and score them against the fully sampled target.

Rows (one per method × volume × slice): ``method, volume, slice, nmse, psnr, ssim, hfen`` plus the
mask id (``mask_kind, acceleration, achieved_acceleration, mask_seed, mask_sha256``). A zero-filled
baseline (method ``zero_filled``) is always scored alongside, with the same masks. The summary holds,
per method, per-volume metrics (fastMRI conventions: whole-volume NMSE/PSNR/HFEN, slice-mean SSIM) and
mean ± std over volumes and over slices.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasrecon.baselines import record_iterations
from kerasrecon.config import SPLITS, TARGET_KEYS, MaskConfig
from kerasrecon.data.slices import evaluation_slices
from kerasrecon.data.volume import Volume
from kerasrecon.errors import DataError, arg
from kerasrecon.io import atomic_file, check_output, check_outputs_in
from kerasrecon.kspace import per_slice
from kerasrecon.metrics import METRICS, SSIM_WINDOW, all_metrics, hfen, nmse, psnr

ROW_FIELDS = [
    "method",
    "volume",
    "slice",
    *METRICS,
    "mask_kind",
    "acceleration",
    "center_fraction",
    "achieved_acceleration",
    "mask_seed",
    "mask_sha256",
]

# Every method is scored through one signature (a ``kerasrecon.Reconstructor`` is one; so are the
# classical baselines): (k-space complex [B, H, W] at its own scale, zeros where not sampled,
# mask float32 {0, 1} [B, H, W], batch_size=int) -> magnitude float32 [B, H, W] at that scale.
# Multi-coil volumes: k-space [B, C, H, W] and the keyword maps=complex [B, C, H, W].
ReconFn = Callable[..., np.ndarray]


@dataclass
class EvalResult:
    """What :func:`evaluate` / :func:`evaluate_run` return.

    Attributes:
        rows: per method × volume × slice dicts (``ROW_FIELDS``).
        summary: per method: per-volume metrics, mean/std over volumes and slices, seconds per slice.
        meta: run, step, data, split, mask and baseline settings (``evaluate_run``; empty otherwise).
        recons: ``{method: {volume: float32 [S, H, W]}}`` (the volumes ``keep_recons`` keeps).
        targets: ``{volume: float32 [S, H, W]}`` (the same volumes).
    """

    rows: list
    summary: dict
    meta: dict = field(default_factory=dict)
    recons: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)


def reconstruct_volume(recon_fn: ReconFn, ev: dict, batch_size: int = 4) -> np.ndarray:
    """Magnitude reconstruction, original scale, float32 ``[S, H, W]`` of one ``evaluation_slices`` item."""
    s, h, w = ev["zero_filled"].shape
    mask = np.broadcast_to(ev["mask"].array, (s, h, w)).astype(np.float32)
    k = ev["masked_kspace"]
    kspace = k / ev["scale"].reshape((-1,) + (1,) * (k.ndim - 1))
    if ev.get("maps") is None:
        return np.asarray(recon_fn(kspace, mask, batch_size=batch_size), np.float32)
    return np.asarray(recon_fn(kspace, mask, batch_size=batch_size, maps=ev["maps"]), np.float32)


def evaluate(
    recon_fns: dict[str, ReconFn],
    volumes: list[Volume],
    mask_cfg: MaskConfig,
    batch_size: int = 4,
    progress=None,
    keep_recons: bool | int = False,
    target: str = "sense",
):
    """Score methods on whole slices, one volume in memory at a time.

    Args:
        recon_fns: ``{method name: ReconFn}``; ``zero_filled`` is added automatically.
        volumes: held-out volumes.
        mask_cfg: masks (volume i uses ``mask_cfg.seed + i``).
        batch_size: slices per generator call.
        progress: optional callable ``(done_slices, total_slices, what=None)``: after each method on
            each volume (``what`` says which, and how long it took), and after each volume.
        keep_recons: also keep ``{method: {volume: recon [S, H, W]}}`` and the targets: ``True`` of every
            volume, an integer ``n`` of the first ``n`` (memory then stays that of ``n`` volumes).
        target: multi-coil volumes are scored against ``sense`` (the SENSE-combined image's magnitude)
            or ``rss`` (the coil images' root-sum-of-squares, fastMRI's); single-coil: ``|image|`` either way.

    Returns:
        :class:`EvalResult` (``meta`` empty).
    """
    if not volumes or sum(len(v) for v in volumes) == 0:
        raise DataError("nothing to evaluate: the held-out set is empty")
    total = sum(len(v) for v in volumes)
    rows, per_volume, done = [], {}, 0
    recons, targets, seconds = {}, {}, {}
    for ev in evaluation_slices(volumes, mask_cfg, target):
        target = ev["target"]
        data_range = float(target.max())
        t0 = time.perf_counter()
        outputs = {"zero_filled": (np.abs(ev["zero_filled"]) / per_slice(ev["scale"], 3)).astype(np.float32)}
        seconds["zero_filled"] = seconds.get("zero_filled", 0.0) + time.perf_counter() - t0
        for name, fn in recon_fns.items():
            t0 = time.perf_counter()
            outputs[name] = reconstruct_volume(fn, ev, batch_size)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            if progress:
                n = target.shape[0]
                progress(done, total, f"{ev['name']}: {name}, {n} slices in {time.perf_counter() - t0:.1f} s")
        keep = keep_recons is True or (keep_recons is not False and len(targets) < keep_recons)
        if keep:
            targets[ev["name"]] = target
        for method, pred in outputs.items():
            slice_rows = [
                {
                    "method": method,
                    "volume": ev["name"],
                    "slice": i,
                    **all_metrics(target[i], pred[i], data_range),
                    **ev["mask"].id,
                }
                for i in range(target.shape[0])
            ]
            # Volume SSIM is the mean of the slice SSIMs (metrics.ssim's definition): reuse them.
            per_volume.setdefault(method, {})[ev["name"]] = {
                "nmse": nmse(target, pred),
                "psnr": psnr(target, pred, data_range),
                "ssim": float(np.mean([r["ssim"] for r in slice_rows])),
                "hfen": hfen(target, pred),
            }
            rows.extend(slice_rows)
            if keep:
                recons.setdefault(method, {})[ev["name"]] = pred
        done += target.shape[0]
        if progress:
            progress(done, total)
    summary = summarise(rows, per_volume)
    for method, sec in seconds.items():  # wall time per slice (zero_filled: the masked input is given)
        summary[method]["seconds_per_slice"] = sec / total
    return EvalResult(rows, summary, recons=recons, targets=targets)


def target_description(volumes, target: str) -> str:
    """What the rows were scored against, for the results' metadata."""
    if not any(v.multicoil for v in volumes):
        return "|image| (single-coil)"
    return {"sense": "|SENSE-combined image|", "rss": "RSS of the coil images (fastMRI's)"}[target]


def _stats(values):
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def summarise(rows, per_volume) -> dict:
    """Per method: per-volume metrics, mean/std/n over volumes and over slices."""
    out = {}
    for method, vols in per_volume.items():
        slice_rows = [r for r in rows if r["method"] == method]
        out[method] = {
            "per_volume": vols,
            "over_volumes": {m: _stats([v[m] for v in vols.values()]) for m in METRICS},
            "over_slices": {m: _stats([r[m] for r in slice_rows]) for m in METRICS},
        }
    return out


RESULT_FILES = ("slices.csv", "summary.json")


def check_results_out(out, force: bool = False, inputs=()) -> list[Path]:
    """Validate ``--out`` of ``evaluate``/``compare`` before anything runs (output policy: no link, no
    overlap with ``inputs`` — the run or export and data read —, existing result files only with
    ``force``). Returns the result files' paths."""
    check_output(out, arg("out"), inputs=inputs, kind="folder")
    return check_outputs_in(out, RESULT_FILES, arg("out"), force=force)


def write_results(rows, summary, out, meta: dict, force: bool = False):
    """Write ``out/slices.csv`` and ``out/summary.json``; refuse to overwrite unless ``force``."""
    out = Path(out)
    targets = check_results_out(out, force)
    with atomic_file(targets[0], "evaluate", option=arg("out")) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    with atomic_file(targets[1], "evaluate", option=arg("out")) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "methods": summary}, indent=2))
    return targets


def held_out_volumes(
    data: str, val_fraction: float, split: str = "val", acquisition: str | None = None
) -> list[Volume]:
    """The volumes to evaluate: the held-out split of ``data`` (as in training) or ``all`` of it,
    optionally only those of one fastMRI ``acquisition`` (filtered after the split, so the held-out
    volumes stay those training held out)."""
    from kerasrecon.data import filter_acquisition, load_volumes, split_volumes
    from kerasrecon.data.volume import dataset_files, read_prepared_volume

    if split not in SPLITS:
        raise DataError(f"{arg('split')} must be one of {', '.join(SPLITS)}. Received: {split!r}")
    if split == "all":
        return filter_acquisition(load_volumes(data), acquisition)
    files = [] if data == "demo" else dataset_files(data)
    if len(files) > 1:  # split by volume: only the held-out files are opened
        val = [read_prepared_volume(path) for path in split_volumes(files, val_fraction)[1]]
    else:  # one volume: its last slices are held out
        val = split_volumes(load_volumes(data), val_fraction)[1]
    if not val:
        raise DataError(
            f"{arg('split')} val: the run used val_fraction=0, so {data} has no held-out part; use {arg('split')} all"
        )
    return filter_acquisition(val, acquisition)


def run_baselines(names, cfg, mask_cfg, grid=None, iters=None, progress=None, tune_data=None, tol=None):
    """Baseline recon functions for a run: λ tuned on the *training* split (``cfg.data.val_fraction``)
    of ``tune_data`` (default: the run's own data), never on evaluated slices (see baselines.py).

    Returns:
        ``(fns, settings)`` as :func:`kerasrecon.baselines.baseline_fns`; empty without solvers.
    """
    from kerasrecon import baselines as bl
    from kerasrecon.data import load_volumes, split_volumes

    if not any(n in bl.SOLVERS for n in names):
        return bl.baseline_fns(names, [], mask_cfg)
    grid = grid or bl.LAMBDA_GRID
    data = tune_data or cfg.data.data
    train_volumes = []
    if len(grid) > 1:  # a single λ is used as given: no training data needed
        try:
            volumes = load_volumes(data)
        except DataError as exc:
            if tune_data is not None:
                raise
            reason = str(exc).split(": ", 1)[-1]
            raise DataError(  # e.g. a pretrained model: its training data are not on this machine
                f"{arg('baseline_tune_data')}: λ is swept on the training split of the model's data {data!r}, "
                f"which cannot be read here ({reason}); pass {arg('baseline_tune_data')} DATA (prepared with the "
                f"evaluated data's simulation) or a single {arg('baseline_lambdas')} value"
            ) from None
        train_volumes, _ = split_volumes(volumes, cfg.data.val_fraction)
    return bl.baseline_fns(
        names,
        train_volumes,
        mask_cfg,
        grid,
        iters or bl.DEFAULT_ITERS,
        tuned_on=f"training split of {data}",
        progress=progress,
        tol=tol,
    )


def evaluate_run(
    run_dir,
    data: str | None = None,
    mask_changes: dict | None = None,
    split: str = "val",
    batch_size: int = 4,
    progress=None,
    keep_recons: bool = False,
    baselines=(),
    baseline_grid=None,
    baseline_iters=None,
    baseline_tol=None,
    note=None,
    baseline_tune_data=None,
    acquisition: str | None = None,
    target: str = "sense",
    ensemble: int = 1,
):
    """Evaluate a training run's newest checkpoint or an exported SavedModel (method named after its loss).

    Args:
        run_dir: a ``kerasrecon fit`` output directory or a ``kerasrecon export`` directory.
        data: dataset (default: the run's).
        mask_changes: overrides of the run's ``MaskConfig`` fields (kind, acceleration, seed).
        split: ``val`` (the run's held-out part) or ``all``.
        baselines: names from ``kerasrecon.baselines.BASELINES`` scored on the same masked k-space.
        baseline_grid, baseline_iters, baseline_tol: λ candidates (swept on the run's training split), and
            the solvers' stopping rule: iteration cap and tolerance (``kerasrecon.baselines``).
        baseline_tune_data: sweep λ on the training split of this dataset instead (e.g. one prepared
            with the same simulation as ``data``); its held-out part is never used.
        acquisition: score only volumes of this fastMRI acquisition (``CORPD_FBK``...), as
            fastMRI's evaluation does; recorded in the results' metadata.
        target: ``sense`` or ``rss`` for multi-coil data (see :func:`evaluate`); recorded in the metadata.
        note: optional callable for one-line progress messages (λ sweep).
        ensemble: self-ensemble size of the model (1, 2, 4, 8: :class:`kerasrecon.Reconstructor`).

    Returns:
        :class:`EvalResult` whose ``meta`` records the run, step, data, split, mask config, the
        self-ensemble size and the baselines' λ settings.
    """
    import dataclasses

    from kerasrecon.api import Reconstructor

    if batch_size < 1:
        raise DataError(f"{arg('batch_size')} must be >= 1. Received: {batch_size}")
    fn = Reconstructor.load(run_dir)  # an export carries the run's config in its metadata
    fn.set_ensemble(ensemble, arg("ensemble"))
    cfg, step = fn.config, fn.step
    data = data or cfg.data.data
    mask_cfg = dataclasses.replace(cfg.mask, **(mask_changes or {}))
    fn.note_mask(mask_cfg.kind, mask_cfg.acceleration)
    volumes = held_out_volumes(data, cfg.data.val_fraction, split, acquisition)
    base_fns, settings = run_baselines(
        baselines, cfg, mask_cfg, baseline_grid, baseline_iters, note, baseline_tune_data, baseline_tol
    )
    result = evaluate({cfg.method: fn, **base_fns}, volumes, mask_cfg, batch_size, progress, keep_recons, target)
    record_iterations(base_fns, settings)
    result.meta = {
        "run": str(run_dir),
        "step": step,
        "loss": cfg.loss.content,
        "method": cfg.method,
        "ensemble": fn.ensemble,
        "data": data,
        "split": split,
        "mask": {
            "kind": mask_cfg.kind,
            "acceleration": mask_cfg.acceleration,
            "seed": mask_cfg.seed,
            "center_fraction": mask_cfg.center_fraction,
        },
        "baselines": settings,
        "train_config": cfg.to_dict(),
        "acquisition": acquisition or "all",
        "target": target_description(volumes, target),
    }
    return result


SCORE_MIN_SHAPE = (1, SSIM_WINDOW, SSIM_WINDOW)  # SSIM's window (fastMRI's and skimage's 7×7) must fit


def score_predictions(predictions, targets, acquisition: str | None = None, target_key: str | None = None) -> dict:
    """Score a folder of prediction files against fastMRI targets, as ``fastmri/evaluate.py`` does.

    Args:
        predictions: a directory of ``<name>.h5`` files with ``reconstruction`` float ``[S, h, w]``
            (``kerasrecon reconstruct`` output or any fastMRI submission).
        targets: a directory of fastMRI files ``<name>.h5`` holding ``reconstruction_esc`` (single
            coil) or ``reconstruction_rss`` (multi-coil) ``[S, H, W]``.
        acquisition: only targets whose ``acquisition`` attribute equals this (fastMRI's filter).
        target_key: ``reconstruction_esc`` | ``reconstruction_rss``; default: the one the file has.

    As fastMRI does, each target is centre-cropped to a square of its own width, the prediction to the
    same square (``DataError`` when the prediction is smaller), then MSE, NMSE, PSNR (data range = the
    target volume's max) and SSIM are computed per volume.

    Returns:
        ``{"per_volume": {name: {mse, nmse, psnr, ssim}}, "summary": {metric: {mean, std, n}},
        "fastmri": {metric: "mean +/- 2·std"}, "target_key": str}`` — the last is fastMRI's summary
        (its ``Metrics.__repr__``: metrics sorted by name, std over volumes with ddof 1 as
        ``runstats.Statistics.stddev``, so ``nan`` for one volume).
    """
    from kerasrecon.data import h5
    from kerasrecon.data.fastmri import center_crop
    from kerasrecon.metrics import nmse, psnr, ssim

    pred_dir, target_dir = Path(predictions), Path(targets)
    for option, d in ((arg("predictions"), pred_dir), (arg("targets"), target_dir)):
        if not d.is_dir():
            raise DataError(f"{option} {d}: not a directory")
    if target_key is not None and target_key not in TARGET_KEYS:
        raise DataError(f"{arg('target_key')} must be one of {', '.join(TARGET_KEYS)}. Received: {target_key!r}")
    per_volume, keys = {}, set()
    for tfile in sorted(target_dir.glob("*.h5")):
        with h5.open_file(tfile, arg("targets")) as t:
            acq = h5.attribute(t.attrs, "acquisition", tfile, str, "")
            if acquisition and acq != acquisition:
                continue
            key = target_key or next((k for k in TARGET_KEYS if k in t), None)
            if key is None or key not in t:
                raise DataError(
                    f"{tfile}: no {target_key or ' or '.join(TARGET_KEYS)} dataset (not a fastMRI target file)"
                )
            target = h5.dataset(t, key, tfile, "real", (3,), min_shape=SCORE_MIN_SHAPE, layout="[slices, H, W]")[()]
        pfile = pred_dir / tfile.name
        if not pfile.is_file():
            raise DataError(f"{arg('predictions')} {pred_dir}: no {tfile.name} for target {tfile}")
        with h5.open_file(pfile, arg("predictions")) as p:
            pred = h5.dataset(
                p, "reconstruction", pfile, "real", (3,), min_shape=SCORE_MIN_SHAPE, layout="magnitude [slices, h, w]"
            )[()]
        if pred.shape[0] != target.shape[0]:
            raise DataError(f"{pfile}: {pred.shape[0]} slices, target {tfile} has {target.shape[0]}")
        for name, arr in ((pfile, pred), (tfile, target)):
            if not np.all(np.isfinite(arr)):
                raise DataError(f"{name}: holds NaN/Inf values")
        side = target.shape[-1]
        if target.shape[-2] < side or min(pred.shape[-2:]) < side:
            raise DataError(
                f"{pfile}: fastMRI scores the centre {side}×{side} square of the target (its own width); "
                f"prediction {pred.shape[-2]}×{pred.shape[-1]}, target {target.shape[-2]}×{side} do not hold it"
            )
        target, pred = center_crop(target, (side, side)), center_crop(pred, (side, side))
        keys.add(key)
        per_volume[tfile.stem] = {
            "mse": float(np.mean((target.astype(np.float64) - pred) ** 2)),
            "nmse": nmse(target, pred),
            "psnr": psnr(target, pred),
            "ssim": ssim(target, pred),
        }
    if not per_volume:
        raise DataError(
            f"{arg('targets')} {target_dir}: no target file"
            + (f" with acquisition {acquisition}" if acquisition else " (*.h5)")
        )
    summary = {m: _stats([v[m] for v in per_volume.values()]) for m in ("mse", "nmse", "psnr", "ssim")}
    fastmri = {m.upper(): f"{s['mean']:.4g} +/- {2 * _std1(per_volume, m):.4g}" for m, s in sorted(summary.items())}
    return {"per_volume": per_volume, "summary": summary, "fastmri": fastmri, "target_key": ", ".join(sorted(keys))}


def _std1(per_volume, metric) -> float:
    """Sample std over volumes (ddof = 1; ``nan`` for one volume), as fastMRI's ``Metrics`` computes it
    (``runstats.Statistics.stddev``)."""
    values = [v[metric] for v in per_volume.values()]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")

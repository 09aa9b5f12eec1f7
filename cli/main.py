"""``kerasrecon`` command line: a thin shell that parses options into the library's config and calls it.

Every library error (``KerasReconError``) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import click

from kerasrecon import __version__
from kerasrecon.coils import COIL_MAP_METHODS
from kerasrecon.config import (
    CONTENT_LOSS_NAMES,
    DENOISER,
    GRIDS,
    LR_SCHEDULES,
    NETWORKS,
    OPTIONS,
    PNP_INITS,
    PRECISIONS,
    SAMPLINGS,
    SPLITS,
    STRATEGIES,
    TARGET_KEYS,
    TARGETS,
    THESIS_LOSSES,
    PnPConfig,
    TrainConfig,
    pnp_recipe,
)
from kerasrecon.data.simulate import PHASES
from kerasrecon.errors import KerasReconError, argument_names
from kerasrecon.kspace import ENSEMBLE_SIZES
from kerasrecon.masks import MASK_KINDS
from kerasrecon.tf_import import import_tensorflow_quietly, keras_backend
from kerasrecon_cli.entry import Interrupted, interrupted_exit, on_sigterm

CENTER_HELP = (
    "Fully sampled centre: fraction of the columns of a line mask (fastMRI: 0.08 at R = 4, 0.04 at "
    "R = 8) or side of the Poisson calibration square as a fraction of H, W (default: lines 0.08, "
    "Poisson 0.05)."
)

# Every default and choice of the fit options comes from kerasrecon/config.py (one home per fact).
DEFAULTS = TrainConfig()

# The option of each library argument and config field: library errors name arguments
# (``kerasrecon.errors.arg``); under the CLI they name these options instead.
ARGUMENT_OPTIONS = {
    **OPTIONS,
    **{
        name: "--" + name.replace("_", "-")
        for name in (
            "acquisition",
            "acs_lines",
            "baseline_iters",
            "baseline_tol",
            "baseline_lambdas",
            "baseline_tune_data",
            "baselines",
            "batch_size",
            "center_fraction",
            "coil_maps",
            "coils",
            "crop",
            "data",
            "dataset",
            "ensemble",
            "eval_batch_size",
            "force",
            "grid",
            "input",
            "losses",
            "model",
            "out",
            "output",
            "predictions",
            "split",
            "target",
            "target_key",
            "targets",
        )
    },
    "force=True": "--force",
    "simulation.phase": "--phase",
    "simulation.noise": "--noise",
    "simulation.phase_range": "--phase-range",
    "simulation.seed": "--sim-seed",
    "simulation.kspace_crop": "--kspace-crop",
    "simulation.coils": "--coils",
}


class ModelSpec(click.ParamType):
    """A model argument: ``pretrained:NAME`` (a model shipped in the package) or an existing directory
    (a run from ``fit``, or an export where the command takes one). The name itself is checked by the
    library, which lists the shipped names."""

    name = "DIR|pretrained:NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.startswith("pretrained:"):
            return value
        return click.Path(exists=True, file_okay=False).convert(value, param, ctx)


MODEL = ModelSpec()


def one_line_errors(fn):
    """Turn library errors and OS errors into ``kerasrecon: error: ...`` and exit code 2; an interrupt
    (SIGINT/SIGTERM) into one line and exit 130/143 after the library has removed its temporary files."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # Python warnings (NumPy overflow on hostile input, ...) are held back: a failing command prints
        # its one error line only (the records are dropped on exit); a succeeding one shows them at the end.
        with warnings.catch_warnings(record=True) as caught, argument_names(ARGUMENT_OPTIONS):
            try:
                _before_command()
                result = fn(*args, **kwargs)
            except KerasReconError as exc:
                _fail(str(exc))
            except OSError as exc:
                name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                _fail(f"{name}{exc.strerror or exc} ({exc.__class__.__name__})")
            except (KeyboardInterrupt, Interrupted) as exc:
                interrupted_exit(exc)
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        return result

    return wrapper


def _before_command():
    """For commands that load TensorFlow: import it quietly now, after click has parsed and checked the
    arguments (a usage error or a missing file is reported at once, not after seconds of import)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    parts = ctx.command_path.split()
    if len(parts) > 1 and parts[1] in TF_COMMANDS:
        import_tensorflow_quietly(verbose=bool(ctx.find_root().params.get("verbose")))


def _fail(message: str, status: int = 2):
    click.echo(f"kerasrecon: error: {message.splitlines()[0] if message else 'failed'}", err=True)
    if _in_jax_cluster():
        # JAX's exit hook waits on a barrier with every process; with a peer dead it aborts with pages of
        # C++ log. This process's error is said: leave without the hook.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _in_jax_cluster() -> bool:
    """Whether this process joined a multi-process JAX cluster (``fit --strategy multiworker`` on JAX)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


SUPPORTED_BACKENDS = ("tensorflow", "jax")

# Commands that load TensorFlow, whose C++ runtime prints start-up lines that no variable silences.
TF_COMMANDS = {"data", "fit", "evaluate", "compare", "export", "reconstruct"}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kerasrecon")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log progress details (INFO level) and keep TensorFlow's start-up messages."
)
def cli(verbose):
    """kerasrecon: reconstruct undersampled MRI with a GAN (MSE, VGG feature or hybrid loss).

    \b
    Typical session:
      kerasrecon mask --kind poisson --acceleration 6 --shape 444 448 --seed 0 --out mask.png
      kerasrecon data prepare knee_dicoms/ data/knee
      kerasrecon fit --data data/knee --loss hybrid --acceleration 4 --out runs/hybrid
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command()
@click.option(
    "--kind",
    type=click.Choice(MASK_KINDS),
    default="poisson",
    show_default=True,
    help="poisson: 2-D variable-density Poisson disc; random/equispaced: 1-D phase-encode lines.",
)
@click.option("--acceleration", "-R", type=float, required=True, help="Acceleration R = H·W / samples (>= 1).")
@click.option("--shape", type=(int, int), required=True, metavar="H W", help="k-space shape.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (same seed, same mask).")
@click.option("--center-fraction", type=float, default=None, help=CENTER_HELP)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Output .npy (float32 {0,1} [H, W]) or .png (white = sampled).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@one_line_errors
def mask(kind, acceleration, shape, seed, center_fraction, out, force):
    """Draw a seeded sampling mask and print its id (achieved R, sha256)."""
    from kerasrecon.masks import check_mask_output, make_mask, save_mask

    check_mask_output(out, force)  # before the (slow) draw
    m = make_mask(kind, acceleration, shape, seed, center_fraction)
    save_mask(m, out, force=force)
    click.echo(json.dumps({**m.id, "out": str(out)}))


@cli.group()
def data():
    """Prepare datasets (image stacks, DICOM series, fastMRI files -> k-space volumes)."""


@data.command("prepare")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path())
@click.option(
    "--dataset",
    default=None,
    help="HDF5 dataset holding images (default: image/images/target/reconstruction_esc/reconstruction_rss).",
)
@click.option(
    "--crop",
    type=(int, int),
    default=None,
    metavar="H W",
    help="Centre-crop every image to H×W (fastMRI files: default 320 320).",
)
@click.option(
    "--phase",
    type=click.Choice(PHASES),
    default="none",
    show_default=True,
    help="Image sources: multiply by a random smooth phase (real images are complex).",
)
@click.option(
    "--phase-range",
    type=float,
    default=1.0,
    show_default=True,
    help="Peak-to-peak of the smooth phase in turns (1 = 2π).",
)
@click.option(
    "--noise",
    type=float,
    default=0.0,
    show_default=True,
    help="Image sources: complex Gaussian k-space noise, σ as a fraction of the image maximum "
    "(0.01 = image SNR 100 at the peak). The fully sampled target keeps it, as real scans do.",
)
@click.option(
    "--kspace-crop",
    type=(int, int),
    default=None,
    metavar="H W",
    help="Image sources: keep the central H×W of k-space (the target lives on a coarser grid "
    "than the simulation: no inverse crime).",
)
@click.option(
    "--sim-seed", type=int, default=0, show_default=True, help="Seed of phase and noise (volume i: (seed, i))."
)
@click.option(
    "--coils",
    type=int,
    default=1,
    show_default=True,
    help="Image sources: measure through C simulated birdcage coils (noise per coil); maps are then "
    "estimated from those data (--coil-maps) and the volume is SENSE-combined; fit trains with "
    "multi-coil data consistency.",
)
@click.option(
    "--acquisition",
    default=None,
    metavar="NAME",
    help="Keep only fastMRI files with this acquisition attribute (CORPD_FBK, CORPDFS_FBK, ...).",
)
@click.option(
    "--coil-maps",
    type=click.Choice(COIL_MAP_METHODS),
    default="acs",
    show_default=True,
    help="Multi-coil fastMRI files: coil sensitivities from the k-space centre, 'acs' (coil images "
    "over their root-sum-of-squares, VarNet's estimate) or 'espirit' (sigpy, pip install "
    "'kerasrecon[baselines]'; sharper at coil edges, slower). The volume becomes the "
    "SENSE-combined image; coil k-space and maps are stored beside it.",
)
@click.option(
    "--acs-lines",
    type=int,
    default=24,
    show_default=True,
    help="Multi-coil: centre phase-encode columns the maps are estimated from.",
)
@click.option(
    "--force", is_flag=True, help="Replace OUT when it holds a dataset prepared before (never another directory)."
)
@one_line_errors
def prepare(
    src,
    out,
    dataset,
    crop,
    phase,
    phase_range,
    noise,
    kspace_crop,
    sim_seed,
    coils,
    acquisition,
    coil_maps,
    acs_lines,
    force,
):
    """Convert SRC (a file, or a directory of .npy/.npz/.h5 files and PNG/DICOM folders) into dataset OUT.

    SRC 'demo' prepares the embedded demo images (e.g. with --phase smooth --noise 0.01).
    OUT gets one <volume>.h5 (k-space complex64 [S, H, W]) per source and a manifest.json; OUT must
    not exist or be empty (or, with --force, hold a dataset prepared before). Multi-coil fastMRI files
    ([S, C, H, W]) are SENSE-combined with estimated coil maps (--coil-maps); training and evaluation then
    use the combined image.
    """
    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.data.simulate import Simulation

    sim = Simulation(
        phase=phase,
        phase_range=phase_range,
        noise=noise,
        kspace_crop=tuple(kspace_crop) if kspace_crop else None,
        seed=sim_seed,
        coils=coils,
    )
    manifest = prepare_dataset(
        src,
        out,
        dataset=dataset,
        crop=crop,
        simulation=sim,
        acquisition=acquisition,
        coil_maps=coil_maps,
        acs_lines=acs_lines,
        force=force,
    )
    for v in manifest["volumes"]:
        click.echo(f"{v['file']}: {v['kind']} {v['shape']} from {v['source']}")
    click.echo(f"wrote {len(manifest['volumes'])} volume(s) to {out}")


def train_options(fn):
    """Every ``TrainConfig`` field as an option; defaults are the thesis' settings."""
    opts = [
        click.option(
            "--data",
            default=DEFAULTS.data.data,
            show_default=True,
            help="'demo' (embedded real-MR set) or a directory from 'kerasrecon data prepare'.",
        ),
        click.option(
            "--loss",
            "content",
            type=click.Choice(CONTENT_LOSS_NAMES),
            default=DEFAULTS.loss.content,
            show_default=True,
            help="Content loss: pixel MSE, VGG19 φ5,4 features, α·MSE + β·feature, 1 − SSIM (7×7 window, "
            "fastMRI's SSIMLoss), or 0.1·L1 + 0.9·(1 − SSIM).",
        ),
        click.option(
            "--acceleration",
            "-R",
            type=float,
            default=DEFAULTS.mask.acceleration,
            show_default=True,
            help="Undersampling factor R.",
        ),
        click.option(
            "--mask",
            "mask_kind",
            type=click.Choice(MASK_KINDS),
            default=DEFAULTS.mask.kind,
            show_default=True,
            help="Sampling pattern.",
        ),
        click.option(
            "--mask-seed",
            type=int,
            default=DEFAULTS.mask.seed,
            show_default=True,
            help="Seed of the masks (volume i uses seed + i).",
        ),
        click.option("--center-fraction", type=float, default=DEFAULTS.mask.center_fraction, help=CENTER_HELP),
        click.option(
            "--mask-per-sample", is_flag=True, help="A new mask per training sample instead of one per volume."
        ),
        click.option(
            "--mask-bank-size",
            type=int,
            default=DEFAULTS.mask.bank_size,
            show_default=True,
            help="With --mask-per-sample: how many masks are pre-drawn (seeds mask-seed + 100000 + j).",
        ),
        click.option(
            "--steps", type=int, default=DEFAULTS.steps, show_default=True, help="GAN iterations (D then G update)."
        ),
        click.option(
            "--pretrain-steps",
            type=int,
            default=DEFAULTS.pretrain_steps,
            show_default=True,
            help="MSE-only generator warm-start steps.",
        ),
        click.option(
            "--batch-size", type=int, default=DEFAULTS.data.batch_size, show_default=True, help="Global batch size."
        ),
        click.option(
            "--patch-size",
            type=int,
            default=DEFAULTS.data.patch_size,
            show_default=True,
            help="Training patch side (pixels).",
        ),
        click.option(
            "--blocks", type=int, default=DEFAULTS.model.blocks, show_default=True, help="Generator residual blocks B."
        ),
        click.option(
            "--filters", type=int, default=DEFAULTS.model.filters, show_default=True, help="Generator conv filters."
        ),
        click.option(
            "--noise-lambda",
            type=float,
            default=DEFAULTS.model.noise_lambda,
            help="Soft data consistency with this λ (default: hard).",
        ),
        click.option(
            "--learned-dc",
            is_flag=True,
            default=DEFAULTS.model.learned_dc,
            help="Each cascade learns its data-consistency step η in k − η·M⊙(k − y) (starts at 1: hard DC; "
            "E2E-VarNet's soft DC); --noise-lambda is then unused.",
        ),
        click.option(
            "--cg-iters",
            type=int,
            default=DEFAULTS.model.cg_iters,
            show_default=True,
            help="MoDL's data consistency: each cascade solves argmin ‖Ax − y‖² + μ‖x − z‖² for its network's "
            "image z, μ learned per cascade; multi-coil with this many conjugate-gradient iterations (the "
            "coils resolve aliasing together), single-coil exactly. 0: measured samples put back coil by coil.",
        ),
        click.option(
            "--alpha",
            "mse_weight",
            type=float,
            default=DEFAULTS.loss.mse_weight,
            show_default=True,
            help="Hybrid loss MSE weight α.",
        ),
        click.option(
            "--beta",
            "feature_weight",
            type=float,
            default=DEFAULTS.loss.feature_weight,
            show_default=True,
            help="Hybrid loss feature weight β.",
        ),
        click.option(
            "--adv-weight",
            type=float,
            default=DEFAULTS.loss.adv_weight,
            show_default=True,
            help="Adversarial weight λ.",
        ),
        click.option(
            "--vgg-weights",
            default=DEFAULTS.loss.vgg_weights,
            show_default=True,
            help="'imagenet' (Keras cache), PATH to vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, "
            "or 'none' (random VGG; smoke tests only).",
        ),
        click.option(
            "--lr",
            "learning_rate",
            type=float,
            default=DEFAULTS.learning_rate,
            show_default=True,
            help="Adam learning rate (G and D).",
        ),
        click.option(
            "--lr-schedule",
            type=click.Choice(LR_SCHEDULES),
            default=DEFAULTS.lr_schedule,
            show_default=True,
            help="constant (the thesis) or cosine: decay to 1 % of --lr over all pretrain + GAN steps.",
        ),
        click.option("--beta1", "beta_1", type=float, default=DEFAULTS.beta_1, show_default=True, help="Adam β1."),
        click.option(
            "--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of weights and patch sampling."
        ),
        click.option(
            "--init-from",
            type=str,
            default=None,
            metavar="RUN|pretrained:NAME",
            help="Fine-tune: start the generator from the weights of this run directory or pretrained "
            "model, copied by name (weights the architecture adds, e.g. --cg-iters' μ, start fresh). "
            "Used at step 0 only: a resumed run continues from its own checkpoint.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=DEFAULTS.data.val_fraction,
            show_default=True,
            help="Held-out fraction.",
        ),
        click.option(
            "--sampling",
            type=click.Choice(SAMPLINGS),
            default=DEFAULTS.data.sampling,
            show_default=True,
            help="patch: undersample each patch on its own grid (the thesis); slice: undersample the whole "
            "slice, then crop (the aliasing seen at inference; DC off in training unless "
            "--patch-size covers the slice). Multi-coil data: patch measures the patch's coil "
            "images on its own grid (multi-coil DC in training); slice crops the slice's SENSE "
            "zero-filled image.",
        ),
        click.option(
            "--augment",
            is_flag=True,
            help="With --sampling patch: turn each training patch by a random flip/quarter turn and "
            "multiply it by a random global phase (seeded per sample; multi-coil maps turn with it).",
        ),
        click.option(
            "--zoom",
            type=float,
            default=DEFAULTS.data.zoom,
            show_default=True,
            help="With --sampling patch: largest factor Z of a random zoom; each patch interpolates (cubic "
            "spline) a window of side patch/z, z log-uniform in [1, Z], so the network also sees images "
            "with fewer details per pixel, as of a finer matrix than the training data's (1 = off).",
        ),
        click.option(
            "--extra-data",
            multiple=True,
            metavar="DATA",
            help="Another dataset to train on beside --data ('demo' or a prepared directory; repeat for more): "
            "its training split (the --val-fraction rule; its held-out part is never trained on) joins the "
            "training set, every training slice equally likely (--network denoiser: each dataset an equal "
            "share of the crops). Validation and evaluation use --data's held-out part.",
        ),
        click.option(
            "--cascades",
            type=int,
            default=DEFAULTS.model.cascades,
            show_default=True,
            help="K generator + data-consistency stages in series (cascaded DC network; 1 = the thesis).",
        ),
        click.option(
            "--network",
            type=click.Choice((*NETWORKS, DENOISER)),
            default=DEFAULTS.model.network,
            show_default=True,
            help="Each cascade's regulariser: resnet (the thesis' residual generator, --blocks) or unet (a "
            "U-Net, --levels poolings, --filters channels doubling per level: a larger receptive field). "
            "fit only: denoiser trains a plug-and-play model instead (converged TV, then --pnp-iters "
            "denoiser and data-consistency steps; the model of pretrained:singlecoil-r8): a bias-free U-Net "
            "denoiser learns from noisy crops of the fully sampled images of --data and --extra-data, for "
            "--pretrain-steps MSE steps (--steps 0: no GAN). Options not given take that recipe's values "
            "(kerasrecon.config.pnp_recipe): -R 8, --patch-size 64, --batch-size 16, --filters 32, "
            "--levels 2, --pretrain-steps 6000, --lr 1e-3 cosine, --loss mse, --augment.",
        ),
        click.option(
            "--levels",
            type=int,
            default=DEFAULTS.model.levels,
            show_default=True,
            help="Poolings of --network unet.",
        ),
        click.option(
            "--share-weights",
            is_flag=True,
            help="All cascades share one regulariser's weights (an unrolled iteration; the DC layers stay "
            "per cascade).",
        ),
        click.option(
            "--bias-free",
            is_flag=True,
            help="Scale-equivariant generator: G(c·x) = c·G(x) for c > 0 (no conv biases; RMS normalisation "
            "without mean or shift instead of BatchNorm). What it does no longer depends on the image's "
            "intensity scale.",
        ),
        click.option(
            "--strategy",
            type=click.Choice(STRATEGIES),
            default=DEFAULTS.strategy,
            show_default=True,
            help="auto: MirroredStrategy when >= 2 GPUs are visible (JAX: data parallel over all local "
            "devices); multiworker: one process per host, cluster from TF_CONFIG (TensorFlow: "
            "MultiWorkerMirroredStrategy, or Slurm; JAX: jax.distributed, the first worker coordinates).",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=DEFAULTS.precision,
            show_default=True,
            help="auto: mixed_bfloat16 on GPUs with compute capability >= 8, mixed_float16 on older GPUs "
            "(loss-scaled), float32 on CPU (mixed_bfloat16 is ~0.7x the step time on CPUs with AVX512_BF16 or "
            "AMX). float64: reference arithmetic for numerical checks (slow; "
            "TensorFlow only).",
        ),
        click.option(
            "--jit/--no-jit",
            default=DEFAULTS.jit,
            help="XLA-compile the train step (default: on for GPUs, off on CPU).",
        ),
        click.option(
            "--collective-timeout",
            "collective_timeout_s",
            type=float,
            default=DEFAULTS.collective_timeout_s,
            show_default=True,
            help="multiworker: seconds before a collective with a dead worker fails (JAX: before a process "
            "that stopped sending heartbeats is declared dead, and the wait to join the cluster).",
        ),
        click.option(
            "--checkpoint-every",
            type=int,
            default=DEFAULTS.checkpoint_every,
            show_default=True,
            help="Steps between checkpoints.",
        ),
        click.option(
            "--log-every",
            type=int,
            default=DEFAULTS.log_every,
            show_default=True,
            help="Steps between TensorBoard scalars.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _saved_config(spec: str, where: str, fields: set) -> TrainConfig:
    """fit's ``--config``: a run's config.json, or ``pretrained:NAME``'s recipe (then ``--data`` must
    be among the command line's ``fields``)."""
    from kerasrecon import pretrained
    from kerasrecon.schema import read_json

    name = pretrained.pretrained_name(spec)
    if name is None:
        if not Path(spec).is_file():
            raise KerasReconError(f"{where}: not a file; expected a run's config.json or pretrained:NAME")
        return TrainConfig.from_dict(read_json(Path(spec), "a kerasrecon run config"), where)
    cfg = pretrained.recipe(name, "--config")
    if "data.data" not in fields:
        raise KerasReconError(
            f"{where} needs --data: the model's training data ({cfg.data.data}) is not part of the package"
        )
    return cfg


def _given_fields(ctx) -> set:
    """The config fields (``config.OPTIONS`` keys) whose options were given on the command line."""
    flags = {
        flag: p.name
        for p in ctx.command.params
        if ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE
        for flag in p.opts
    }
    return {field for field, flag in OPTIONS.items() if flag in flags}


def _merge_config(base: dict, options: dict, fields: set):
    """The ``TrainConfig`` of the config dict ``base`` (a checked config's ``to_dict``) with
    ``fields`` (given on the command line) taken from the parsed ``options``."""
    d, given = json.loads(json.dumps(base)), _options_dict(options)
    for field in fields:
        *parents, name = field.split(".")
        src, dst = given, d
        for part in parents:
            src, dst = src[part], dst[part]
        dst[name] = src[name]
    return _config(d)


def _config(d: dict) -> TrainConfig:
    """``TrainConfig`` of a nested config dict through the dataclasses' constructors, whose checks
    name each field by its option (``kerasrecon.errors.arg``)."""
    from kerasrecon.config import DataConfig, LossConfig, MaskConfig, ModelConfig

    parts = {"mask": MaskConfig, "data": DataConfig, "model": ModelConfig, "loss": LossConfig}
    top = {k: v for k, v in d.items() if k not in parts and k != "pnp"}
    pnp = PnPConfig(**d["pnp"]) if d.get("pnp") is not None else None
    return TrainConfig(**{k: cls(**d[k]) for k, cls in parts.items()}, **top, pnp=pnp)


def _options_dict(o: dict) -> dict:
    """The parsed fit options as a nested config dict (``TrainConfig.to_dict``'s layout), unchecked;
    ``pnp`` holds the plug-and-play options when they are among ``o`` (fit's)."""
    pnp = None
    if "pnp_iters" in o:
        pnp = {
            "sigma_max": o["sigma_max"],
            "iters": o["pnp_iters"],
            "sigma_first": o["sigma_first"],
            "sigma_last": o["sigma_last"],
            "tv_lambda": o["tv_lambda"],
            "init": o["pnp_init"],
        }
    return {
        "mask": {
            "kind": o["mask_kind"],
            "acceleration": o["acceleration"],
            "seed": o["mask_seed"],
            "per_sample": o["mask_per_sample"],
            "bank_size": o["mask_bank_size"],
            "center_fraction": o["center_fraction"],
        },
        "data": {
            "data": o["data"],
            "patch_size": o["patch_size"],
            "batch_size": o["batch_size"],
            "val_fraction": o["val_fraction"],
            "sampling": o["sampling"],
            "augment": o["augment"],
            "zoom": o["zoom"],
            "extra_data": list(o["extra_data"]),
        },
        "model": {
            "blocks": o["blocks"],
            "filters": o["filters"],
            "noise_lambda": o["noise_lambda"],
            "cascades": o["cascades"],
            "learned_dc": o["learned_dc"],
            "network": o["network"],
            "levels": o["levels"],
            "share_weights": o["share_weights"],
            "bias_free": o["bias_free"],
            "cg_iters": o["cg_iters"],
        },
        "loss": {
            "content": o["content"],
            "mse_weight": o["mse_weight"],
            "feature_weight": o["feature_weight"],
            "adv_weight": o["adv_weight"],
            "vgg_weights": o["vgg_weights"],
        },
        "steps": o["steps"],
        "pretrain_steps": o["pretrain_steps"],
        "learning_rate": o["learning_rate"],
        "lr_schedule": o["lr_schedule"],
        "beta_1": o["beta_1"],
        "seed": o["seed"],
        "strategy": o["strategy"],
        "precision": o["precision"],
        "jit": o["jit"],
        "collective_timeout_s": o["collective_timeout_s"],
        "checkpoint_every": o["checkpoint_every"],
        "log_every": o["log_every"],
        "pnp": pnp,
        "init_from": o["init_from"],
    }


def config_from_options(o: dict):
    """Build the library's ``TrainConfig`` from parsed options (their defaults are ``TrainConfig``'s);
    the plug-and-play options count for ``--network denoiser`` only."""
    d = _options_dict(o)
    if d["model"]["network"] != DENOISER:
        d["pnp"] = None
    return _config(d)


class _Progress:
    """Training progress: a Keras progress bar on a terminal; one plain line per 5 % of the steps when
    stdout is a file or pipe (no carriage-return redraws in logs). A resumed run says so on stderr."""

    LINES = 20

    def __init__(self, out=None):
        self.out, self.bar, self.started, self.printed = out, None, None, 0
        self.tty = sys.stdout.isatty()

    def __call__(self, step, total, logs):
        """Called before the first step (``step`` = the step the run starts from) and whenever the
        trainer reads the step's values (every --log-every steps, at checkpoints, at the end)."""
        import time

        if self.started is None:
            self.started, self.printed = (time.perf_counter(), step), step
            if step > 0 and self.out is not None:
                ckpt_dir = Path(self.out) / "checkpoints" / f"ckpt-{step:08d}"
                click.echo(f"resuming {self.out} at step {step} (checkpoint {ckpt_dir})", err=True)
            return
        if self.tty:
            import keras

            if self.bar is None:
                self.bar = keras.utils.Progbar(total, stateful_metrics=list(logs) + ["d_loss", "adversarial"])
                self.bar.update(self.started[1])
            self.bar.update(step, values=list(logs.items()))
            return
        if step - self.printed >= max(1, total // self.LINES) or step == total:
            t0, first = self.started
            rate = (time.perf_counter() - t0) / max(step - first, 1)
            values = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
            click.echo(f"step {step}/{total} {values} ({rate:.2f} s/step)")
            self.printed = step


def pnp_options(fn):
    """The plug-and-play settings of ``fit --network denoiser`` (``PnPConfig``'s fields)."""
    p = PnPConfig()
    opts = [
        click.option(
            "--sigma-max",
            type=float,
            default=p.sigma_max,
            show_default=True,
            help="--network denoiser: largest training noise σ (uniform from 0), relative to each crop's peak.",
        ),
        click.option(
            "--pnp-iters",
            type=int,
            default=p.iters,
            show_default=True,
            help="--network denoiser: solver steps K at reconstruction (denoise, then put the measured k-space back).",
        ),
        click.option(
            "--sigma-first",
            type=float,
            default=p.sigma_first,
            show_default=True,
            help="--network denoiser: σ of the first solver step, relative to the zero-filled image's peak "
            "(geometric down to --sigma-last).",
        ),
        click.option(
            "--sigma-last",
            type=float,
            default=p.sigma_last,
            show_default=True,
            help="--network denoiser: σ of the last solver step: about the data's noise level.",
        ),
        click.option(
            "--tv-lambda",
            type=float,
            default=p.tv_lambda,
            show_default=True,
            help="--network denoiser: λ of the converged TV image the solver starts from (choose it on "
            "training slices: compare --baselines tv sweeps it there).",
        ),
        click.option(
            "--pnp-init",
            type=click.Choice(PNP_INITS),
            default=p.init,
            show_default=True,
            help="--network denoiser: start the solver from converged TV (tv) or the zero-filled image (zf).",
        ),
        click.option(
            "--pnp-sweep",
            is_flag=True,
            help="--network denoiser: after training, choose --pnp-iters (2, 5, 10) and --sigma-first (0.02, "
            "0.03, 0.05) by PSNR on the held-out volumes of --data (masks seeded from 5000) and write them "
            "into the run's config.json (the grid's scores: pnp_sweep.json).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@cli.command()
@train_options
@pnp_options
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Run directory (config.json, checkpoints/, tensorboard/). Rerunning the same command resumes.",
)
@click.option("--force", is_flag=True, help="Continue a run in --out even though its saved config differs.")
@click.option(
    "--config",
    "config_file",
    metavar="FILE|pretrained:NAME",
    default=None,
    help="Start from this run config (a run's config.json) or from a pretrained model's recipe "
    "(pretrained:NAME: its architecture, masks, loss and optimiser, without its training data: --data "
    "is then required, and --extra-data and --init-from are only what is given); options given on the "
    "command line override its fields.",
)
@click.pass_context
@one_line_errors
def fit(ctx, out, force, config_file, **options):
    """Train the reconstruction GAN, or a plug-and-play denoiser (resumes from the last checkpoint in --out).

    \b
    kerasrecon fit --data demo --loss hybrid --out runs/hybrid --vgg-weights PATH/TO/vgg19_..._notop.h5
    kerasrecon fit --data data/knee --loss mse -R 8 --mask poisson --steps 20000 --out runs/mse_r8
    kerasrecon fit --config runs/mse_r8/config.json --data data/other --out runs/mse_r8_other
    kerasrecon fit --config pretrained:singlecoil-r4 --init-from pretrained:singlecoil-r4 --data data/knee
        --pretrain-steps 1000 --lr 3e-4 --out runs/r4_knee   (fine-tune the shipped model on your data)
    kerasrecon fit --data data/knee --extra-data data/brain --loss mse --out runs/knee_and_brain
    kerasrecon fit --network denoiser --data data/knee --extra-data data/brain --out runs/pnp_r8
    """
    from kerasrecon.training.trainer import train

    pnp_sweep = options.pop("pnp_sweep")
    fields = _given_fields(ctx)
    denoiser = options["network"] == DENOISER
    base = None
    if config_file:
        where = f"--config {config_file}"
        saved = _saved_config(config_file, where, fields)
        if "model.network" in fields and denoiser != (saved.pnp is not None):
            raise KerasReconError(
                f"--network {options['network']}: {where} is "
                + ("a plug-and-play config" if saved.pnp else "not a plug-and-play config")
                + "; leave out --config to start from "
                + ("the thesis' defaults" if saved.pnp else "the plug-and-play recipe")
            )
        base, denoiser = saved.to_dict(), saved.pnp is not None
    elif denoiser:
        base = pnp_recipe().to_dict()
    pnp_given = sorted(OPTIONS[f] for f in fields if f.startswith("pnp."))
    if pnp_given and not denoiser:
        raise KerasReconError(f"{pnp_given[0]} applies to --network denoiser only")
    if pnp_sweep and not denoiser:
        raise KerasReconError("--pnp-sweep applies to --network denoiser only")
    cfg = config_from_options(options) if base is None else _merge_config(base, options, fields)
    if pnp_sweep:
        from kerasrecon import pnp

        pnp.held_out_volumes(cfg)  # no held-out volume: refused before training
    result = train(cfg, out, force=force, progress=_Progress(out))
    logs = f"tensorboard --logdir {Path(out) / 'tensorboard'}"
    on = f" on {result.replicas} replicas" if result.replicas > 1 else ""
    click.echo(f"trained steps {result.start_step}..{result.step}{on}; run in {out} ({logs})")
    if pnp_sweep:
        swept = pnp.sweep_run(
            out,
            pnp.SWEEP_ITERS,
            pnp.SWEEP_SIGMA_FIRST,
            progress=lambda r: click.echo(f"sweep: K {r['iters']}, σ_first {r['sigma_first']:g}: {r['psnr']:.2f} dB"),
        )
        best = swept["best"]
        click.echo(
            f"chosen on {swept['slices']} held-out slices: --pnp-iters {best['iters']} --sigma-first "
            f"{best['sigma_first']:g} (in {Path(out) / 'config.json'}; scores in {Path(out) / pnp.SWEEP_FILE})"
        )


# evaluate and compare score against the same target
TARGET_OPTION = click.option(
    "--target",
    "target",
    type=click.Choice(TARGETS),
    default=TARGETS[0],
    show_default=True,
    help="Multi-coil data: score against the SENSE-combined image (what the models are trained on) or "
    "the coil images' root-sum-of-squares (fastMRI's multi-coil target). Single-coil: |image| either way.",
)

ENSEMBLE_OPTION = click.option(
    "--ensemble",
    type=click.Choice([str(n) for n in ENSEMBLE_SIZES]),
    default="1",
    show_default=True,
    callback=lambda _ctx, _param, value: int(value),
    help="Self-ensemble: also reconstruct the acquisition mirrored (2: in H, 4: in H and W) and "
    "transposed (8), each an exact acquisition of the transformed image, and average the complex "
    "outputs turned back. Costs N times the model's time. export: built into the SavedModel; "
    "elsewhere --model must be a run or pretrained:NAME (an export has its own, from export --ensemble).",
)


def baseline_options(fn):
    """--baselines / --baseline-lambdas / --baseline-iters / --baseline-tol (evaluate and compare)."""
    from kerasrecon.baselines import BASELINES, CHECK_EVERY, DEFAULT_ITERS, DEFAULT_TOLS, LAMBDA_GRID

    opts = [
        click.option(
            "--baselines",
            default="",
            metavar="NAMES",
            help=f"Classical rows on the same masked k-space, comma-separated, from {', '.join(BASELINES)} "
            "(l1wavelet and multi-coil tv: sigpy, pip install 'kerasrecon[baselines]'). zero_filled is always "
            "scored. Solvers run to convergence (--baseline-tol).",
        ),
        click.option(
            "--baseline-lambdas",
            default=None,
            metavar="L1,L2,...",
            help="λ grid swept on the run's TRAINING slices (never the evaluated ones); one value = fixed λ. "
            f"Default {','.join(f'{g:g}' for g in LAMBDA_GRID)} (k-space normalised to zero-filled max 1).",
        ),
        click.option(
            "--baseline-iters",
            type=int,
            default=DEFAULT_ITERS,
            show_default=True,
            help="Most iterations per slice for tv/l1wavelet (the stopping rule's cap).",
        ),
        click.option(
            "--baseline-tol",
            type=float,
            default=None,
            help=f"Stop a solver when the relative change of its image over {CHECK_EVERY} iterations falls "
            "below this (0: always run --baseline-iters). Default per solver: "
            + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOLS.items())
            + ". The iterations used are recorded in the results.",
        ),
        click.option(
            "--baseline-tune-data",
            default=None,
            metavar="DATA",
            help="Sweep λ on the training split of this dataset (default: the run's data), e.g. one "
            "prepared with the same --phase/--noise as --data. Its held-out part is never used.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _baseline_kwargs(baselines, baseline_lambdas, baseline_iters, baseline_tol, baseline_tune_data=None):
    names = [n for n in baselines.replace(",", " ").split()]
    grid = None
    if baseline_lambdas:
        try:
            grid = [float(v) for v in baseline_lambdas.replace(",", " ").split()]
        except ValueError:
            raise KerasReconError(  # noqa: B904  (one line for the user; the parse error adds nothing)
                f"--baseline-lambdas must be numbers, comma-separated. Received: {baseline_lambdas!r}"
            )
    if baseline_iters < 1:
        raise KerasReconError(f"--baseline-iters must be >= 1. Received: {baseline_iters}")
    if baseline_tol is not None and (not baseline_tol >= 0 or baseline_tol == float("inf")):
        raise KerasReconError(f"--baseline-tol must be a finite number >= 0. Received: {baseline_tol}")
    return dict(
        baselines=names,
        baseline_grid=grid,
        baseline_iters=baseline_iters,
        baseline_tol=baseline_tol,
        baseline_tune_data=baseline_tune_data,
        note=lambda msg: click.echo(f"baseline {msg}", err=True),
    )


@cli.command()
@click.option(
    "--model",
    "model_dir",
    type=MODEL,
    required=True,
    help="A run directory written by 'kerasrecon fit', a SavedModel from 'kerasrecon export', or "
    "pretrained:NAME (a model shipped in the package: 'kerasrecon pretrained' lists them).",
)
@click.option("--data", default=None, help="'demo' or a prepared dataset directory (default: the run's).")
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="val",
    show_default=True,
    help="val: the run's held-out part of --data; all: every slice.",
)
@click.option("--acceleration", "-R", type=float, default=None, help="R (default: the run's).")
@click.option(
    "--mask", "mask_kind", type=click.Choice(MASK_KINDS), default=None, help="Mask kind (default: the run's)."
)
@click.option("--mask-seed", type=int, default=None, help="Mask seed (default: the run's); volume i uses seed + i.")
@click.option("--center-fraction", type=float, default=None, help="Fully sampled centre (default: the run's).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Slices per generator call.")
@click.option(
    "--acquisition",
    default=None,
    metavar="NAME",
    help="Score only volumes of this fastMRI acquisition (CORPD_FBK, CORPDFS_FBK, ...), as fastMRI's "
    "evaluation does (default: all).",
)
@TARGET_OPTION
@ENSEMBLE_OPTION
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Writes slices.csv and summary.json here.")
@click.option("--force", is_flag=True, help="Overwrite slices.csv/summary.json in --out.")
@baseline_options
@one_line_errors
def evaluate(
    model_dir,
    data,
    split,
    acceleration,
    mask_kind,
    mask_seed,
    center_fraction,
    batch_size,
    acquisition,
    target,
    ensemble,
    out,
    force,
    **baseline,
):
    """Reconstruct held-out slices and score them (NMSE, PSNR, SSIM, HFEN) next to zero-filling.

    \b
    kerasrecon evaluate --model runs/hybrid --out eval/ --baselines tv,l1wavelet
    """
    from kerasrecon import evaluate as ev

    ev.check_results_out(out, force, inputs=[("--model", model_dir), ("--data", data)])
    changes = _mask_changes(acceleration, mask_kind, mask_seed, center_fraction)
    res = ev.evaluate_run(
        model_dir,
        data,
        changes,
        split,
        batch_size,
        progress=_SliceProgress(),
        acquisition=acquisition,
        target=target,
        ensemble=ensemble,
        **_baseline_kwargs(**baseline),
    )
    rows, summary, meta = res.rows, res.summary, res.meta
    ev.write_results(rows, summary, out, meta, force=force)
    _echo_summary(summary, meta)
    click.echo(f"wrote {Path(out) / 'slices.csv'} and {Path(out) / 'summary.json'}")


def _mask_changes(acceleration=None, kind=None, seed=None, center_fraction=None) -> dict:
    """The ``MaskConfig`` fields a command's explicit -R/--mask/--mask-seed/--center-fraction override
    (options left unset keep the run's own)."""
    given = dict(acceleration=acceleration, kind=kind, seed=seed, center_fraction=center_fraction)
    return {field: value for field, value in given.items() if value is not None}


class _SliceProgress:
    """Progress over slices: a Keras progress bar on a terminal (a new bar for each file: new total);
    one plain line per call with the elapsed time when stdout is a file or pipe (no carriage returns
    or colour codes in logs)."""

    def __init__(self):
        import time

        self.bar, self.total, self.last, self.t0 = None, None, 0, time.perf_counter()
        self.tty = sys.stdout.isatty()

    def __call__(self, done, total, what=None):
        import time

        if not self.tty:
            click.echo(f"{done}/{total} slices ({time.perf_counter() - self.t0:.0f} s)" + (f": {what}" if what else ""))
            return
        if what:  # the bar moves per volume; within one, a method finished
            return
        import keras

        if self.bar is None or total != self.total or done <= self.last:
            self.bar, self.total = keras.utils.Progbar(total, unit_name="slice"), total
        self.last = done
        self.bar.update(done)


def _echo_summary(summary, meta):
    mask = meta["mask"]
    click.echo(
        f"R={mask['acceleration']:g} mask={mask['kind']} seed={mask['seed']} data={meta['data']} "
        f"split={meta['split']} target={meta.get('target', '|image|')}"
        + (f" ensemble={meta['ensemble']}" if meta.get("ensemble", 1) > 1 else "")
        + " (mean ± std over slices)"
    )
    for method, s in summary.items():
        o = s["over_slices"]
        click.echo(
            f"  {method:12s} PSNR {o['psnr']['mean']:6.2f} ± {o['psnr']['std']:.2f} dB  "
            f"NMSE {o['nmse']['mean']:.4f}  SSIM {o['ssim']['mean']:.4f}  HFEN {o['hfen']['mean']:.4f}  "
            f"{s.get('seconds_per_slice', float('nan')):.3f} s/slice"
        )
    for name, b in meta.get("baselines", {}).items():
        click.echo(f"  {name}: λ = {b['lam']:g}, {b['iters']} iterations ({b['tuned_on']})")


@cli.command()
@click.option(
    "--predictions",
    type=click.Path(),
    required=True,
    help="Directory of <name>.h5 files with 'reconstruction' [slices, h, w] (reconstruct's output).",
)
@click.option(
    "--targets",
    type=click.Path(),
    required=True,
    help="Directory of fastMRI files <name>.h5 with reconstruction_esc (single coil) or _rss.",
)
@click.option("--acquisition", default=None, metavar="NAME", help="Only targets of this acquisition (CORPD_FBK...).")
@click.option(
    "--target-key",
    type=click.Choice(TARGET_KEYS),
    default=None,
    help="Target dataset (default: the one each file has).",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the scores as JSON here.")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@one_line_errors
def score(predictions, targets, acquisition, target_key, out, force):
    """Score prediction files against fastMRI targets, as fastMRI's evaluate.py does (per volume).

    Prints fastMRI's summary (mean +/- 2·std over volumes) beside kerasrecon's (mean ± std, n).
    """
    from kerasrecon.evaluate import score_predictions
    from kerasrecon.io import check_output, write_text_atomic

    if out:
        check_output(out, "--out", inputs=[("--predictions", predictions), ("--targets", targets)], force=force)
    res = score_predictions(predictions, targets, acquisition=acquisition, target_key=target_key)
    n = res["summary"]["psnr"]["n"]
    click.echo(f"{n} volume(s), target {res['target_key']}" + (f", acquisition {acquisition}" if acquisition else ""))
    click.echo("fastMRI convention: " + " ".join(f"{k} = {v}" for k, v in res["fastmri"].items()))
    click.echo(
        "kerasrecon (mean ± std over volumes): "
        + "  ".join(f"{m.upper()} {s['mean']:.4g} ± {s['std']:.3g}" for m, s in res["summary"].items())
    )
    if out:
        write_text_atomic(Path(out), json.dumps(res, indent=2))
        click.echo(f"wrote {out}")


@cli.command()
@click.argument("run_dir", type=MODEL)
@click.option("--out", type=click.Path(), required=True, help="SavedModel directory to create.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@ENSEMBLE_OPTION
@one_line_errors
def export(run_dir, out, force, ensemble):
    """Export RUN_DIR's newest generator (or pretrained:NAME) as a TensorFlow SavedModel (k-space -> image,
    DC inside).

    \b
    Signatures: serving_default(kspace_real, kspace_imag [B,H,W], mask [B,H,W]|[H,W]) -> image, complex_image
                multicoil(kspace_real, kspace_imag [B,C,H,W], mask [B,H,W]|[H,W]) -> image, complex_image
                from_zero_filled(zero_filled [B,H,W,2]) -> image, complex_image
    Inspect with: saved_model_cli show --dir OUT --all
    --ensemble N bakes the self-ensemble into every signature (N times the time per call).
    A plug-and-play model (pretrained:singlecoil-r8, fit --network denoiser) exports its whole solver:
    serving_default alone runs converged TV (a TensorFlow while loop, the baselines' stopping rule), then
    the denoiser and data-consistency steps, with --ensemble inside each denoiser step. Single-coil only.
    """
    from kerasrecon.export import export_run

    path = export_run(run_dir, out, force=force, ensemble=ensemble)
    click.echo(f"exported {run_dir} to {path} (metadata: {path / 'assets' / 'kerasrecon.json'})")


@cli.command()
@click.option(
    "--model",
    "model_dir",
    type=MODEL,
    required=True,
    help="An exported SavedModel ('kerasrecon export'), a run directory ('kerasrecon fit'), or "
    "pretrained:NAME ('kerasrecon pretrained' lists them).",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(),
    required=True,
    help="fastMRI .h5 (single-coil [S, H, W] or multi-coil [S, C, H, W] k-space: coil maps are estimated in the "
    "graph), a prepared volume .h5, or a directory of them.",
)
@click.option("--output", type=click.Path(), required=True, help="Output .h5 (or directory for a directory input).")
@click.option(
    "--acceleration",
    "-R",
    type=float,
    default=None,
    help="R for files without their own 'mask' dataset (default: the R the model was trained with).",
)
@click.option(
    "--mask",
    "mask_kind",
    type=click.Choice(MASK_KINDS),
    default=None,
    help="Mask kind for files without their own mask (default: the model's training mask kind).",
)
@click.option("--mask-seed", type=int, default=None, help="Mask seed (default: the model's training mask seed).")
@click.option(
    "--center-fraction", type=float, default=None, help="Fully sampled centre (default: the model's training mask's)."
)
@click.option(
    "--crop",
    type=(int, int),
    default=None,
    metavar="H W",
    help="Centre-crop the output (default 320 320 for fastMRI files).",
)
@click.option(
    "--grid",
    type=click.Choice(GRIDS),
    default="trained",
    show_default=True,
    help="Fully sampled fastMRI files: 'trained' reconstructs on the 320×320 grid the models train on "
    "(crop, re-transform, mask drawn there: fastMRI's submission grid); 'file' on the raw 640×368 "
    "grid, output cropped. Undersampled files (own 'mask') always use their own grid.",
)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Slices per model call.")
@ENSEMBLE_OPTION
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@one_line_errors
def reconstruct(
    model_dir,
    input_path,
    output,
    acceleration,
    mask_kind,
    mask_seed,
    center_fraction,
    crop,
    grid,
    batch_size,
    ensemble,
    force,
):
    """Reconstruct k-space files; writes 'reconstruction' [slices, H, W] (fastMRI submission layout)."""
    from kerasrecon.reconstruct import reconstruct_files

    changes = _mask_changes(acceleration, mask_kind, mask_seed, center_fraction)
    paths = reconstruct_files(
        model_dir,
        input_path,
        output,
        mask_changes=changes,
        batch_size=batch_size,
        crop=crop,
        force=force,
        progress=_SliceProgress(),
        grid=grid,
        ensemble=ensemble,
    )
    for p in paths:
        click.echo(f"wrote {p}")


@cli.command()
@click.argument("runs", nargs=-1)
@click.option(
    "--train",
    "do_train",
    is_flag=True,
    help="Train one run per --losses entry first (same seed, data and fit options) under OUT/runs/.",
)
@click.option(
    "--losses",
    default=",".join(THESIS_LOSSES),
    show_default=True,
    help="With --train: losses to train, comma- or space-separated, from "
    + ", ".join(CONTENT_LOSS_NAMES)
    + " (--losses mse feature hybrid).",
)
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="val",
    show_default=True,
    help="Evaluate the held-out part of the data or all of it.",
)
@click.option("--eval-batch-size", type=int, default=4, show_default=True, help="Slices per generator call.")
@click.option("--no-figures", is_flag=True, help="Write tables only (no matplotlib needed).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Writes table.md/.csv, slices.csv, summary.json, examples.png, psnr.png.",
)
@click.option("--force", is_flag=True, help="Overwrite comparison files in --out.")
@click.option(
    "--acquisition",
    default=None,
    metavar="NAME",
    help="Compare only volumes of this fastMRI acquisition (CORPD_FBK, CORPDFS_FBK, ...; default: all).",
)
@TARGET_OPTION
@ENSEMBLE_OPTION
@baseline_options
@train_options
@click.pass_context
@one_line_errors
def compare(
    ctx,
    runs,
    do_train,
    losses,
    split,
    eval_batch_size,
    no_figures,
    out,
    force,
    acquisition,
    target,
    ensemble,
    baselines,
    baseline_lambdas,
    baseline_iters,
    baseline_tol,
    baseline_tune_data,
    **options,
):
    """Compare runs (RUNS: fit output dirs or pretrained:NAME) on the same slices and masks: table + figures.

    \b
    kerasrecon compare runs/mse runs/feature runs/hybrid --out cmp/
    kerasrecon compare runs/mse pretrained:singlecoil-r4 --out cmp/
    kerasrecon compare --train --losses mse feature hybrid --steps 2000 --out cmp/
    kerasrecon compare runs/hybrid --baselines tv,l1wavelet --out cmp/   (Δ then vs tv)
    Without --train, --data, --acceleration, --mask and --mask-seed (when given) override the runs' own.
    """
    from kerasrecon import compare as cmp

    given = {k for k in options if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    common = dict(
        split=split,
        batch_size=eval_batch_size,
        figures=not no_figures,
        progress=_SliceProgress(),
        acquisition=acquisition,
        target=target,
        ensemble=ensemble,
        **_baseline_kwargs(baselines, baseline_lambdas, baseline_iters, baseline_tol, baseline_tune_data),
    )
    if do_train:
        if options["network"] == DENOISER:
            raise KerasReconError(
                "--network denoiser: compare --train trains one model per content loss; train a plug-and-play "
                "model with kerasrecon fit --network denoiser, then compare its run"
            )
        names = [n for part in [losses, *runs] for n in part.replace(",", " ").split()]
        unknown = [n for n in names if n not in CONTENT_LOSS_NAMES]
        if unknown:
            raise KerasReconError(f"--losses: unknown loss {unknown[0]!r}; expected {', '.join(CONTENT_LOSS_NAMES)}")
        result = cmp.train_and_compare(
            config_from_options(options), names, out, force=force, progress_factory=_Progress, **common
        )
    else:
        if not runs:
            raise KerasReconError("compare needs RUN directories, or --train to train them first")
        changes = _mask_changes(
            *(options[o] if o in given else None for o in ("acceleration", "mask_kind", "mask_seed", "center_fraction"))
        )
        result = cmp.compare_runs(
            list(runs),
            out,
            data=options["data"] if "data" in given else None,
            mask_changes=changes,
            force=force,
            **common,
        )
    click.echo((Path(out) / "table.md").read_text())
    click.echo(
        f"wrote {out}/table.md, table.csv, slices.csv, summary.json"
        + ("" if no_figures else ", examples.png, psnr.png")
    )
    return result


@cli.command()
@click.argument("name", required=False)
@one_line_errors
def pretrained(name):
    """List the pretrained models shipped in the package, or print NAME's model card.

    \b
    kerasrecon pretrained                      # names and one-line summaries
    kerasrecon pretrained singlecoil-r4        # the card: training data, recipe, licence, results
    Use them wherever a model is accepted as pretrained:NAME (reconstruct --model, evaluate --model,
    compare, export).
    """
    from kerasrecon import pretrained as pt

    if name is None:
        for n, summary in pt.pretrained_models().items():
            click.echo(f"pretrained:{n}  {summary}")
        return
    click.echo(pt.card(name, option="NAME").rstrip("\n"))


def main(argv=None):
    """Console-script entry point: SIGTERM handling and quiet TensorFlow, then the click group."""
    import signal

    args = sys.argv[1:] if argv is None else list(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if TF_COMMANDS & set(args) and not {"-h", "--help", "--version"} & set(args):
            backend = keras_backend()
            if backend not in SUPPORTED_BACKENDS:
                _fail(
                    f"KERAS_BACKEND={backend}: kerasrecon runs on {' or '.join(SUPPORTED_BACKENDS)} "
                    "(set KERAS_BACKEND to one of them)"
                )
            # TensorFlow's later C++ lines (the cuInit error) follow TF_CPP_MIN_LOG_LEVEL, read at its import
            if {"-v", "--verbose"} & set(args):
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
            else:
                os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # our errors are one line; --verbose shows TensorFlow's
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted_exit(exc)
    cli(args=args, prog_name="kerasrecon")


if __name__ == "__main__":
    main()

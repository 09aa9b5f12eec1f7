"""One configuration, frozen dataclasses, flowing CLI -> trainer -> checkpoint -> SavedModel metadata.

Defaults are the seed thesis' settings (B = 16 residual blocks, 96×96 patches, batch 16, Adam lr 1e-4
β1 0.9, λ_adv = 1e-3, hybrid α = β = 0.5, 1e5 iterations). ``TrainConfig.to_json`` /
``TrainConfig.from_dict`` round-trip exactly; unknown keys are an error, not silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from kerasrecon.errors import ConfigError, arg

CONTENT_LOSS_NAMES = ("mse", "feature", "hybrid", "ssim", "l1ssim")
THESIS_LOSSES = ("mse", "feature", "hybrid")  # the thesis' comparison (compare --train's default)
VGG_LOSSES = ("feature", "hybrid")  # content losses that need VGG19 features
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16", "float64")
SAMPLINGS = ("patch", "slice")
LR_SCHEDULES = ("constant", "cosine")
NETWORKS = ("resnet", "unet")  # what ``fit`` trains
# ``model.network`` of a plug-and-play model (``TrainConfig.pnp``; ``kerasrecon.training.denoiser``)
DENOISER = "denoiser"
PNP_INITS = ("tv", "zf")  # plug-and-play starts from the converged TV image or the zero-filled image
# Evaluation and serving choices (one home; the CLI builds its choice lists from these).
SPLITS = ("val", "all")  # evaluate the run's held-out part of the data, or all of it
TARGETS = ("sense", "rss")  # multi-coil results scored against the SENSE-combined image or the coil RSS
TARGET_KEYS = ("reconstruction_esc", "reconstruction_rss")  # fastMRI's single- and multi-coil targets
GRIDS = ("trained", "file")  # reconstruct fully sampled fastMRI files on the 320x320 training grid or their own


@dataclass(frozen=True)
class MaskConfig:
    """How k-space is undersampled.

    Attributes:
        kind: ``poisson`` | ``random`` | ``equispaced``.
        acceleration: R (samples = H·W / R).
        seed: base seed; the mask of volume/sample i uses ``seed + i``.
        per_sample: draw a new mask for every training sample (from a bank of ``bank_size``)
            instead of one fixed mask per volume.
        bank_size: number of pre-drawn masks when ``per_sample`` is set.
        center_fraction: fully sampled centre: the fraction of columns of a line mask (fastMRI uses
            0.08 at R = 4, 0.04 at R = 8) or the side of a Poisson mask's calibration square, as a
            fraction of H and W. ``None``: each kind's default (lines 0.08, Poisson 0.05).
    """

    kind: str = "poisson"
    acceleration: float = 4.0
    seed: int = 0
    center_fraction: float | None = None
    per_sample: bool = False
    bank_size: int = 64


@dataclass(frozen=True)
class DataConfig:
    """Where the data are and how training samples are cut.

    Attributes:
        data: ``demo`` or a directory written by ``kerasrecon data prepare``.
        patch_size: side of the square training patches (pixels).
        batch_size: global batch size (split over replicas).
        val_fraction: fraction of volumes (or, with one volume, of slices) held out.
        sampling: ``patch`` (the thesis: each patch undersampled on its own p×p grid, exact data
            consistency in training) or ``slice`` (undersample the whole slice with a slice-shaped
            mask, then crop the same window from zero-filled input and target: the aliasing the
            network learns is the aliasing it meets at inference; the patch's DC is then off in
            training — the mask fed is zeros — unless the patch is the whole slice). Multi-coil
            data: ``patch`` measures the window's coil images on the p×p grid and trains with exact
            multi-coil DC; ``slice`` feeds windows of the slice's SENSE-combined zero-filled image.
        augment: with ``sampling="patch"``, each training patch is first turned by one of the 8
            flips/quarter turns of the square and multiplied by a global phase e^{iφ} (φ uniform in
            [0, 2π)), drawn from ``(seed, element index)``; multi-coil: the window's maps turn with it.
            The masks are not turned (they are the acquisition's).
        zoom: with ``sampling="patch"``, the largest scale factor Z of a random zoom (1 = none): each
            training patch is then the cubic-spline interpolation, on the p×p grid, of a window of side
            p/z inside its p×p window (z log-uniform in [1, Z], the window's place uniform; drawn from
            ``(seed, element index)``), measured on its own grid as any patch. Zoomed patches carry
            fewer details per pixel than the slice: images of a finer matrix than the training
            volumes'. Multi-coil maps are zoomed with it (linear interpolation).
    """

    data: str = "demo"
    patch_size: int = 96
    batch_size: int = 16
    val_fraction: float = 0.2
    sampling: str = "patch"
    augment: bool = False
    zoom: float = 1.0
    extra_data: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelConfig:
    """Generator/discriminator sizes.

    Attributes:
        blocks: residual blocks in the generator (B).
        filters: conv filters in the generator.
        noise_lambda: ``None`` = hard data consistency; a float = soft DC with that λ.
        cascades: K generator + DC stages in series (1 = the thesis' generator).
        learned_dc: each DC stage learns its step η in ``k − η M ⊙ (k − s0)`` (initialised to 1, hard DC;
            E2E-VarNet's soft data consistency); ``noise_lambda`` is then unused.
        network: each stage's regulariser: ``resnet`` (the thesis' residual generator, ``blocks`` residual
            blocks) or ``unet`` (a U-Net of ``levels`` 2× poolings, ``filters`` channels at full
            resolution doubling per level: a receptive field that grows with the image's scale).
        levels: the U-Net's poolings (``network="unet"``).
        share_weights: all cascades use one regulariser's weights (an unrolled iteration; the DC steps η
            stay per cascade).
        bias_free: a scale-equivariant generator, ``G(c·x) = c·G(x)`` for every c > 0 at inference
            (Mohan et al., ICLR 2020): no additive constant anywhere — convolutions without bias, and
            :class:`~kerasrecon.models.generator.ScaleNorm` (divide by the RMS, no mean, no shift) in place
            of BatchNorm. The input normalisation then no longer decides what the network does: a dark
            region of a large image is treated as a bright training patch of the same structure.
        cg_iters: 0 (data consistency as above), or MoDL's: each cascade solves
            ``argmin ‖A x − y‖² + μ ‖x − z‖²`` for the regulariser's image z with a learned μ per cascade;
            multi-coil by this many conjugate-gradient iterations (the coils' redundancy resolves
            aliasing), single-coil exactly (η = 1 / (1 + μ)).
    """

    blocks: int = 16
    filters: int = 64
    noise_lambda: float | None = None
    cascades: int = 1
    learned_dc: bool = False
    network: str = "resnet"
    levels: int = 3
    share_weights: bool = False
    bias_free: bool = False
    cg_iters: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Generator loss ``content + adv_weight · BCE(D(ŷ), 1)``.

    Attributes:
        content: ``mse`` | ``feature`` | ``hybrid`` (= mse_weight·MSE + feature_weight·feature).
        mse_weight: α of the hybrid loss.
        feature_weight: β of the hybrid loss.
        adv_weight: λ of the adversarial term.
        vgg_weights: ``imagenet`` | path to ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` |
            ``none`` (random VGG, tests only).
    """

    content: str = "hybrid"
    mse_weight: float = 0.5
    feature_weight: float = 0.5
    adv_weight: float = 1e-3
    vgg_weights: str = "imagenet"


@dataclass(frozen=True)
class PnPConfig:
    """A plug-and-play reconstructor (:mod:`kerasrecon.pnp`): a learned denoiser D(x, σ) as the prior
    of a data-consistent solver, with ``model.network = "denoiser"``.

    The denoiser is trained on crops of fully sampled images with added noise (no mask): each
    ``data.patch_size``² crop is scaled to peak 1, turned by one of the 8 flips/quarter turns, given
    a global phase and complex Gaussian noise of σ ~ U(0, ``sigma_max``) per channel. The solver
    starts from ``init`` and takes ``iters`` steps ``x ← Fᴴ[M ⊙ y + (1 − M) ⊙ F D(x, σ_k)]``, σ_k
    geometric from ``sigma_first`` to ``sigma_last`` (relative to the zero-filled image's peak).

    Attributes:
        sigma_max: the largest training noise σ, relative to the crop's peak.
        iters: solver steps K.
        sigma_first, sigma_last: the first and last σ_k (σ_last: about the data's noise level).
        tv_lambda: λ of the converged TV start (``kerasrecon.baselines.solve``) with ``init="tv"``.
        init: ``tv`` (converged TV; a few steps refine it) or ``zf`` (the zero-filled image).
    """

    sigma_max: float = 0.2
    iters: int = 10
    sigma_first: float = 0.02
    sigma_last: float = 0.01
    tv_lambda: float = 1e-3
    init: str = "tv"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        steps: GAN iterations (one D then one G update each).
        pretrain_steps: MSE-only generator warm-start steps before the GAN steps.
        learning_rate, beta_1: Adam settings for both G and D.
        lr_schedule: ``constant`` (the thesis) or ``cosine`` (decay from ``learning_rate`` to 1 % of it
            over ``pretrain_steps + steps`` updates; short runs can start higher and still settle; the
            discriminator, which steps only in the GAN phase, reads it at the global step).
        seed: seed of patches, weight initialisation and shuffling.
        strategy: ``auto`` | ``none`` | ``mirrored`` | ``multiworker`` (cluster from TF_CONFIG).
        precision: ``auto`` | ``float32`` | ``mixed_float16`` | ``mixed_bfloat16`` | ``float64`` (reference
            arithmetic for numerical checks; TensorFlow only).
        jit: XLA-compile the train step; ``None`` = auto (on for GPUs).
        collective_timeout_s: multi-worker collectives fail after this many seconds (dead worker).
        checkpoint_every: steps between checkpoints.
        log_every: steps between reads of the step's values from the device (TensorBoard scalars,
            progress, the finiteness check, which names the first non-finite step); between reads the
            device runs ahead without a host round trip.
        pnp: a plug-and-play model's denoiser training and solver settings (``model.network``
            ``denoiser``; ``kerasrecon.training.denoiser`` trains it in ``pretrain_steps`` MSE steps); ``None``
            for the end-to-end generators that ``fit`` trains.
        init_from: fine-tuning: a run directory or ``pretrained:NAME`` whose generator weights are copied,
            by name, into this run's generator at step 0 (every one of them must exist here with the
            same shape; weights this architecture adds, such as ``model.cg_iters``' μ, start at their
            initial values); ``None``: random initialisation. A resumed run loads its own checkpoint.
    """

    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 100_000
    pretrain_steps: int = 0
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    beta_1: float = 0.9
    seed: int = 0
    strategy: str = "auto"
    precision: str = "auto"
    jit: bool | None = None
    collective_timeout_s: float = 300.0
    checkpoint_every: int = 1000
    log_every: int = 100
    pnp: PnPConfig | None = None
    init_from: str | None = None

    def __post_init__(self):
        validate(self)

    @property
    def method(self) -> str:
        """How results name a model of this config: ``pnp`` for a plug-and-play model, else its content loss."""
        return "pnp" if self.pnp is not None else self.loss.content

    def to_dict(self) -> dict:
        """Nested plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Sorted, indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d, where: str = "config") -> TrainConfig:
        """Inverse of ``to_dict``: structure and types checked (:mod:`kerasrecon.schema`), then ranges.

        Raises:
            DataError: naming ``where`` (e.g. ``RUN/config.json``) and the key: not an object, an
                unknown or missing key, a value of the wrong type (``"blocks": 1.5``) or out of range.
        """
        from kerasrecon.schema import from_dict

        return from_dict(cls, _migrated(d), where)

    @classmethod
    def from_json(cls, text, where: str = "config") -> TrainConfig:
        """Parse JSON written by ``to_json`` (``DataError`` naming ``where`` on bad UTF-8/JSON/schema)."""
        from kerasrecon.schema import parse_json

        return cls.from_dict(parse_json(text, where, "a kerasrecon run config"), where)


def _migrated(d):
    """A config dict of an earlier version in today's layout (a copy; anything else is returned as
    is): ``pnp.extra_data`` (kerasrecon 0.9–0.12, plug-and-play only) is ``data.extra_data``."""
    pnp, data = (d.get("pnp"), d.get("data")) if isinstance(d, dict) else (None, None)
    if not (isinstance(pnp, dict) and "extra_data" in pnp and isinstance(data, dict) and "extra_data" not in data):
        return d
    pnp, data = dict(pnp), dict(data)
    data["extra_data"] = pnp.pop("extra_data")
    return {**d, "pnp": pnp, "data": data}


# Fields that may change between a run and its resumption (a plug-and-play model's solver settings
# too: they are used at reconstruction, not in training).
PNP_SOLVER_FIELDS = {"pnp.iters", "pnp.sigma_first", "pnp.sigma_last", "pnp.tv_lambda", "pnp.init"}
RESUMABLE_CHANGES = {
    "steps",
    "checkpoint_every",
    "log_every",
    "strategy",
    "precision",
    "jit",
    "collective_timeout_s",
    *PNP_SOLVER_FIELDS,
}
# Fields that change the shapes of saved variables: even --force cannot continue a run across them
# (lr_schedule: a constant rate is an optimizer variable, a schedule is not).
ARCHITECTURE_FIELDS = (
    "model.blocks",
    "model.filters",
    "model.cascades",
    "model.learned_dc",
    "model.network",
    "model.levels",
    "model.share_weights",
    "model.bias_free",
    "model.cg_iters",
    "data.patch_size",
    "lr_schedule",
)

# The most conjugate-gradient iterations per data-consistency layer (each is unrolled in the graph).
MAX_CG_ITERS = 50

# The largest --zoom: a p×p patch then interpolates a window of side p/4.
MAX_ZOOM = 4.0

# Seeds feed NumPy's legacy seeding (keras.utils.set_random_seed), TensorFlow and JAX PRNG keys; all
# accept [0, 2**31 - 1], and mask seeds are offset by slice and bank indices (+ 100000 + j) within it.
MAX_SEED = 2**31 - 1 - 200_000


# The fit option of each config field: the CLI runs under ``errors.argument_names(OPTIONS)``, so messages
# that name a field (``errors.arg``) name the option (cli/main.py defines the options themselves).
OPTIONS = {
    "mask.kind": "--mask",
    "mask.acceleration": "--acceleration",
    "mask.seed": "--mask-seed",
    "mask.center_fraction": "--center-fraction",
    "mask.per_sample": "--mask-per-sample",
    "mask.bank_size": "--mask-bank-size",
    "data.data": "--data",
    "data.patch_size": "--patch-size",
    "data.batch_size": "--batch-size",
    "data.val_fraction": "--val-fraction",
    "data.sampling": "--sampling",
    "data.augment": "--augment",
    "data.zoom": "--zoom",
    "data.extra_data": "--extra-data",
    "model.blocks": "--blocks",
    "model.filters": "--filters",
    "model.noise_lambda": "--noise-lambda",
    "model.learned_dc": "--learned-dc",
    "model.cascades": "--cascades",
    "model.network": "--network",
    "model.levels": "--levels",
    "model.share_weights": "--share-weights",
    "model.bias_free": "--bias-free",
    "model.cg_iters": "--cg-iters",
    "loss.content": "--loss",
    "loss.mse_weight": "--alpha",
    "loss.feature_weight": "--beta",
    "loss.adv_weight": "--adv-weight",
    "loss.vgg_weights": "--vgg-weights",
    "steps": "--steps",
    "init_from": "--init-from",
    "pretrain_steps": "--pretrain-steps",
    "learning_rate": "--lr",
    "lr_schedule": "--lr-schedule",
    "beta_1": "--beta1",
    "seed": "--seed",
    "strategy": "--strategy",
    "precision": "--precision",
    "jit": "--jit",
    "collective_timeout_s": "--collective-timeout",
    "checkpoint_every": "--checkpoint-every",
    "log_every": "--log-every",
    "pnp.sigma_max": "--sigma-max",
    "pnp.iters": "--pnp-iters",
    "pnp.sigma_first": "--sigma-first",
    "pnp.sigma_last": "--sigma-last",
    "pnp.tv_lambda": "--tv-lambda",
    "pnp.init": "--pnp-init",
}


def pnp_recipe(data: str = "demo") -> TrainConfig:
    """The plug-and-play recipe of ``pretrained:singlecoil-r8`` (``scripts/pnp.py``'s defaults) on
    ``data``, without its extra datasets: a bias-free 2-level U-Net denoiser of 32 filters, 6000
    MSE steps (``pretrain_steps``) of 16 crops of 64×64, Adam 1e-3 with cosine decay, seed 0, and
    ``PnPConfig``'s solver settings (converged TV λ 1e-3, then 10 steps, σ 0.02 → 0.01) at R = 8.
    ``kerasrecon fit --network denoiser`` starts from it; options given override its fields."""
    return TrainConfig(
        mask=MaskConfig(kind="poisson", acceleration=8.0, seed=0),
        data=DataConfig(data=data, patch_size=64, batch_size=16, augment=True),
        model=ModelConfig(network=DENOISER, filters=32, levels=2, blocks=0, bias_free=True),
        loss=LossConfig(content="mse", adv_weight=0.0, vgg_weights="none"),
        steps=0,
        pretrain_steps=6000,
        learning_rate=1e-3,
        lr_schedule="cosine",
        seed=0,
        checkpoint_every=500,
        log_every=250,
        pnp=PnPConfig(),
    )


def _check_types(obj, prefix: str = ""):
    """Every field of dataclass ``obj`` (nested ones too) against its annotation (one rule with the JSON
    readers: :func:`kerasrecon.schema.check_value`); ``ConfigError`` naming the field."""
    import typing

    from kerasrecon.errors import DataError
    from kerasrecon.schema import check_value

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, name = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            _check_types(value, name + ".")
            continue
        try:
            check_value(value, hints[f.name], arg(name), "")
        except DataError as exc:
            raise ConfigError(str(exc).replace(": the document must", " must", 1)) from None


def validate(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` naming the field (``data.patch_size``; the CLI's option under the CLI) if any
    value has the wrong type or is out of range."""
    from kerasrecon.masks import MASK_KINDS

    _check_types(cfg)
    checks = [
        (cfg.mask.kind in MASK_KINDS, "mask.kind", f"one of {MASK_KINDS}", cfg.mask.kind),
        (cfg.mask.acceleration >= 1, "mask.acceleration", ">= 1", cfg.mask.acceleration),
        (0 <= cfg.mask.seed <= MAX_SEED, "mask.seed", f"in [0, {MAX_SEED}]", cfg.mask.seed),
        (0 <= cfg.seed <= MAX_SEED, "seed", f"in [0, {MAX_SEED}]", cfg.seed),
        (
            cfg.mask.center_fraction is None or 0 <= cfg.mask.center_fraction < 1,
            "mask.center_fraction",
            "in [0, 1)",
            cfg.mask.center_fraction,
        ),
        (cfg.mask.bank_size >= 1, "mask.bank_size", ">= 1", cfg.mask.bank_size),
        (cfg.data.patch_size >= 8, "data.patch_size", ">= 8", cfg.data.patch_size),
        (cfg.data.batch_size >= 1, "data.batch_size", ">= 1", cfg.data.batch_size),
        (0 <= cfg.data.val_fraction < 1, "data.val_fraction", "in [0, 1)", cfg.data.val_fraction),
        (cfg.data.sampling in SAMPLINGS, "data.sampling", f"one of {SAMPLINGS}", cfg.data.sampling),
        (1 <= cfg.data.zoom <= MAX_ZOOM, "data.zoom", f"in [1, {MAX_ZOOM:g}]", cfg.data.zoom),
        (cfg.model.cascades >= 1, "model.cascades", ">= 1", cfg.model.cascades),
        (cfg.model.blocks >= 0, "model.blocks", ">= 0", cfg.model.blocks),
        (
            cfg.model.network in (NETWORKS + (DENOISER,) if cfg.pnp else NETWORKS),
            "model.network",
            f"one of {NETWORKS}",
            cfg.model.network,
        ),
        (1 <= cfg.model.levels <= 6, "model.levels", "in [1, 6]", cfg.model.levels),
        (cfg.model.filters >= 1, "model.filters", ">= 1", cfg.model.filters),
        (0 <= cfg.model.cg_iters <= MAX_CG_ITERS, "model.cg_iters", f"in [0, {MAX_CG_ITERS}]", cfg.model.cg_iters),
        (
            cfg.model.noise_lambda is None or cfg.model.noise_lambda > 0,
            "model.noise_lambda",
            "> 0",
            cfg.model.noise_lambda,
        ),
        (cfg.loss.content in CONTENT_LOSS_NAMES, "loss.content", f"one of {CONTENT_LOSS_NAMES}", cfg.loss.content),
        (cfg.loss.adv_weight >= 0, "loss.adv_weight", ">= 0", cfg.loss.adv_weight),
        (
            cfg.loss.mse_weight >= 0 and cfg.loss.feature_weight >= 0,
            "loss.mse_weight/loss.feature_weight",
            ">= 0",
            (cfg.loss.mse_weight, cfg.loss.feature_weight),
        ),
        (cfg.steps >= 0, "steps", ">= 0", cfg.steps),
        (cfg.pretrain_steps >= 0, "pretrain_steps", ">= 0", cfg.pretrain_steps),
        (cfg.learning_rate > 0, "learning_rate", "> 0", cfg.learning_rate),
        (cfg.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}", cfg.lr_schedule),
        (0 <= cfg.beta_1 < 1, "beta_1", "in [0, 1)", cfg.beta_1),
        (cfg.strategy in STRATEGIES, "strategy", f"one of {STRATEGIES}", cfg.strategy),
        (cfg.precision in PRECISIONS, "precision", f"one of {PRECISIONS}", cfg.precision),
        (cfg.collective_timeout_s > 0, "collective_timeout_s", "> 0", cfg.collective_timeout_s),
        (cfg.checkpoint_every >= 1, "checkpoint_every", ">= 1", cfg.checkpoint_every),
        (cfg.log_every >= 1, "log_every", ">= 1", cfg.log_every),
    ]
    for ok, names, expected, received in checks:
        if not ok:
            raise ConfigError(
                f"{'/'.join(arg(n) for n in names.split('/'))} must be {expected}. Received: {received!r}"
            )
    if cfg.pnp is not None:
        _validate_pnp(cfg)
    if cfg.data.augment and cfg.data.sampling != "patch":
        raise ConfigError(
            f"{arg('data.augment')} turns patches measured on their own grid: it needs {arg('data.sampling')} "
            f"patch. Received: {arg('data.sampling')} {cfg.data.sampling}"
        )
    if cfg.data.zoom != 1 and cfg.data.sampling != "patch":
        raise ConfigError(
            f"{arg('data.zoom')} zooms patches measured on their own grid: it needs {arg('data.sampling')} "
            f"patch. Received: {arg('data.sampling')} {cfg.data.sampling}"
        )
    for d in cfg.data.extra_data:
        if not d.strip() or d == cfg.data.data or cfg.data.extra_data.count(d) > 1:
            what = "an empty name" if not d.strip() else f"{d!r} twice (with {arg('data.data')} or itself)"
            raise ConfigError(f"{arg('data.extra_data')} must name other datasets; it names {what}")
    if cfg.init_from is not None and (not isinstance(cfg.init_from, str) or not cfg.init_from.strip()):
        raise ConfigError(f"{arg('init_from')} must be a run directory or pretrained:NAME. Received: {cfg.init_from!r}")
    if cfg.init_from is not None and cfg.pnp is not None:
        raise ConfigError(
            f"{arg('init_from')} fine-tunes an end-to-end generator; a plug-and-play denoiser starts fresh"
        )
    if cfg.model.cg_iters and (cfg.model.learned_dc or cfg.model.noise_lambda is not None):
        other = arg("model.learned_dc") if cfg.model.learned_dc else arg("model.noise_lambda")
        raise ConfigError(
            f"{arg('model.cg_iters')} learns its own data-consistency weight μ: it cannot be combined with {other}"
        )


def _validate_pnp(cfg: TrainConfig) -> None:
    """The checks of a plug-and-play config (``ConfigError`` naming the field)."""
    p = cfg.pnp
    checks = [
        (cfg.model.network == DENOISER, "model.network", f"{DENOISER!r} with pnp settings", cfg.model.network),
        (cfg.loss.content == "mse", "loss.content", "'mse' (a denoiser trains on MSE alone)", cfg.loss.content),
        (cfg.steps == 0, "steps", f"0 (a denoiser has no GAN steps; {arg('pretrain_steps')} counts its)", cfg.steps),
        (
            cfg.strategy in ("auto", "none"),
            "strategy",
            "'auto' or 'none' (a denoiser trains on one device)",
            cfg.strategy,
        ),
        (
            cfg.precision in ("auto", "float32"),
            "precision",
            "'auto' or 'float32' (a denoiser trains in float32)",
            cfg.precision,
        ),
        (p.sigma_max > 0, "pnp.sigma_max", "> 0", p.sigma_max),
        (p.iters >= 1, "pnp.iters", ">= 1", p.iters),
        (
            0 < p.sigma_last <= p.sigma_first,
            "pnp.sigma_last",
            f"in (0, pnp.sigma_first = {p.sigma_first}]",
            p.sigma_last,
        ),
        (p.tv_lambda > 0, "pnp.tv_lambda", "> 0", p.tv_lambda),
        (p.init in PNP_INITS, "pnp.init", f"one of {PNP_INITS}", p.init),
        (
            cfg.data.patch_size % 2**cfg.model.levels == 0,
            "data.patch_size",
            f"a multiple of 2**{arg('model.levels')} = {2**cfg.model.levels}",
            cfg.data.patch_size,
        ),
    ]
    for ok, name, expected, received in checks:
        if not ok:
            raise ConfigError(f"{arg(name)} must be {expected}. Received: {received!r}")

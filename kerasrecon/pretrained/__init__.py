"""Pretrained generators shipped inside the package, each with a model card.

    >>> import kerasrecon
    >>> kerasrecon.pretrained_models()                       # {name: one-line summary}
    >>> rec = kerasrecon.Reconstructor.pretrained("singlecoil-r4")
    >>> image = rec(kspace, mask)                             # [S, H, W] float32 magnitude
    >>> print(rec.card)                                       # sources, recipe, licence, results

Everywhere a model is accepted the same models are named ``pretrained:NAME``
(``kerasrecon reconstruct --model pretrained:singlecoil-r4``, ``evaluate --model``, ``compare``,
``export``).

Layout: ``kerasrecon/pretrained/NAME/`` holds ``config.json`` (the run's ``TrainConfig``),
``generator.weights.h5`` (the generator only: no discriminator, no optimizer state) and ``card.md``;
``registry.json`` records, per name, the training step, a summary and the SHA-256 of each of those
files. Every load checks the digests first: a changed or truncated file is a ``DataError``, never a
silently different model. ``scripts/pretrained.sh`` retrains every model from scratch and writes
the files and the registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kerasrecon.errors import DataError, arg

PREFIX = "pretrained:"
HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "registry.json"
FILES = ("config.json", "generator.weights.h5", "card.md")


@dataclass(frozen=True)
class PretrainedModel:
    """One registry entry.

    Attributes:
        name: ``singlecoil-r4`` ...; path: its directory; step: training steps of the weights;
        multicoil: trained with multi-coil data consistency (call with ``maps=``);
        summary: one line; sha256: ``{file: hex digest}`` of ``FILES``.
    """

    name: str
    path: Path
    step: int
    multicoil: bool
    summary: str
    sha256: dict


@dataclass(frozen=True)
class RegistryEntry:
    """What ``registry.json`` records per model (other keys, such as the headline results, are kept in
    the file but not needed to load the model)."""

    step: int
    multicoil: bool
    summary: str
    sha256: dict[str, str]


def _registry() -> dict[str, RegistryEntry]:
    """``registry.json``, structure checked: a damaged file is one ``DataError`` naming it."""
    from kerasrecon.schema import from_dict, read_json

    if not REGISTRY.is_file():
        return {}
    raw = read_json(REGISTRY, "the pretrained-model registry")
    if not isinstance(raw, dict):
        raise DataError(f"{REGISTRY}: expected a JSON object of models; reinstall kerasrecon")
    return {name: from_dict(RegistryEntry, e, str(REGISTRY), path=name, extra="ignore") for name, e in raw.items()}


def pretrained_models() -> dict[str, str]:
    """The shipped pretrained models: ``{name: one-line summary}`` (sorted by name)."""
    return {name: entry.summary for name, entry in sorted(_registry().items())}


def pretrained_name(spec: object) -> str | None:
    """``NAME`` when ``spec`` is the string ``pretrained:NAME``, else ``None`` (a path, or anything else)."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return spec[len(PREFIX) :]
    return None


def get(name: str, option: str | None = None) -> PretrainedModel:
    """The registry entry of ``name``; ``DataError`` naming ``option`` and the shipped names when unknown."""
    entries = _registry()
    if not isinstance(name, str) or name not in entries:
        known = ", ".join(sorted(entries)) or "none in this installation"
        raise DataError(f"{option or arg('model')}: no pretrained model {name!r}; shipped: {known}")
    e = entries[name]
    return PretrainedModel(name, HERE / name, e.step, e.multicoil, e.summary, dict(e.sha256))


def verify(model: PretrainedModel) -> None:
    """``DataError`` unless every file of ``model`` is present and matches its recorded SHA-256."""
    from kerasrecon.io import sha256_file

    for f in FILES:
        p = model.path / f
        if not p.is_file():
            raise DataError(f"pretrained model {model.name}: {p} is missing; reinstall kerasrecon")
        if sha256_file(p) != model.sha256.get(f):
            raise DataError(
                f"pretrained model {model.name}: {p} does not match its recorded SHA-256 (changed or "
                "truncated); reinstall kerasrecon"
            )


def card(name: str, option: str | None = None) -> str:
    """The model card of ``name`` (Markdown): training sources, recipe, licence, results."""
    model = get(name, option)
    verify(model)
    return (model.path / "card.md").read_text(encoding="utf-8")


def recipe(name: str, option: str | None = None):
    """The ``TrainConfig`` pretrained model ``name`` was trained with, as the start of a new run
    (``kerasrecon fit --config pretrained:NAME``): the architecture, masks, loss and optimiser of its
    card, without the paths of the machine it was trained on. ``data.extra_data`` is emptied and
    ``init_from`` is ``None``; ``data.data`` still names the model's own training data, which the
    caller replaces with its own.

    Fine-tuning the model on other data is this recipe with ``init_from = "pretrained:NAME"``, a
    new ``data.data`` and a shorter schedule (docs/training.md measures one).

    Raises:
        DataError: unknown name (naming ``option``), a file that does not match its SHA-256.
    """
    import dataclasses

    cfg, _ = _verified_config(name, option)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, extra_data=[]), init_from=None)


def _verified_config(name: str, option: str | None):
    """``(TrainConfig, PretrainedModel)`` of ``name`` after checking every file's SHA-256."""
    from kerasrecon.config import TrainConfig

    model = get(name, option)
    verify(model)
    where = f"pretrained model {name}: config.json"
    return TrainConfig.from_json((model.path / "config.json").read_text(encoding="utf-8"), where), model


def load_pretrained(name: str, option: str | None = None) -> tuple:
    """Build the generator of pretrained model ``name`` and load its verified weights.

    Returns:
        ``(TrainConfig, keras.Model generator, step, PretrainedModel)``; the generator takes the
        inputs of :func:`kerasrecon.models.generator.build_generator` (single-coil graph; the
        multi-coil twin is built from it with the same weights).

    Raises:
        DataError: unknown name (naming ``option``), a file that does not match its SHA-256.
    """
    from kerasrecon.models.generator import from_config

    cfg, model = _verified_config(name, option)
    g = from_config(cfg.model)
    g.load_weights(str(model.path / "generator.weights.h5"))
    return cfg, g, model.step, model

"""``kerasrecon`` command line: a thin shell that parses options into the library's config and calls it.

Every library error (``KerasReconError``) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from kerasrecon import __version__
from kerasrecon.errors import KerasReconError


def one_line_errors(fn):
    """Turn library errors and OS errors into ``kerasrecon: error: ...`` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KerasReconError as exc:
            _fail(str(exc))
        except (OSError, PermissionError) as exc:
            _fail(f"{exc.__class__.__name__}: {exc}")

    return wrapper


def _fail(message: str):
    click.echo(f"kerasrecon: error: {message.splitlines()[0] if message else 'failed'}", err=True)
    sys.exit(2)


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kerasrecon")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details (INFO level).")
def cli(verbose):
    """kerasrecon: reconstruct undersampled MRI with a GAN (MSE, VGG feature or hybrid loss).

    \b
    Typical session:
      kerasrecon mask --kind poisson --acceleration 6 --shape 444 448 --seed 0 --out mask.png
      kerasrecon data prepare knee_dicoms/ data/knee
      kerasrecon fit --data data/knee --loss hybrid --acceleration 4 --out runs/hybrid
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_tensorflow()


@cli.command()
@click.option("--kind", type=click.Choice(["poisson", "random", "equispaced"]), default="poisson", show_default=True,
              help="poisson: 2-D variable-density Poisson disc; random/equispaced: 1-D phase-encode lines.")
@click.option("--acceleration", "-R", type=float, required=True, help="Acceleration R = H·W / samples (>= 1).")
@click.option("--shape", type=(int, int), required=True, metavar="H W", help="k-space shape.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (same seed, same mask).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output .npy (float32 {0,1} [H, W]) or .png (white = sampled).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
@one_line_errors
def mask(kind, acceleration, shape, seed, out, force):
    """Draw a seeded sampling mask and print its id (achieved R, sha256)."""
    from kerasrecon.masks import make_mask

    out = Path(out)
    if out.suffix.lower() not in (".npy", ".png"):
        raise KerasReconError(f"--out {out}: expected a .npy or .png file name")
    if out.exists() and not force:
        raise KerasReconError(f"--out {out}: exists; pass --force to overwrite")
    m = make_mask(kind, acceleration, shape, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        import numpy as np

        np.save(out, m.array)
    else:
        from skimage import io

        io.imsave(out, (m.array * 255).astype("uint8"), check_contrast=False)
    click.echo(json.dumps({**m.id, "out": str(out)}))


@cli.group()
def data():
    """Prepare datasets (image stacks, DICOM series, fastMRI files -> k-space volumes)."""


@data.command("prepare")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--dataset", default=None, help="HDF5 dataset holding images (default: image/images/target/"
              "reconstruction_esc/reconstruction_rss).")
@click.option("--crop", type=(int, int), default=None, metavar="H W", help="Centre-crop every image to H×W "
              "(fastMRI files: default 320 320).")
@one_line_errors
def prepare(src, out, dataset, crop):
    """Convert SRC (a file, or a directory of .npy/.h5 files and PNG/DICOM folders) into dataset OUT.

    OUT gets one <volume>.h5 (k-space complex64 [S, H, W]) per source and a manifest.json; OUT must
    not exist or be empty.
    """
    from kerasrecon.data.images import prepare_dataset

    manifest = prepare_dataset(src, out, dataset=dataset, crop=crop)
    for v in manifest["volumes"]:
        click.echo(f"{v['file']}: {v['kind']} {v['shape']} from {v['source']}")
    click.echo(f"wrote {len(manifest['volumes'])} volume(s) to {out}")


def main():
    """Console-script entry point."""
    cli(prog_name="kerasrecon")


if __name__ == "__main__":
    main()

"""One-time extraction of the embedded demo set from Debian's ``mricron-data`` (BSD-3-clause).

Run once (needs ``apt-get install mricron-data`` and ``pip install nibabel``); the output
``kerasrecon/data/demo_data/ch2better_axial.npz`` is committed so that nobody downloads anything::

    python scripts/extract_demo_data.py [/usr/share/mricron/templates/ch2better.nii.gz]

It keeps 60 axial slices (z = 110, 112, …, 228 of the 301×370×316, 0.5 mm "ch2better" T1 template,
a real MR scan of one subject averaged 27 times) as uint8 [60, 370, 301] in radiological display
orientation (rows anterior→posterior, columns as stored), and writes the provenance into the npz.
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/mricron/templates/ch2better.nii.gz")
OUT = Path(__file__).resolve().parents[1] / "kerasrecon" / "data" / "demo_data" / "ch2better_axial.npz"
Z = np.arange(110, 230, 2)


def main():
    vol = np.asarray(nib.load(str(SRC)).dataobj)
    slices = np.ascontiguousarray(np.moveaxis(vol[:, :, Z], -1, 0)[:, :, ::-1].transpose(0, 2, 1))
    np.savez_compressed(
        OUT,
        images=slices.astype(np.uint8),
        z_index=Z.astype(np.int16),
        source=np.array(str(SRC.name)),
        licence=np.array("BSD-3-clause, Copyright 2006-2010 Chris Rorden (MRIcron); see LICENSE.mricron"),
    )
    print(OUT, slices.shape, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

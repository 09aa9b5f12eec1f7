"""Run in a fresh process that imports only tensorflow and numpy: load an export and reconstruct.

argv: EXPORT_DIR INPUT.npz OUTPUT.npz. Input arrays: kspace_real, kspace_imag, mask, zero_filled.
"""

import sys

import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
d = np.load(sys.argv[2])
serve = loaded.signatures["serving_default"]
out = serve(
    kspace_real=tf.constant(d["kspace_real"]), kspace_imag=tf.constant(d["kspace_imag"]), mask=tf.constant(d["mask"])
)
zf = loaded.signatures["from_zero_filled"](zero_filled=tf.constant(d["zero_filled"]))
modules = sorted(m.split(".")[0] for m in sys.modules if m.startswith("kerasrecon"))
np.savez(
    sys.argv[3],
    image=out["image"].numpy(),
    complex_image=out["complex_image"].numpy(),
    zf_image=zf["image"].numpy(),
    kerasrecon_modules=np.array(len(modules)),
)

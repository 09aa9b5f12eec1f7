"""Run in a fresh process that imports only tensorflow and numpy: call an export on many inputs.

argv: EXPORT_DIR. Then one request per line on stdin, a JSON list ``[CASES.npz, OUT.json]``, answered by the line
``done`` on stdout once OUT.json is written; the process ends at the end of stdin. CASES.npz holds, for
case i, arrays ``{i}/<input name>`` and the signature name in ``{i}/signature``. OUT.json: one record
per case: {"status": "ok", "shape", "finite"} or {"status": <exception class>, "message": the
assertion text}. A crash (segfault) of this process is the failure the caller looks for.
"""

import json
import sys

import numpy as np
import tensorflow as tf


def serve(loaded, cases_path, out_path):
    data = np.load(cases_path)
    n = len({k.split("/")[0] for k in data.files})
    records = []
    for i in range(n):
        sig = str(data[f"{i}/signature"])
        kwargs = {
            k.split("/", 1)[1]: tf.constant(data[k])
            for k in data.files
            if k.startswith(f"{i}/") and not k.endswith("/signature")
        }
        try:
            out = loaded.signatures[sig](**kwargs)
            img = out["image"].numpy()
            records.append({"status": "ok", "shape": list(img.shape), "finite": bool(np.isfinite(img).all())})
        except tf.errors.InvalidArgumentError as exc:
            lines = [line for line in str(exc).splitlines() if "assertion failed:" in line]
            records.append(
                {
                    "status": "InvalidArgumentError",
                    "message": lines[0].split("assertion failed:", 1)[1].strip(" []") if lines else str(exc),
                }
            )
        except (TypeError, ValueError) as exc:  # binding a wrong dtype to the signature: a Python-level refusal
            records.append({"status": type(exc).__name__, "message": str(exc)[:200]})
    with open(out_path, "w") as f:
        json.dump(records, f)


if __name__ == "__main__":
    loaded = tf.saved_model.load(sys.argv[1])
    for line in sys.stdin:
        serve(loaded, *json.loads(line))
        print("done", flush=True)

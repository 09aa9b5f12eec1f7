"""Hypothesis strategies that build hostile files (HDF5 trees of random kinds, dtypes and shapes)."""

import string

import h5py
import numpy as np
from hypothesis import strategies as st

DTYPES = ["complex64", "complex128", "float32", "float64", "int16", "uint8", "bool", "S4"]
H5_NAMES = ["kspace", "image", "mask", "reconstruction", "reconstruction_esc", "coil_kspace", "maps", "x"]


@st.composite
def h5_entries(draw):
    """``{name: kind}``: a group, a string, a scalar, an empty dataspace or an array of random dtype/shape."""
    entries = {}
    for name in draw(st.lists(st.sampled_from(H5_NAMES), min_size=1, max_size=3, unique=True)):
        kind = draw(st.sampled_from(["group", "string", "scalar", "empty", "array", "array", "array"]))
        if kind == "array":
            dtype = draw(st.sampled_from(DTYPES))
            shape = tuple(draw(st.lists(st.integers(0, 9), min_size=0, max_size=5)))
            fill = draw(st.sampled_from([0.0, 1.0, 1e-45, 1e30, np.inf, np.nan, "random"]))
            entries[name] = ("array", dtype, shape, fill)
        else:
            entries[name] = (kind,)
    attrs = draw(
        st.dictionaries(
            st.sampled_from(["acquisition", "acceleration", "max", "patient_id"]),
            st.one_of(st.integers(-5, 5), st.text(string.ascii_letters, max_size=4), st.floats(allow_nan=True)),
            max_size=2,
        )
    )
    return entries, attrs


def array_of(dtype, shape, fill, rng):
    if dtype == "S4":
        return np.full(shape, b"ab", "S4")
    if fill == "random":
        a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if dtype.startswith("complex") else 0)
    else:
        a = np.full(shape, fill)
    with np.errstate(all="ignore"):
        return a.astype(dtype) if dtype != "bool" else (np.nan_to_num(np.real(a)) > 0.5)


def write_h5(path, entries, attrs, rng):
    with h5py.File(path, "w") as f:
        for name, spec in entries.items():
            if spec[0] == "group":
                f.create_group(name)
            elif spec[0] == "string":
                f[name] = "not an array"
            elif spec[0] == "scalar":
                f[name] = 3.0
            elif spec[0] == "empty":
                f.create_dataset(name, data=h5py.Empty("f"))
            else:
                f[name] = array_of(*spec[1:], rng)
        for k, v in attrs.items():
            f.attrs[k] = v

"""Data: volumes of k-space, readers for fastMRI and image stacks, the embedded demo set, tf.data.

A :class:`Volume` holds fully sampled k-space ``[S, H, W]`` complex64 on the kerasrecon grid (see
``kerasrecon.kspace``); the training/evaluation target of slice ``i`` is ``ifft2c(kspace[i])``.
"""

from kerasrecon.data.demo import load_demo
from kerasrecon.data.volume import Volume, filter_acquisition, load_prepared, split_volumes

__all__ = ["Volume", "dataset_inputs", "filter_acquisition", "load_volumes", "split_volumes", "training_splits"]


def load_volumes(data: str, option: str = "--data") -> list[Volume]:
    """``--data``: ``demo`` (the embedded set, one volume) or a prepared dataset directory.

    The dispatch lives here, above both modules, so ``data/demo.py`` and ``data/volume.py`` do not
    import each other. ``option`` names ``data`` in error messages (``--data``, ``--extra-data``).

    Returns:
        list of :class:`Volume` (``kspace`` ``[S, H, W]`` complex64), in manifest order.
    """
    if data == "demo":
        return [load_demo()]
    return load_prepared(data, option)


def dataset_inputs(data_cfg) -> list[tuple[str, str]]:
    """``(option, dataset)`` of every dataset a run reads (``DataConfig`` ``data_cfg``: ``data`` and each
    of ``extra_data``), as ``kerasrecon.io.check_output`` takes its ``inputs``."""
    from kerasrecon.errors import arg

    return [(arg("data.data"), data_cfg.data), *[(arg("data.extra_data"), d) for d in data_cfg.extra_data]]


def training_splits(data_cfg) -> tuple[list[list[Volume]], list[Volume]]:
    """The volumes a run trains and validates on (``DataConfig`` ``data_cfg``).

    Returns:
        ``(train, val)``: ``train`` one list per dataset, ``data_cfg.data`` first, then each of
        ``data_cfg.extra_data``: its training split (:func:`split_volumes` with
        ``data_cfg.val_fraction``; the held-out part of an extra dataset is never trained on);
        ``val`` the held-out volumes of ``data_cfg.data``.

    Raises:
        DataError: one line naming ``--data`` or ``--extra-data`` and the dataset that cannot be read.
    """
    from kerasrecon.errors import arg

    train, val = split_volumes(load_volumes(data_cfg.data, arg("data.data")), data_cfg.val_fraction)
    extra = [
        split_volumes(load_volumes(d, arg("data.extra_data")), data_cfg.val_fraction)[0] for d in data_cfg.extra_data
    ]
    return [train, *extra], val

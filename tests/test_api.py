"""Reconstructor: NumPy in/out, normalisation inside, equal to a hand-written pipeline and to the export."""

import numpy as np
import pytest

from kerasrecon import Reconstructor
from kerasrecon.config import DataConfig, LossConfig, ModelConfig, TrainConfig
from kerasrecon.data.demo import demo_images
from kerasrecon.errors import DataError
from kerasrecon.masks import make_mask
from kerasrecon.training.checkpoint import load_generator
from kerasrecon.training.trainer import train
from tests.conftest import ref_fft2c, ref_ifft2c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    cfg = TrainConfig(
        data=DataConfig(patch_size=32, batch_size=2, val_fraction=0.05),
        model=ModelConfig(blocks=1, filters=8),
        loss=LossConfig(content="mse", vgg_weights="none"),
        steps=0,
        pretrain_steps=3,
        checkpoint_every=3,
        seed=0,
        precision="float32",
    )  # "auto" is mixed precision on a GPU host
    train(cfg, out)
    return out


def by_hand(generator, kspace, mask):
    """The documented pipeline written out with NumPy: mask, zero-fill, scale to peak 1, G, unscale."""
    masked = kspace * mask
    zf = ref_ifft2c(masked)
    scale = 1.0 / np.abs(zf).reshape(len(zf), -1).max(axis=1)[:, None, None]
    ch = lambda z: np.stack([z.real, z.imag], -1).astype(np.float32)  # noqa: E731
    out = np.asarray(
        generator(
            {
                "zero_filled": ch(zf * scale),
                "masked_kspace": ch(masked * scale),
                "mask": np.broadcast_to(mask, kspace.shape).astype(np.float32),
            },
            training=False,
        )
    )
    return np.abs(out[..., 0] + 1j * out[..., 1]) / scale


def test_from_run_equals_the_hand_written_pipeline_at_any_intensity(run):
    images = demo_images()[50:53] * 1234.5  # any scale: the normalisation must be inside
    kspace = ref_fft2c(images.astype(np.complex64))
    mask = make_mask("poisson", 4, images.shape[1:], 0).array
    rec = Reconstructor.from_run(run)
    _, g, _ = load_generator(run)
    expected = by_hand(g, kspace, mask)
    out = rec(kspace, mask, batch_size=2)
    assert out.shape == images.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * expected.max())
    np.testing.assert_allclose(rec(kspace[1], mask), expected[1], rtol=1e-4, atol=1e-4 * expected.max())
    # Normalisation inside: scaling the k-space scales the image, nothing else changes.
    np.testing.assert_allclose(rec(kspace * 1e-3, mask), out * 1e-3, rtol=1e-4, atol=1e-7 * expected.max())
    assert "step=3" in repr(rec)


def test_bad_arrays_are_one_line_errors(run):
    rec = Reconstructor.from_run(run)
    k = np.ones((2, 16, 16), np.complex64)
    with pytest.raises(DataError, match="mask: expected shape"):
        rec(k, np.ones((8, 8)))
    with pytest.raises(DataError, match="complex"):
        rec(k.real, np.ones((16, 16)))
    with pytest.raises(DataError, match="0 and 1"):
        rec(k, np.full((16, 16), 0.5))
    with pytest.raises(DataError, match="kspace"):
        rec(np.ones((1, 2, 16, 16), np.complex64), np.ones((16, 16)))


@pytest.mark.slow
def test_from_export_equals_from_run(run, tmp_path):
    from kerasrecon.export import export_run

    export_run(run, tmp_path / "exp")
    images = demo_images()[55:57]
    kspace = ref_fft2c(images.astype(np.complex64))
    mask = make_mask("poisson", 6, images.shape[1:], 1).array
    a = Reconstructor.from_run(run)(kspace, mask)
    b = Reconstructor.from_export(tmp_path / "exp")(kspace, mask)
    np.testing.assert_allclose(b, a, atol=1e-4 * a.max())
    assert Reconstructor.load(tmp_path / "exp").step == Reconstructor.load(run).step == 3


@pytest.mark.slow
def test_prepare_npz_and_reconstruct_npy(run, tmp_path):
    """data prepare reads .npz stacks; reconstruct reads .npy k-space and equals the Reconstructor."""
    import h5py

    from kerasrecon.config import MaskConfig
    from kerasrecon.data.images import prepare_dataset
    from kerasrecon.export import export_run
    from kerasrecon.reconstruct import reconstruct_files

    images = demo_images()[40:42]
    np.savez(tmp_path / "stack.npz", images=images)
    manifest = prepare_dataset(tmp_path / "stack.npz", tmp_path / "prep")
    assert manifest["volumes"][0]["shape"] == [2, *images.shape[1:]]
    kspace = ref_fft2c(images.astype(np.complex64)).astype(np.complex64)
    np.save(tmp_path / "k.npy", kspace)
    export_run(run, tmp_path / "exp")
    (out,) = reconstruct_files(tmp_path / "exp", tmp_path / "k.npy", tmp_path / "k_rec.h5", MaskConfig(acceleration=4))
    with h5py.File(out) as f:
        rec = f["reconstruction"][()]
    mask = make_mask("poisson", 4, images.shape[1:], 0).array
    expected = Reconstructor.from_run(run)(kspace, mask)
    np.testing.assert_allclose(rec, expected, atol=1e-4 * expected.max())
    np.save(tmp_path / "real.npy", images)
    with pytest.raises(DataError, match="expected complex k-space"):
        reconstruct_files(tmp_path / "exp", tmp_path / "real.npy", tmp_path / "r.h5", MaskConfig())


def _complex_by_hand(generator, kspace, mask):
    """``by_hand`` before the magnitude: complex ``[S, H, W]`` at the input's scale."""
    masked = kspace * mask
    zf = ref_ifft2c(masked)
    scale = 1.0 / np.abs(zf).reshape(len(zf), -1).max(axis=1)[:, None, None]
    ch = lambda z: np.stack([z.real, z.imag], -1).astype(np.float32)  # noqa: E731
    inputs = {"zero_filled": ch(zf * scale), "masked_kspace": ch(masked * scale), "mask": mask.astype(np.float32)}
    out = np.asarray(generator(inputs, training=False))
    return (out[..., 0] + 1j * out[..., 1]) / scale


def test_ensemble_averages_the_mirrored_acquisitions_by_hand(run):
    """ensemble=4: the k-space and mask mirrored about the grid's centre (index n -> (2 (N // 2) - n) mod
    N) in H, in W and in both, reconstructed, mirrored back and averaged before the magnitude."""
    images = demo_images()[50:52]
    kspace = ref_fft2c(images.astype(np.complex64))
    mask = np.broadcast_to(make_mask("poisson", 4, images.shape[1:], 0).array, kspace.shape)
    _, g, _ = load_generator(run)

    def mirror(x, axes):
        for ax in axes:
            n = x.shape[ax]
            x = np.take(x, (2 * (n // 2) - np.arange(n)) % n, axis=ax)
        return x

    total = 0
    for axes in [(), (-2,), (-1,), (-2, -1)]:
        total = total + mirror(_complex_by_hand(g, mirror(kspace, axes), mirror(mask, axes)), axes)
    expected = np.abs(total / 4)
    rec = Reconstructor.from_run(run)
    out = rec(kspace, mask[0], ensemble=4)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6 * expected.max())
    plain = rec(kspace, mask[0])  # (3 training steps: the model is nearly data consistency alone)
    assert np.abs(out - plain).max() > 1e-4 * expected.max()  # the average is not the plain call
    rec.ensemble = 4
    np.testing.assert_array_equal(rec(kspace, mask[0]), out)
    assert "ensemble=4" in repr(rec)


def _zero_filling_reconstructor(multicoil=False):
    """A Reconstructor whose 'model' is zero-filling (SENSE-combined with maps): an operation that every
    grid transform maps to itself, so its self-ensemble must equal it exactly."""

    def call_complex(kspace, mask, maps=None):
        if maps is None:
            return ref_ifft2c(kspace * mask)
        return np.sum(np.conj(maps) * ref_ifft2c(kspace * mask[:, None]), axis=1)

    def call(kspace, mask, maps=None):
        return np.abs(call_complex(kspace, mask, maps))

    return Reconstructor(call, TrainConfig(), 0, "zero-filling", call_multicoil=call, call_complex=call_complex)


@pytest.mark.parametrize("shape", [(2, 16, 16), (1, 15, 12)])
def test_ensemble_of_an_equivariant_reconstruction_is_that_reconstruction(shape):
    rng = np.random.default_rng(1)
    kspace = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    mask = make_mask("poisson", 4, shape[1:], 0).array
    rec = _zero_filling_reconstructor()
    expected = np.abs(ref_ifft2c(kspace * mask))
    for n in (2, 4, 8):
        np.testing.assert_allclose(rec(kspace, mask, ensemble=n), expected, rtol=1e-5, atol=1e-6)
    coil = rng.standard_normal((shape[0], 3, *shape[1:])) + 1j * rng.standard_normal((shape[0], 3, *shape[1:]))
    maps = coil / np.sqrt(np.sum(np.abs(coil) ** 2, axis=1, keepdims=True))
    coil_k = kspace[:, None] * maps  # any [S, C, H, W] data
    expected = np.abs(np.sum(np.conj(maps) * ref_ifft2c(coil_k * mask), axis=1))
    got = rec(coil_k.astype(np.complex64), mask, maps=maps.astype(np.complex64), ensemble=8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ensemble_sizes_and_exports_are_one_line_errors():
    rec = _zero_filling_reconstructor()
    k = np.ones((1, 8, 8), np.complex64)
    for bad in (3, 0, 2.0, True, "8"):
        with pytest.raises(DataError, match=r"ensemble: expected one of 1, 2, 4, 8"):
            rec(k, np.ones((8, 8)), ensemble=bad)
    export_like = Reconstructor(lambda k, m: np.abs(k), TrainConfig(), 0, "export/")
    with pytest.raises(DataError, match="ensemble 2: export/ is a SavedModel export"):
        export_like.ensemble = 2
    assert export_like.set_ensemble(1).ensemble == 1


@pytest.mark.slow
def test_export_with_ensemble_equals_the_reconstructors(run, tmp_path):
    """export --ensemble 4: serving_default equals the run's Reconstructor with ensemble=4 (NumPy
    transforms), the multicoil signature equals it with maps estimated as the export does, and the
    metadata records the size."""
    from kerasrecon.export import export_run, load_export
    from kerasrecon.reconstruct import _Model, run_serving

    export_run(run, tmp_path / "exp", ensemble=4)
    loaded, meta = load_export(tmp_path / "exp")
    assert meta["ensemble"] == 4
    images = demo_images()[50:52, ::2, ::2]  # 185×151: odd H, odd W
    kspace = ref_fft2c(images.astype(np.complex64)).astype(np.complex64)
    mask = make_mask("poisson", 4, images.shape[1:], 0).array
    expected = Reconstructor.from_run(run)(kspace, mask, ensemble=4)
    served = run_serving(loaded.signatures["serving_default"], kspace, mask, name="test")
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5 * expected.max())
    plain = Reconstructor.from_run(run)(kspace, mask)
    assert np.abs(served - plain).max() > 1e-4 * expected.max()
    from kerasrecon.coils import birdcage_maps

    coil_k = ref_fft2c(birdcage_maps(4, *images.shape[1:])[None] * images[:, None]).astype(np.complex64)
    served = run_serving(loaded.signatures["multicoil"], coil_k, mask, name="test")
    expected = _Model(run, ensemble=4)(coil_k, mask, name="test")
    np.testing.assert_allclose(served, expected, rtol=1e-3, atol=1e-4 * expected.max())
    with pytest.raises(Exception, match="ensemble: expected one of 1, 2, 4, 8"):
        export_run(run, tmp_path / "bad", ensemble=3)
    assert not (tmp_path / "bad").exists()
    # The network is stored once, however many ensemble members and signatures call it: as many
    # convolutions in the SavedModel's graphs as with --ensemble 1 (with each call traced into its
    # signature, as before 0.11.2, this run's --ensemble 4 export held 70 against 25).
    export_run(run, tmp_path / "one", ensemble=1)
    assert 0 < saved_convolutions(tmp_path / "exp") == saved_convolutions(tmp_path / "one")


def saved_convolutions(export) -> int:
    """Conv2D nodes in all graphs of a SavedModel's function library (its ``saved_model.pb``)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((export / "saved_model.pb").read_bytes())
    return sum(node.op == "Conv2D" for f in sm.meta_graphs[0].graph_def.library.function for node in f.node_def)

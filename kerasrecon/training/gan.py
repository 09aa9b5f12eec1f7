"""``ReconGAN``: the generator, the discriminator, the content loss, λ and both optimizers — and the
definition of one GAN step, shared by the backends.

Per step: one discriminator update (``BCE(D(y), 1) + BCE(D(ŷ), 0)``), then one generator update
(``content + λ · BCE(D(ŷ), 1)``) against the *updated* D, both from one generator forward (the D
update sees ŷ without gradient). Every call runs in training mode, in this order: G(x), D(y), D(ŷ)
[D update], D(ŷ) [G loss]; BatchNorm moving statistics follow that order. Losses are means over the
*global* batch. The objectives are the pure functions below (:func:`discriminator_objective`,
:func:`generator_objective`, :func:`pretrain_objective`), used by both backends' steps and by
:meth:`ReconGAN.loss_terms`; each step file holds only its backend's gradient plumbing:

* TensorFlow: ``kerasrecon.training.step_tf`` (``GradientTape``, ``strategy.run``; MirroredStrategy
  with synchronised BatchNorm, so N replicas equal one device);
* JAX: ``kerasrecon.training.step_jax`` (``stateless_call``, ``jax.vjp``/``value_and_grad``,
  ``optimizer.stateless_apply`` under ``jax.jit``).

``tests/test_backends.py`` checks that one step of each backend makes the same update (to 1e-3 of every
variable's change, the round-off between their kernels) and that after three steps JAX's float32
weights are as close to a float64 reference as TensorFlow's own. No ``gan.fit``: the trainer drives the
steps (exact checkpoints, resume, NaN guard), so nothing here claims Keras' fit.
"""

from __future__ import annotations

from keras import ops

from kerasrecon.config import LossConfig
from kerasrecon.kspace import magnitude
from kerasrecon.losses import ContentLoss, adversarial_loss, discriminator_loss, feature_loss, mse_loss

PRETRAIN_KEYS = ("g_loss", "content", "psnr")


def discriminator_objective(real_logit, fake_logit, reduce=ops.mean):
    """D's objective ``BCE(D(y), 1) + BCE(D(ŷ), 0)`` from its logits (two ``[B, 1]``), reduced over the
    batch by ``reduce`` (``ops.mean``; the TensorFlow step passes its replica share of the global mean).
    Returns a scalar."""
    return reduce(discriminator_loss(real_logit, fake_logit))


def generator_objective(target, recon, fake_logit, content_loss, adv_weight: float, reduce=ops.mean) -> dict:
    """G's objective ``content + adv_weight · BCE(D(ŷ), 1)``.

    Args:
        target, recon: float32 ``[B, P, P, 1]`` magnitudes.
        fake_logit: D's logit of ``recon``, ``[B, 1]``.
        content_loss: a ``ContentLoss`` (per-example ``[B]``).
        adv_weight: λ.
        reduce: batch reduction of the per-example terms (see :func:`discriminator_objective`).

    Returns:
        scalars ``{"g_loss", "content", "adversarial"}`` (``adversarial`` unweighted).
    """
    content = reduce(content_loss(target, recon))
    adv = reduce(adversarial_loss(fake_logit))
    return {"g_loss": content + adv_weight * adv, "content": content, "adversarial": adv}


def pretrain_objective(target, recon, reduce=ops.mean) -> dict:
    """The MSE warm start's objective: scalars ``{"g_loss", "content"}`` (both the pixel MSE)."""
    loss = reduce(mse_loss(target, recon))
    return {"g_loss": loss, "content": loss}


class ReconGAN:
    """GAN wrapper around a generator and a discriminator.

    Args:
        generator: model from ``build_generator`` (inputs dict -> ``[B, H, W, 2]``).
        discriminator: model from ``build_discriminator`` (``[B, p, p, 1]`` -> ``[B, 1]``).
        content_loss: a ``ContentLoss``.
        adv_weight: λ of the adversarial term (default 1e-3).
    """

    def __init__(self, generator, discriminator, content_loss: ContentLoss, adv_weight: float = LossConfig.adv_weight):
        self.generator = generator
        self.discriminator = discriminator
        self.content_loss = content_loss
        self.adv_weight = adv_weight
        self.g_optimizer = self.d_optimizer = None

    def set_optimizers(self, g_optimizer, d_optimizer):
        """Set both optimizers (Adam in training; any Keras optimizer in tests). Not Keras'
        ``Model.compile``: ``ReconGAN`` is not a Keras model, the trainer drives its steps."""
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    def build_optimizers(self):
        """Create optimizer slots now (TF: inside ``strategy.scope()`` before distributed steps)."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def loss_terms(self, data, vgg=None) -> dict:
        """The generator's loss terms on one batch, without any update (inspection and teaching).

        Args:
            data: ``(inputs, target)`` as the training pipeline yields them: ``inputs`` the generator's
                input dict, ``target`` float32 ``[B, P, P, 1]`` magnitudes (P = the run's patch size,
                which the discriminator's dense layer fixes).
            vgg: VGG19 φ5,4 extractor for the ``feature`` term when this run's content loss has none
                (``mse`` runs); default: the run's own. Without either, ``feature`` is omitted.

        Returns:
            Python floats, batch means: ``mse``, ``feature``, ``adversarial`` (unweighted
            ``BCE(D(ŷ), 1)``), ``content`` (this run's content loss), ``g_loss`` (``content +
            λ·adversarial``, the quantity the G update minimises), ``d_real``/``d_fake`` (mean D
            probabilities of the target and the reconstruction).
        """
        inputs, target = data
        recon = magnitude(self.generator(inputs, training=False))
        fake = self.discriminator(recon, training=False)
        real = self.discriminator(target, training=False)
        vgg = vgg if vgg is not None else self.content_loss.vgg
        out = {"mse": float(ops.mean(mse_loss(target, recon)))}
        if vgg is not None:
            out["feature"] = float(ops.mean(feature_loss(target, recon, vgg)))
        terms = generator_objective(target, recon, fake, self.content_loss, self.adv_weight)
        out.update({k: float(v) for k, v in terms.items()})
        out["d_real"], out["d_fake"] = (float(ops.mean(ops.sigmoid(z))) for z in (real, fake))
        return out

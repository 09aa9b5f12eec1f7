"""``ReconGAN``: one ``keras.Model`` owning G, D, the content loss and the custom ``train_step``.

Per step: one discriminator update (``BCE(D(y), 1) + BCE(D(ŷ), 0)``), then one generator update
(``content + adv_weight · BCE(D(ŷ), 1)``) against the *updated* D, both from one generator forward. Losses are reduced with
``tf.nn.compute_average_loss`` over the global batch (per-replica batch × replicas in sync), because
optimizers sum gradients across replicas. BatchNorm layers are built with ``synchronized=True``: their
batch statistics are all-reduced over replicas, so a step on N replicas equals a step on one device
with the same global batch (tested), at the cost of one small all-reduce per BN layer; on a single
device the flag changes nothing.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasrecon.kspace import magnitude
from kerasrecon.losses import ContentLoss, adversarial_loss, discriminator_loss, feature_loss, mse_loss
from kerasrecon.metrics_ops import batch_psnr

TRACKED = ("d_loss", "g_loss", "content", "adversarial", "psnr")


class ReconGAN(keras.Model):
    """GAN wrapper around a generator and a discriminator.

    Args:
        generator: model from ``build_generator`` (inputs dict -> ``[B, H, W, 2]``).
        discriminator: model from ``build_discriminator`` (``[B, p, p, 1]`` -> ``[B, 1]``).
        content_loss: a ``ContentLoss``.
        adv_weight: λ of the adversarial term (default 1e-3).

    ``train_step(data)`` takes ``(inputs, target)`` with target float32 ``[B, p, p, 1]`` and returns
    the tracked means ``d_loss, g_loss, content, adversarial, psnr``. ``pretrain_step`` is an MSE-only
    generator step (warm start). ``test_step`` evaluates content loss and PSNR without updates.
    """

    def __init__(self, generator, discriminator, content_loss: ContentLoss, adv_weight: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.content_loss = content_loss
        self.adv_weight = adv_weight
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TRACKED}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        """Set both Adam optimizers. Build them (``opt.build(vars)``) inside the strategy scope."""
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    def build_optimizers(self):
        """Create optimizer slots now (must run inside ``strategy.scope()`` before distributed steps)."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def _average(self, per_example, batch):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.nn.compute_average_loss(per_example, global_batch_size=batch * replicas)

    def train_step(self, data):
        values = self.step_values(data)
        return self._track(values)

    def pretrain_step(self, data):
        """MSE-only generator update (SRGAN warm start); D untouched."""
        return self._track(self.pretrain_values(data))

    def step_values(self, data):
        """One D then one G update. Returns this replica's loss shares (sum over replicas = global
        mean) and its mean batch PSNR, as float32 scalars.

        One generator forward pass serves both updates: the D update sees it through
        ``stop_gradient`` with the G tape paused, then the G loss is taken against the updated D.
        """
        inputs, target = data
        batch = tf.shape(target)[0]
        with tf.GradientTape() as g_tape:
            recon = magnitude(self.generator(inputs, training=True))
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_prob = self.discriminator(target, training=True)
                    fake_prob = self.discriminator(tf.stop_gradient(recon), training=True)
                    d_loss = self._average(discriminator_loss(real_prob, fake_prob), batch)
                    d_scaled = _scaled(self.d_optimizer, d_loss)
                _apply(self.d_optimizer, d_tape, d_scaled, self.discriminator.trainable_variables)
            content = self._average(self.content_loss(target, recon), batch)
            adv = self._average(adversarial_loss(self.discriminator(recon, training=True)), batch)
            g_loss = content + self.adv_weight * adv
            g_scaled = _scaled(self.g_optimizer, g_loss)
        _apply(self.g_optimizer, g_tape, g_scaled, self.generator.trainable_variables)
        return {"d_loss": d_loss, "g_loss": g_loss, "content": content, "adversarial": adv,
                "psnr": tf.reduce_mean(batch_psnr(target, recon))}

    def pretrain_values(self, data):
        """MSE-only generator update; returns loss shares like ``step_values`` (D terms are 0)."""
        inputs, target = data
        batch = tf.shape(target)[0]
        with tf.GradientTape() as tape:
            recon = magnitude(self.generator(inputs, training=True))
            loss = self._average(mse_loss(target, recon), batch)
            scaled = _scaled(self.g_optimizer, loss)
        _apply(self.g_optimizer, tape, scaled, self.generator.trainable_variables)
        zero = tf.zeros_like(loss)
        return {"d_loss": zero, "g_loss": loss, "content": loss, "adversarial": zero,
                "psnr": tf.reduce_mean(batch_psnr(target, recon))}

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
        terms = {"mse": mse_loss(target, recon)}
        if vgg is not None:
            terms["feature"] = feature_loss(target, recon, vgg)
        terms["adversarial"] = adversarial_loss(fake)
        terms["content"] = self.content_loss(target, recon)
        out = {k: float(tf.reduce_mean(v)) for k, v in terms.items()}
        out["g_loss"] = out["content"] + self.adv_weight * out["adversarial"]
        out["d_real"], out["d_fake"] = float(tf.reduce_mean(real)), float(tf.reduce_mean(fake))
        return out

    def test_step(self, data):
        inputs, target = data
        recon = magnitude(self.generator(inputs, training=False))
        content = tf.reduce_mean(self.content_loss(target, recon))
        self.trackers["content"].update_state(content)
        self.trackers["psnr"].update_state(tf.reduce_mean(batch_psnr(target, recon)))
        return {name: self.trackers[name].result() for name in ("content", "psnr")}

    def _track(self, values):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in values.items():
            # Reduced losses are this replica's share of the global mean; ×replicas gives its local
            # mean, and the Mean tracker then averages over replicas.
            scale = 1.0 if name == "psnr" else tf.cast(replicas, tf.float32)
            self.trackers[name].update_state(value * scale)
        return {name: t.result() for name, t in self.trackers.items()}


def _scaled(optimizer, loss):
    """``loss`` times the dynamic loss scale under mixed_float16 (call inside the tape), else ``loss``."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def _apply(optimizer, tape, loss, variables):
    """Gradients of ``loss`` applied; a LossScaleOptimizer unscales them and skips non-finite steps."""
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))

"""The GAN step on the TensorFlow backend: ``GradientTape`` per replica, ``strategy.run`` over
replicas (one device, MirroredStrategy or MultiWorkerMirroredStrategy), one ``tf.function``.

The step is the one defined in :mod:`kerasrecon.training.gan`. Losses are reduced with
``tf.nn.compute_average_loss(per_example, global_batch_size)``: each replica returns its share of the
global mean, optimizers sum gradients across replicas, so N replicas equal one device on the same
global batch (BatchNorm is synchronised; tested with 2 logical CPUs and with 2 worker processes).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasrecon.kspace import magnitude
from kerasrecon.metrics_ops import batch_psnr
from kerasrecon.training.gan import ReconGAN, discriminator_objective, generator_objective, pretrain_objective

SHARE_KEYS = ("d_loss", "g_loss", "content", "adversarial")  # summed over replicas; psnr is averaged


def _average(per_example, batch):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return tf.nn.compute_average_loss(per_example, global_batch_size=batch * replicas)


def _scaled(optimizer, loss):
    """``loss`` times the dynamic loss scale under mixed_float16 (call inside the tape), else ``loss``."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def _apply(optimizer, tape, loss, variables):
    """Gradients of ``loss`` applied; a LossScaleOptimizer unscales them and skips non-finite steps."""
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))


def step_values(gan: ReconGAN, data):
    """One D then one G update on this replica. Returns its loss shares (sum over replicas = global
    mean) and its mean batch PSNR, as float32 scalars.

    Args:
        data: ``(inputs, target)``: the generator's input dict and target float32 ``[b, p, p, 1]``.
    """
    inputs, target = data
    batch = tf.shape(target)[0]
    share = lambda per_example: _average(per_example, batch)  # noqa: E731  (this replica's share)
    g, d = gan.generator, gan.discriminator
    with tf.GradientTape() as g_tape:
        recon = magnitude(g(inputs, training=True))
        with g_tape.stop_recording():
            with tf.GradientTape() as d_tape:
                real_logit = d(target, training=True)
                fake_logit = d(tf.stop_gradient(recon), training=True)
                d_loss = discriminator_objective(real_logit, fake_logit, share)
                d_scaled = _scaled(gan.d_optimizer, d_loss)
            _apply(gan.d_optimizer, d_tape, d_scaled, d.trainable_variables)
        terms = generator_objective(target, recon, d(recon, training=True), gan.content_loss, gan.adv_weight, share)
        g_scaled = _scaled(gan.g_optimizer, terms["g_loss"])
    _apply(gan.g_optimizer, g_tape, g_scaled, g.trainable_variables)
    return {"d_loss": d_loss, **terms, "psnr": tf.reduce_mean(batch_psnr(target, recon))}


def pretrain_values(gan: ReconGAN, data):
    """MSE-only generator update (SRGAN warm start; D untouched); returns loss shares like
    :func:`step_values` (D terms are 0)."""
    inputs, target = data
    batch = tf.shape(target)[0]
    with tf.GradientTape() as tape:
        recon = magnitude(gan.generator(inputs, training=True))
        terms = pretrain_objective(target, recon, lambda per_example: _average(per_example, batch))
        scaled = _scaled(gan.g_optimizer, terms["g_loss"])
    _apply(gan.g_optimizer, tape, scaled, gan.generator.trainable_variables)
    zero = tf.zeros_like(terms["g_loss"])
    return {"d_loss": zero, **terms, "adversarial": zero, "psnr": tf.reduce_mean(batch_psnr(target, recon))}


def make_distributed_step(gan: ReconGAN, strategy, pretrain: bool = False, jit: bool = False):
    """A ``tf.function`` running one (pre)training step on every replica; returns global means.

    With ``jit`` the per-replica step is XLA-compiled (``tf.function(jit_compile=True)``).
    """
    fn = pretrain_values if pretrain else step_values

    def step_fn(batch):
        return fn(gan, batch)

    if jit:
        step_fn = tf.function(step_fn, jit_compile=True, autograph=False)

    @tf.function(autograph=False)
    def step(dist_batch):
        per_replica = strategy.run(step_fn, args=(dist_batch,))
        out = {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
            if k in SHARE_KEYS
        }
        out["psnr"] = strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica["psnr"], axis=None)
        return out

    return step

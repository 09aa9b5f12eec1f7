"""The GAN step on the JAX backend: Keras' stateless API under one ``jax.jit``.

The step is the one defined in :mod:`kerasrecon.training.gan` — G(x) once, D update on ``y`` and
``stop_gradient(ŷ)``, G update against the updated D — written with ``Model.stateless_call``,
``jax.vjp`` (one generator forward serves both updates), ``jax.value_and_grad`` and
``optimizer.stateless_apply``. Losses are means over the global batch: on several devices
(``keras.distribution.DataParallel``) the arrays are sharded over the batch axis and XLA inserts the
all-reduces, so batch statistics and gradients are global without any code here.

Usage::

    step = JaxStep(gan, pretrain=False)
    state = step.init_state()                 # arrays taken from the Keras variables
    for batch in batches:
        state, logs = step(state, batch)      # jitted, the state buffers are donated
    step.write_back(state)                    # arrays back into the Keras variables (checkpoints)

With ``mesh`` (multi-process training) the state is replicated over the mesh and the batches are
sharded on its ``batch`` axis; the jitted step is the same program on every process.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from keras import ops

from kerasrecon.kspace import magnitude
from kerasrecon.losses import ContentLoss
from kerasrecon.metrics_ops import batch_psnr
from kerasrecon.training.gan import ReconGAN, discriminator_objective, generator_objective, pretrain_objective


@jax.tree_util.register_pytree_node_class
@dataclass
class TrainState:
    """All arrays a step reads and writes: G and D (trainable, non-trainable), both optimizers'
    variables, and the frozen VGG's variables (read only)."""

    g_train: list
    g_fixed: list
    d_train: list
    d_fixed: list
    g_opt: list
    d_opt: list
    vgg: list

    def tree_flatten(self):
        return (self.g_train, self.g_fixed, self.d_train, self.d_fixed, self.g_opt, self.d_opt, self.vgg), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def _values(variables):
    return [v.value for v in variables]


class JaxStep:
    """One jitted (pre)training step of ``gan`` on the JAX backend.

    Args:
        gan: a ``ReconGAN`` whose optimizers are set and built (``set_optimizers``, ``build_optimizers``).
        pretrain: MSE-only generator update (warm start; D untouched) instead of the GAN step.

    Call: ``(state: TrainState, (inputs, target)) -> (state, logs)``; ``inputs`` the generator's input
    dict (``zero_filled``/``masked_kspace`` float32 ``[B, p, p, 2]``, ``mask`` ``[B, p, p]``), target
    float32 ``[B, p, p, 1]``; logs: float32 scalars ``d_loss, g_loss, content, adversarial, psnr``
    (global-batch means).
    """

    def __init__(self, gan: ReconGAN, pretrain: bool = False, mesh=None):
        self.gan, self.pretrain = gan, pretrain
        self._vgg = gan.content_loss.vgg
        self._replicated = None
        fn = self._pretrain if pretrain else self._step
        if mesh is None:
            self._jitted = jax.jit(fn, donate_argnums=(0,))
        else:  # several processes: state and values replicated over the mesh, batches sharded on it
            from jax.sharding import NamedSharding, PartitionSpec

            self._replicated = NamedSharding(mesh, PartitionSpec())
            self._jitted = jax.jit(fn, donate_argnums=(0,), out_shardings=self._replicated)

    def init_state(self) -> TrainState:
        """The current values of every variable, as a ``TrainState``."""
        g, d = self.gan.generator, self.gan.discriminator
        state = TrainState(
            _values(g.trainable_variables),
            _values(g.non_trainable_variables),
            _values(d.trainable_variables),
            _values(d.non_trainable_variables),
            _values(self.gan.g_optimizer.variables),
            _values(self.gan.d_optimizer.variables),
            _values(self._vgg.non_trainable_variables) if self._vgg is not None else [],
        )
        if self._replicated is None:
            return state
        # Every process holds the same values (same seed, or the same checkpoint): each supplies its copy.
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_callback(x.shape, self._replicated, lambda index: np.asarray(x)[index]),
            state,
        )

    def write_back(self, state: TrainState):
        """Assign the state's arrays to the Keras variables (before checkpoints, previews, export)."""
        g, d = self.gan.generator, self.gan.discriminator
        pairs = [
            (g.trainable_variables, state.g_train),
            (g.non_trainable_variables, state.g_fixed),
            (d.trainable_variables, state.d_train),
            (d.non_trainable_variables, state.d_fixed),
            (self.gan.g_optimizer.variables, state.g_opt),
            (self.gan.d_optimizer.variables, state.d_opt),
        ]
        for variables, values in pairs:
            for v, x in zip(variables, values):
                # across processes: this process's copy of the replicated array (the variables stay local)
                v.assign(x if self._replicated is None else np.asarray(x))

    def __call__(self, state: TrainState, batch):
        return self._jitted(state, batch)

    # ----------------------------------------------------------------------------------- internals
    def _content(self, vgg_values) -> ContentLoss:
        """The run's content loss with the VGG evaluated statelessly on ``vgg_values``."""
        c = self.gan.content_loss
        if self._vgg is None:
            return c
        vgg = self._vgg

        def features(x, training=False):  # frozen: all its variables are non-trainable
            return vgg.stateless_call([], vgg_values, x, training=False)[0]

        return ContentLoss(c.kind, features, c.mse_weight, c.feature_weight)

    def _step(self, state: TrainState, batch):
        inputs, target = batch
        g, d, gan = self.gan.generator, self.gan.discriminator, self.gan

        def g_forward(g_train):
            out, g_fixed = g.stateless_call(g_train, state.g_fixed, inputs, training=True)
            return magnitude(out), g_fixed

        recon, g_vjp, g_fixed = jax.vjp(g_forward, state.g_train, has_aux=True)

        def d_loss_fn(d_train):
            real, d_fixed = d.stateless_call(d_train, state.d_fixed, target, training=True)
            fake, d_fixed = d.stateless_call(d_train, d_fixed, jax.lax.stop_gradient(recon), training=True)
            return discriminator_objective(real, fake), d_fixed

        (d_loss, d_fixed), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_train)
        d_train, d_opt = gan.d_optimizer.stateless_apply(state.d_opt, d_grads, state.d_train)

        content_loss = self._content(state.vgg)

        def g_loss_fn(recon_):
            fake, d_fixed_ = d.stateless_call(d_train, d_fixed, recon_, training=True)
            terms = generator_objective(target, recon_, fake, content_loss, gan.adv_weight)
            return terms["g_loss"], (terms, d_fixed_)

        (_, (terms, d_fixed)), dl_drecon = jax.value_and_grad(g_loss_fn, has_aux=True)(recon)
        (g_grads,) = g_vjp(dl_drecon)
        g_train, g_opt = gan.g_optimizer.stateless_apply(state.g_opt, g_grads, state.g_train)
        logs = {"d_loss": d_loss, **terms, "psnr": ops.mean(batch_psnr(target, recon))}
        return TrainState(g_train, g_fixed, d_train, d_fixed, g_opt, d_opt, state.vgg), logs

    def _pretrain(self, state: TrainState, batch):
        inputs, target = batch
        g, gan = self.gan.generator, self.gan

        def loss_fn(g_train):
            out, g_fixed = g.stateless_call(g_train, state.g_fixed, inputs, training=True)
            recon = magnitude(out)
            terms = pretrain_objective(target, recon)
            return terms["g_loss"], (g_fixed, recon, terms)

        (_, (g_fixed, recon, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_train)
        g_train, g_opt = gan.g_optimizer.stateless_apply(state.g_opt, grads, state.g_train)
        zero = ops.zeros_like(terms["g_loss"])
        logs = {"d_loss": zero, **terms, "adversarial": zero, "psnr": ops.mean(batch_psnr(target, recon))}
        return TrainState(g_train, g_fixed, state.d_train, state.d_fixed, g_opt, state.d_opt, state.vgg), logs

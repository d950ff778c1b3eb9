"""Model bodies and one forward pass shared by every method.

Every method trains the same body; what differs is data, not code: the head
(Dense or fixed codebook), the codebook and its scale, the targets and the
distillation weights are arrays in a ``MethodConfig``. So all methods and
seeds of a task train in one ``vmap``-ed, once-compiled program.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import spectral_targets as st
from spectral_targets._numerics import unit_rows


class MLP(nn.Module):
  """ReLU MLP: ``depth`` hidden layers of ``width``, then a linear map to
  the feature dimension."""
  width: int
  depth: int
  features: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.features)(x)


def _patches(x, width, stride):
  """(B, L, C) -> (B, ceil(L/stride), width·C): the windows of a 'SAME'
  1-D convolution, as ``width`` strided slices (their gradient is a pad and
  an add; a gather's would be a scatter, slower on CPU)."""
  L = x.shape[-2]
  out = -(-L // stride)
  pad = max((out - 1) * stride + width - L, 0)
  x = jnp.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
  return jnp.concatenate(
      [jax.lax.slice_in_dim(x, k, k + (out - 1) * stride + 1, stride, axis=1)
       for k in range(width)], axis=-1)


class CNN1D(nn.Module):
  """The small 1-D CNN of the MNIST-1D paper: three 5-wide convolutions
  (strides 1, 2, 2), ReLU, then linear to the feature dimension.

  ``windows=True`` writes each convolution as a Dense layer on the windows
  (the same function as ``nn.Conv``, but under ``vmap`` over models it
  stays a batched matmul, where a vmapped ``nn.Conv`` becomes a grouped
  convolution, ~50x slower on CPU): the vmapped trainers use it. A single
  model (the timed training steps) uses ``nn.Conv``, as a user would.
  """
  channels: int
  features: int
  windows: bool = True

  @nn.compact
  def __call__(self, x):
    x = x[..., None]
    for stride in (1, 2, 2):
      if self.windows:
        x = nn.Dense(self.channels)(_patches(x, 5, stride))
      else:
        x = nn.Conv(self.channels, (5,), strides=(stride,),
                    padding="SAME")(x)
      x = nn.relu(x)
    return nn.Dense(self.features)(x.reshape(x.shape[:-2] + (-1,)))


@functools.lru_cache(maxsize=None)
def make_body(kind: str, features: int, *, teacher: bool = False,
              single: bool = False):
  """The body of a task (one instance per configuration, so the compiled
  programs cached on it are reused); ``single``: for one model, not a
  vmapped stack (only the CNN differs: ``nn.Conv`` layers).

  Teachers are 1.5x as wide as students (about twice the FLOPs): the MLP
  384 units against 256, the CNN 48 channels against 32.
  """
  if kind == "mlp":
    return MLP(width=384 if teacher else 256, depth=2, features=features)
  if kind == "cnn":
    return CNN1D(channels=48 if teacher else 32, features=features,
                 windows=not single)
  raise ValueError(f"unknown body {kind!r}")


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["mask", "codebook", "scale", "is_codebook",
                                "target_kernel", "target_temperature",
                                "alpha", "w_ce", "w_kd", "w_sa"],
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """A method as data (stack these along a leading axis to vmap).

  mask: (F,) which feature dimensions the head sees (a d-dim codebook pads
    to F = C − 1 with zero columns and masks the rest).
  codebook: (C, F) codes (zeros for a Dense head); scale: its logit scale.
  is_codebook: 1 for a fixed codebook head, 0 for a trainable Dense head.
  target_kernel, target_temperature, alpha: targets
    ``kernel_soft_labels(y, K, temperature, alpha)`` (alpha 0: one-hot).
  w_ce, w_kd, w_sa: weights of cross-entropy, Hinton KD on logits, and KD
    of soft assignments over the codebook.
  """
  mask: jax.Array
  codebook: jax.Array
  scale: jax.Array
  is_codebook: jax.Array
  target_kernel: jax.Array
  target_temperature: jax.Array
  alpha: jax.Array
  w_ce: jax.Array
  w_kd: jax.Array
  w_sa: jax.Array


#: Distillation temperature, for logits and for soft assignments of
#: scale-normalised features alike.
KD_TEMPERATURE = 4.0


@functools.lru_cache(maxsize=None)
def _param_shapes(body, sample_shape, dtype):
  return jax.eval_shape(body.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1,) + sample_shape, dtype))


def _model_shapes(body, num_classes, features, x):
  """Shapes of one model's parameters: the body and a Dense head."""
  return {"body": _param_shapes(body, tuple(x.shape[1:]), x.dtype),
          "dense_w": jax.ShapeDtypeStruct((features, num_classes),
                                          jnp.float32),
          "dense_b": jax.ShapeDtypeStruct((num_classes,), jnp.float32)}


def param_specs(body, num_classes, features, count, x):
  """Shapes of ``init_params(body, ..., seeds, x)`` for ``count`` seeds."""
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct((count,) + s.shape, s.dtype),
      _model_shapes(body, num_classes, features, x))


def init_params(body, num_classes, features, seeds, x):
  """Parameters of one model per integer seed, stacked on a leading axis,
  as NumPy arrays: LeCun-normal kernels (N(0, 1/fan_in)), zero biases, for
  the body and a Dense head.

  Drawn with NumPy from the shapes of ``body.init`` (``jax.eval_shape``:
  traced, never compiled; flax's own init compiles every random op of every
  layer, seconds per body on CPU).
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(
      _model_shapes(body, num_classes, features, x))
  per_model = []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    values = []
    for path, leaf in leaves:
      name = str(path[-1])
      if "bias" in name or "dense_b" in name:
        values.append(np.zeros(leaf.shape, np.float32))
      else:
        fan_in = int(np.prod(leaf.shape[:-1]))
        values.append((rng.normal(size=leaf.shape) / np.sqrt(fan_in))
                      .astype(np.float32))
    per_model.append(values)
  stacked = [np.stack(vals) for vals in zip(*per_model)]
  return jax.tree_util.tree_unflatten(treedef, stacked)


def forward(body, params, cfg, x):
  """(features, logits): the head is the codebook's scaled cosines or a
  Dense layer, chosen by ``cfg.is_codebook``."""
  z = body.apply(params["body"], x) * cfg.mask
  dense = z @ params["dense_w"] + params["dense_b"]
  cosine = st.codebook_logits(z, cfg.codebook, scale=cfg.scale)
  return z, jnp.where(cfg.is_codebook > 0, cosine, dense)


def loss_fn(body, params, cfg, x, y, teacher_logits, teacher_features):
  z, logits = forward(body, params, cfg, x)
  q = st.kernel_soft_labels(y, cfg.target_kernel,
                            temperature=cfg.target_temperature,
                            alpha=cfg.alpha)
  ce = optax.softmax_cross_entropy(logits, q)
  kd = st.distillation_loss(logits, teacher_logits,
                            temperature=KD_TEMPERATURE)
  # Features scaled to the head's logit scale: the soft assignment is then
  # softmax(scale · cos / τ), the same sharpness and τ² weight as KD on the
  # codebook logits.
  sa = st.soft_assignment_distillation_loss(
      cfg.scale * unit_rows(z), cfg.scale * unit_rows(teacher_features),
      unit_rows(cfg.codebook), temperature=KD_TEMPERATURE)
  return jnp.mean(cfg.w_ce * ce + cfg.w_kd * kd + cfg.w_sa * sa)


def initial_state(tx, params):
  """``tx.init(params)`` for the benchmark's optimizer, built on the host:
  AdamW's state is all zeros (step counts and moments), so this is NumPy
  zeros of ``jax.eval_shape(tx.init, params)`` and compiles nothing
  (``tx.init`` itself would compile a program per parameter shape)."""
  return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                jax.eval_shape(tx.init, params))


def optimizer(total_steps: int):
  """AdamW with a cosine schedule; the same for every method."""
  return optax.adamw(optax.cosine_decay_schedule(2e-3, total_steps),
                     weight_decay=1e-4)


def set_epoch_callback(on_epoch=None):
  """``on_epoch(epoch)`` is called from inside compiled trainers as epochs
  finish (once per model under vmap); None to stop."""
  _EPOCH_CALLBACK[0] = on_epoch


_EPOCH_CALLBACK = [None]


def _epoch_done(index):
  if _EPOCH_CALLBACK[0] is not None:
    _EPOCH_CALLBACK[0](index)


@functools.lru_cache(maxsize=None)
def trainer(body, epochs: int, batch_size: int, n: int):
  """The jitted trainer of one (body, schedule, data size).

  ``trainer(...)(params, cfgs, seeds, x, y, teacher_logits,
  teacher_features)`` trains one model per leading index of (params, cfgs,
  seeds, teacher_*) in one vmapped program, minibatches reshuffled per
  model (``seeds``: int32, one per model) and epoch; it returns the trained
  parameters. Teachers, scale selection and students of a task with the
  same body and model count share one compilation.
  """
  steps = n // batch_size
  tx = optimizer(epochs * steps)

  def one(params, cfg, seed, x, y, t_logits, t_feats):
    def step(carry, idx):
      params, opt = carry
      grads = jax.grad(lambda p: loss_fn(body, p, cfg, x[idx], y[idx],
                                         t_logits[idx], t_feats[idx]))(params)
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None

    def epoch(carry, inputs):
      k, index = inputs
      order = jax.random.permutation(k, n)[:steps * batch_size]
      carry, _ = jax.lax.scan(step, carry, order.reshape(steps, batch_size))
      jax.debug.callback(_epoch_done, index)
      return carry, None

    key = jax.random.key(seed)
    (params, _), _ = jax.lax.scan(
        epoch, (params, tx.init(params)),
        (jax.random.split(key, epochs), jnp.arange(epochs)))
    return params

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, 0, 0)))


@functools.lru_cache(maxsize=None)
def predictor(body):
  """The jitted ``(params, cfgs, x) -> (features, logits)`` of every model
  (leading axis) on x: (M, N, F) and (M, N, C)."""
  return jax.jit(jax.vmap(lambda p, c, x: forward(body, p, c, x),
                          in_axes=(0, 0, None)))

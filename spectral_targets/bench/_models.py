"""Model bodies, heads and one loss shared by every method.

Every method of a task trains the same body; what differs is data, not
code: the head (a learned Dense layer, a learned cosine classifier or a
fixed codebook), the codebook and its scale, the learning rate, the targets
and the loss weights are arrays in a ``MethodConfig``. So all methods, grid
points and seeds of a task train in one ``vmap``-ed, once-compiled program.
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

# -- bodies ----------------------------------------------------------------------


class MLP(nn.Module):
  """ReLU MLP: ``depth`` hidden layers of ``width``, then a linear map to
  the feature dimension (``depth = 0``: a linear model)."""
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
  """A small 1-D CNN: three 5-wide 'SAME' convolutions (strides 1, 2, 2),
  ReLU, then linear to the feature dimension.

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


#: The bodies by name: (constructor, description). Students and baselines
#: of a task share one body; teachers and the distillation students have
#: their own.
BODIES = {
    "cnn": (lambda F, single: CNN1D(16, F, windows=not single),
            "1-D CNN, 16 channels"),
    "cnn-wide": (lambda F, single: CNN1D(32, F, windows=not single),
                 "1-D CNN, 32 channels"),
    "cnn-narrow": (lambda F, single: CNN1D(8, F, windows=not single),
                   "1-D CNN, 8 channels"),
    "mlp": (lambda F, single: MLP(256, 2, F), "MLP, 2 x 256 ReLU"),
    "mlp-128": (lambda F, single: MLP(128, 2, F), "MLP, 2 x 128 ReLU"),
    "mlp-small": (lambda F, single: MLP(100, 2, F),
                  "MLP, 2 x 100 ReLU (the MNIST-1D paper's)"),
    "linear": (lambda F, single: MLP(1, 0, F),
               "linear (logistic regression)"),
}


@functools.cache
def make_body(kind: str, features: int, *, single: bool = False):
  """The body ``kind`` mapping inputs to ``features`` dimensions (one
  instance per configuration, so the programs cached on it are reused);
  ``single``: for one model, not a vmapped stack (the CNN then uses
  ``nn.Conv``)."""
  try:
    return BODIES[kind][0](features, single)
  except KeyError:
    raise ValueError(f"unknown body {kind!r}; choose from "
                     f"{sorted(BODIES)}") from None


# -- a method as data ------------------------------------------------------------

_FIELDS = ("lr", "total_steps", "mask", "head", "codebook", "scale",
           "target_kernel", "target_temperature", "alpha", "w_online",
           "w_ce", "w_hxe", "hxe_alpha", "w_kd", "kd_temperature", "w_dkd",
           "dkd_beta", "dkd_warmup", "w_sa")


@functools.partial(jax.tree_util.register_dataclass, data_fields=list(_FIELDS),
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """A method at one grid point, as arrays (stack along a leading axis to
  vmap; float32 and never weak-typed, so one compiled program serves every
  method of a task).

  lr, total_steps: peak learning rate of AdamW's cosine schedule and the
    number of steps it decays over.
  mask: (F,) which feature dimensions the head sees (a d-dim codebook pads
    to F with zero columns and masks the rest).
  head: (3,) one-hot over (Dense, learned cosine, fixed codebook).
  codebook: (C, F) fixed codes (zeros for the learned heads); scale: the
    cosine heads' logit scale.
  target_kernel, target_temperature, alpha: targets
    ``kernel_soft_labels(y, K, temperature, alpha)`` (alpha 0: one-hot);
    w_online: weight of the online soft targets (the previous epoch's mean
    prediction per class) mixed into them.
  w_ce, w_hxe, w_kd, w_dkd, w_sa: weights of cross-entropy on those targets,
    hierarchical cross-entropy (``hxe_alpha``), Hinton KD on logits
    (``kd_temperature``), DKD (``dkd_beta``, linear warm-up over
    ``dkd_warmup`` epochs) and KD of soft assignments over the codebook.
  """
  lr: np.ndarray
  total_steps: np.ndarray
  mask: np.ndarray
  head: np.ndarray
  codebook: np.ndarray
  scale: np.ndarray
  target_kernel: np.ndarray
  target_temperature: np.ndarray
  alpha: np.ndarray
  w_online: np.ndarray
  w_ce: np.ndarray
  w_hxe: np.ndarray
  hxe_alpha: np.ndarray
  w_kd: np.ndarray
  kd_temperature: np.ndarray
  w_dkd: np.ndarray
  dkd_beta: np.ndarray
  dkd_warmup: np.ndarray
  w_sa: np.ndarray


HEADS = ("dense", "cosine", "codebook")


def method_config(C: int, F: int, *, lr: float, total_steps: int,
                  head: str = "dense", codebook=None, scale: float = 1.0,
                  target_kernel=None, target_temperature: float = 1.0,
                  alpha: float = 0.0, w_online: float = 0.0,
                  w_ce: float = 1.0, w_hxe: float = 0.0,
                  hxe_alpha: float = 0.0, w_kd: float = 0.0,
                  kd_temperature: float = 4.0, w_dkd: float = 0.0,
                  dkd_beta: float = 8.0, dkd_warmup: float = 1.0,
                  w_sa: float = 0.0) -> MethodConfig:
  """A ``MethodConfig`` of host float32 arrays. ``codebook`` may have d < F
  columns: it is padded to F and the head sees only its d dimensions."""
  f32 = lambda a: np.asarray(a, np.float32)
  mask = np.ones(F, np.float32)
  codes = np.zeros((C, F), np.float32)
  if codebook is not None:
    codebook = f32(codebook)
    codes[:, :codebook.shape[1]] = codebook
    mask[codebook.shape[1]:] = 0
  return MethodConfig(
      lr=f32(lr), total_steps=f32(total_steps), mask=mask,
      head=f32(np.eye(3)[HEADS.index(head)]), codebook=codes,
      scale=f32(scale),
      target_kernel=f32(np.zeros((C, C)) if target_kernel is None
                        else target_kernel),
      target_temperature=f32(target_temperature), alpha=f32(alpha),
      w_online=f32(w_online), w_ce=f32(w_ce), w_hxe=f32(w_hxe),
      hxe_alpha=f32(hxe_alpha), w_kd=f32(w_kd),
      kd_temperature=f32(kd_temperature), w_dkd=f32(w_dkd),
      dkd_beta=f32(dkd_beta), dkd_warmup=f32(max(dkd_warmup, 1.0)),
      w_sa=f32(w_sa))


def stack(items):
  """Stacks pytrees of host arrays along a new leading axis."""
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *items)


# -- parameters -------------------------------------------------------------------


@functools.cache
def _param_shapes(body, sample_shape, dtype):
  return jax.eval_shape(body.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1,) + sample_shape, dtype))


def model_shapes(body, num_classes, features, sample_shape, dtype=np.float32):
  """Shapes of one model's parameters: the body, a Dense head and the
  learned class vectors of a cosine head (every model carries all three;
  its config picks the head)."""
  return {"body": _param_shapes(body, tuple(sample_shape), np.dtype(dtype)),
          "dense_w": jax.ShapeDtypeStruct((features, num_classes),
                                          jnp.float32),
          "dense_b": jax.ShapeDtypeStruct((num_classes,), jnp.float32),
          "class_vectors": jax.ShapeDtypeStruct((num_classes, features),
                                                jnp.float32)}


def init_params(body, num_classes, features, seeds, sample_shape):
  """Parameters of one model per integer seed, stacked on a leading axis,
  as NumPy arrays: LeCun-normal kernels (N(0, 1/fan_in)), zero biases,
  N(0, 1) class vectors.

  Drawn with NumPy from the shapes of ``body.init`` (``jax.eval_shape``:
  traced, never compiled; flax's own init compiles every random op of every
  layer, seconds per body on CPU).
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(
      model_shapes(body, num_classes, features, sample_shape))
  per_model = []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    values = []
    for path, leaf in leaves:
      name = str(path[-1])
      if "bias" in name or "dense_b" in name:
        values.append(np.zeros(leaf.shape, np.float32))
      elif "class_vectors" in name:
        values.append(rng.normal(size=leaf.shape).astype(np.float32))
      else:
        fan_in = int(np.prod(leaf.shape[:-1]))
        values.append((rng.normal(size=leaf.shape) / np.sqrt(fan_in))
                      .astype(np.float32))
    per_model.append(values)
  stacked = [np.stack(vals) for vals in zip(*per_model)]
  return jax.tree_util.tree_unflatten(treedef, stacked)


# -- forward pass and loss --------------------------------------------------------


def forward(body, params, cfg, x):
  """(features, logits, head features): the logits of the head chosen by
  ``cfg.head``, and the features that head sees (raw for the Dense head,
  unit-norm for the cosine heads)."""
  z = body.apply(params["body"], x) * cfg.mask
  dense = z @ params["dense_w"] + params["dense_b"]
  codes = (cfg.head[1] * params["class_vectors"] * cfg.mask
           + cfg.head[2] * cfg.codebook)
  cosine = st.codebook_logits(z, codes, scale=cfg.scale)
  logits = cfg.head[0] * dense + (1 - cfg.head[0]) * cosine
  seen = jnp.where(cfg.head[0] > 0, z, unit_rows(z))
  return z, logits, seen


def optimizer(cfg):
  """AdamW (weight decay 1e-4) with a cosine decay from ``cfg.lr`` over
  ``cfg.total_steps``: the learning rate is data, so a grid of learning
  rates trains in one vmapped program."""
  def schedule(count):
    t = jnp.minimum(count / cfg.total_steps, 1.0)
    return cfg.lr * 0.5 * (1 + jnp.cos(jnp.pi * t))
  return optax.adamw(schedule, weight_decay=1e-4)


def loss_terms(body, params, cfg, x, y, online_targets, teacher, epoch,
               tree=None):
  """The per-example loss of one model on a batch, and its predicted
  probabilities (for the online label kernel)."""
  z, logits, _ = forward(body, params, cfg, x)
  q = st.kernel_soft_labels(y, cfg.target_kernel,
                            temperature=cfg.target_temperature,
                            alpha=cfg.alpha)
  q = (1 - cfg.w_online) * q + cfg.w_online * online_targets[y]
  loss = cfg.w_ce * optax.softmax_cross_entropy(logits, q)
  if tree is not None:
    loss += cfg.w_hxe * st.hierarchical_cross_entropy(
        logits, y, tree, alpha=cfg.hxe_alpha)
  if teacher is not None:
    t_logits, t_feats = teacher
    loss += cfg.w_kd * st.distillation_loss(
        logits, t_logits, temperature=cfg.kd_temperature)
    warm = jnp.minimum((epoch + 1) / cfg.dkd_warmup, 1.0)
    loss += cfg.w_dkd * warm * st.decoupled_distillation_loss(
        logits, t_logits, y, temperature=cfg.kd_temperature, alpha=1.0,
        beta=cfg.dkd_beta)
    # Soft assignments over the codebook in the head's own terms,
    # softmax(scale · cos / τ): the sharpness of KD on the codebook logits.
    loss += cfg.w_sa * st.soft_assignment_distillation_loss(
        z, t_feats, cfg.codebook, temperature=cfg.kd_temperature,
        scale=cfg.scale)
  return loss, jax.nn.softmax(jax.lax.stop_gradient(logits))


# -- the trainer: one epoch per call ----------------------------------------------


@functools.cache
def epoch_program(body, batch_size: int, n: int, hierarchical: bool,
                  distilled: bool):
  """The jitted one-epoch trainer of (body, batch size, training-set size).

  ``program(state, cfgs, data_index, seeds, epoch, x, y, teacher_logits,
  teacher_features, tree)`` trains every model (leading axis of ``state``,
  ``cfgs``, ``data_index``, ``seeds``) for one epoch on its seed's data
  (``x[data_index]``: inputs are stacked per seed), minibatches reshuffled
  per model and epoch, and returns the new state. ``state`` is
  ``(params, opt_state, online)``: ``online`` holds, per model, the
  previous epoch's soft targets (C, C) and this epoch's ``OnlineKernel``
  (per-class sums of the predicted distributions of correctly classified
  examples, as in online label smoothing).
  """
  steps = n // batch_size

  def one(state, cfg, index, seed, epoch, x, y, t_logits, t_feats, tree):
    params, opt_state, online = state
    tx = optimizer(cfg)

    def step(carry, idx):
      params, opt_state, kernel = carry
      xb, yb = x[index, idx], y[index, idx]
      teacher = ((t_logits[index, idx], t_feats[index, idx])
                 if distilled else None)

      def loss(p):
        values, probs = loss_terms(body, p, cfg, xb, yb, online["targets"],
                                   teacher, epoch,
                                   tree if hierarchical else None)
        return values.mean(), probs

      (_, probs), grads = jax.value_and_grad(loss, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state,
              kernel.update(probs, yb)), None

    key = jax.random.fold_in(jax.random.key(seed), epoch)
    order = jax.random.permutation(key, n)[:steps * batch_size]
    (params, opt_state, kernel), _ = jax.lax.scan(
        step, (params, opt_state, online["kernel"]),
        order.reshape(steps, batch_size))
    return params, opt_state, dict(online, kernel=kernel)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None, None, None, None,
                                        None, None)))


def initial_state(body, C, F, seeds, sample_shape):
  """Host arrays of ``(params, opt_state, online)`` for one model per seed.

  AdamW's initial state is all zeros (moments and step counts), built from
  ``jax.eval_shape`` (``tx.init`` would compile a program per parameter
  shape); the online targets start as one-hot rows (an empty
  ``OnlineKernel``'s distributions: the first epoch trains on hard labels).
  """
  params = init_params(body, C, F, seeds, sample_shape)
  one = jax.tree_util.tree_map(lambda a: a[0], params)
  cfg = method_config(C, F, lr=1.0, total_steps=1)
  opt = jax.eval_shape(lambda p: optimizer(cfg).init(p), one)
  M = len(seeds)
  opt_state = jax.tree_util.tree_map(
      lambda s: np.zeros((M,) + s.shape, s.dtype), opt)
  empty = st.OnlineKernel.init(C)
  online = {"targets": np.tile(np.eye(C, dtype=np.float32), (M, 1, 1)),
            "kernel": jax.tree_util.tree_map(
                lambda a: np.zeros((M,) + a.shape, a.dtype), empty)}
  return params, opt_state, online

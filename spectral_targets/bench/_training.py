"""Training many models as one: parameters, forward pass, the one loss and
the one-epoch trainer, vmapped over models whose differences are data
(``_config.MethodConfig``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets._numerics import unit_rows
from spectral_targets.bench._config import HEADS, method_config

# -- parameters -------------------------------------------------------------------


@functools.cache
def _param_shapes(body, sample_shape, dtype):
  return jax.eval_shape(body.init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1,) + sample_shape, dtype))


def model_shapes(body, num_classes, features, sample_shape, dtype=np.float32):
  """Shapes of one model's parameters: the body, a Dense head, the learned
  class vectors of a cosine head, the shared weight vector of the ordinal
  heads (``ordinal_w``), CORAL's K − 1 biases (``coral_b``) and the
  regression head's bias (``reg_b``). Every model carries them all; its
  config picks the head."""
  return {"body": _param_shapes(body, tuple(sample_shape), np.dtype(dtype)),
          "dense_w": jax.ShapeDtypeStruct((features, num_classes),
                                          jnp.float32),
          "dense_b": jax.ShapeDtypeStruct((num_classes,), jnp.float32),
          "class_vectors": jax.ShapeDtypeStruct((num_classes, features),
                                                jnp.float32),
          "ordinal_w": jax.ShapeDtypeStruct((features,), jnp.float32),
          "coral_b": jax.ShapeDtypeStruct((num_classes - 1,), jnp.float32),
          "reg_b": jax.ShapeDtypeStruct((), jnp.float32)}


def coral_initial_biases(num_classes: int) -> np.ndarray:
  """CORAL's starting biases: ordered, evenly from 1 down to 1/(K − 1), as
  ``coral-pytorch``'s ``CoralLayer`` (its default ``preinit_bias``) and
  ``spectral_targets.nnx.CoralHead`` start them."""
  K = num_classes
  return (np.arange(K - 1, 0, -1) / (K - 1)).astype(np.float32)


def init_params(body, num_classes, features, seeds, sample_shape):
  """Parameters of one model per integer seed, stacked on a leading axis,
  as NumPy arrays: LeCun-normal kernels (N(0, 1/fan_in); the ordinal heads'
  weight vector N(0, 1/F), a Dense(1) kernel), zero biases (CORAL's: ordered,
  ``coral_initial_biases``), N(0, 1) class vectors.

  Drawn with NumPy from the shapes of ``body.init`` (``jax.eval_shape``:
  traced, never compiled; flax's own init compiles every random op of every
  layer, seconds per body on CPU). The leaves are drawn in sorted order and
  the ordinal heads' weight vector after every other, so the other heads'
  draws are those of a model without them.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(
      model_shapes(body, num_classes, features, sample_shape))
  per_model = []
  for seed in seeds:
    rng = np.random.default_rng(seed)
    values = []
    for path, leaf in leaves:
      name = str(path[-1])
      if "coral_b" in name:
        values.append(coral_initial_biases(num_classes))
      elif "bias" in name or "dense_b" in name or "reg_b" in name:
        values.append(np.zeros(leaf.shape, np.float32))
      elif "class_vectors" in name:
        values.append(rng.normal(size=leaf.shape).astype(np.float32))
      elif "ordinal_w" in name:
        values.append((rng.normal(size=leaf.shape) / np.sqrt(features))
                      .astype(np.float32))
      else:
        fan_in = int(np.prod(leaf.shape[:-1]))
        values.append((rng.normal(size=leaf.shape) / np.sqrt(fan_in))
                      .astype(np.float32))
    per_model.append(values)
  stacked = [np.stack(vals) for vals in zip(*per_model)]
  return jax.tree_util.tree_unflatten(treedef, stacked)


# -- forward pass and loss --------------------------------------------------------


def ordinal_outputs(params, z):
  """(CORAL's K − 1 logits g_k = w·z + b_k, the regression head's scalar
  r = w·z + b) of features ``z`` (..., F): the two ordinal heads share the
  weight vector ``ordinal_w`` (a model uses one of them)."""
  s = z @ params["ordinal_w"]
  return s[..., None] + params["coral_b"], s + params["reg_b"]


#: The floor of CORAL's grade probabilities before their log: the logits
#: stay finite (a 0 · (−inf) of an unused head would be NaN), and a
#: negative probability (biases out of order) counts as almost 0.
CORAL_FLOOR = float(np.finfo(np.float32).tiny)


def ordinal_logits(params, z, num_classes):
  """The class logits of the two ordinal heads on features ``z``: CORAL's
  log ``coral_probabilities(g)`` (floored at ``CORAL_FLOOR``), so that its
  softmax is CORAL's grade distribution; and the regression head's
  −(i − r)², whose argmax is the grade nearest r, clipped to [0, C − 1]
  (a tie at a half-grade goes to the lower grade). Its softmax is a
  discretised Gaussian around r of no fitted width: not a model of the
  class distribution (``MethodConfig.probabilistic`` 0)."""
  g, r = ordinal_outputs(params, z)
  coral = jnp.log(jnp.maximum(st.coral_probabilities(g), CORAL_FLOOR))
  grades = jnp.arange(num_classes, dtype=z.dtype)
  return coral, -(grades - r[..., None]) ** 2


#: The parts of the one model a batch of models can switch on: the five
#: heads of ``_config.HEADS``; cross-entropy on the targets (``ce``), the
#: kernel part of those targets (``soft``), the online soft targets mixed
#: into them (``online``) and the online label kernel tracked for them or
#: for an online codebook (``track``); the loss terms ``hxe``, ``kd``,
#: ``dkd``, ``sa`` (soft assignments), ``coral_loss``, ``reg_loss``; and
#: training on mixup'd inputs (``mixup``).
TERMS = HEADS + ("ce", "soft", "online", "track", "hxe", "kd", "dkd", "sa",
                 "coral_loss", "reg_loss", "mixup")
ALL_TERMS = frozenset(TERMS)


def active_terms(cfg, *, tracks_kernel: bool = False) -> frozenset:
  """The ``TERMS`` that one model's config (host arrays) switches on: its
  head, and every loss term, target part or input transform whose weight is
  not 0. ``tracks_kernel``: the model reads its online label kernel between
  epochs (an online codebook), though no loss term does.

  A program built for a set of terms (``epoch_program``) computes only
  those: every other part has weight 0 in every model it trains, so
  leaving it out changes no loss and no gradient, and saves its compute
  (every model of the one universal program otherwise computes every head
  and every loss).

  Example: ``active_terms(method_config(10, 9, lr=0.01, total_steps=100))``
  is ``{"dense", "ce", "soft"}``.
  """
  on = lambda a: bool(np.any(np.asarray(a) != 0))
  terms = {h for h, w in zip(HEADS, np.asarray(cfg.head)) if w != 0}
  # Parts that cost little next to a compile of their own go together:
  # both cosine heads (one matmul with the sum of their codes), and the
  # kernel part of the targets wherever cross-entropy reads them (α = 0
  # gives one-hot targets exactly).
  if terms & {"cosine", "codebook"}:
    terms |= {"cosine", "codebook"}
  if on(cfg.w_ce):
    terms.add("soft")
  for term, weight in (("ce", cfg.w_ce), ("soft", cfg.alpha),
                       ("online", cfg.w_online), ("hxe", cfg.w_hxe),
                       ("kd", cfg.w_kd), ("dkd", cfg.w_dkd), ("sa", cfg.w_sa),
                       ("coral_loss", cfg.w_coral), ("reg_loss", cfg.w_reg),
                       ("mixup", cfg.mixup)):
    if on(weight):
      terms.add(term)
  if tracks_kernel or "online" in terms:
    terms.add("track")
  return frozenset(terms)


def forward(body, params, cfg, x, terms=ALL_TERMS):
  """(features, logits, head features): the logits of the head chosen by
  ``cfg.head`` (a one-hot over ``_config.HEADS``), and the features that
  head sees (unit-norm for the cosine heads, raw for the others). Only the
  heads in ``terms`` are computed (the others have weight 0)."""
  z = body.apply(params["body"], x) * cfg.mask
  h = cfg.head
  parts = []
  if "dense" in terms:
    parts.append(h[0] * (z @ params["dense_w"] + params["dense_b"]))
  if "cosine" in terms or "codebook" in terms:
    codes = 0.0
    if "cosine" in terms:
      codes = h[1] * params["class_vectors"] * cfg.mask
    if "codebook" in terms:
      codes = codes + h[2] * cfg.codebook
    parts.append((h[1] + h[2]) * st.codebook_logits(z, codes, scale=cfg.scale))
  if "coral" in terms or "regression" in terms:
    coral, regression = ordinal_logits(params, z, cfg.codebook.shape[0])
    if "coral" in terms:
      parts.append(h[3] * coral)
    if "regression" in terms:
      parts.append(h[4] * regression)
  if not parts:
    raise ValueError(f"terms must hold a head of {HEADS}, got "
                     f"{sorted(terms)}.")
  logits = functools.reduce(jnp.add, parts)
  seen = jnp.where(h[1] + h[2] > 0, unit_rows(z), z)
  return z, logits, seen


#: The one training recipe of every method (issue 21): AdamW, a linear
#: warm-up of the learning rate from 0 over the first ``WARMUP_EPOCHS``
#: epochs, then cosine decay to 0 at the end of the budget. One epoch is
#: the warm-up of the replication in issue 21 (the one-hot MNIST-1D CNN
#: 0.941 -> 0.952 with it; the fixed heads unchanged), fixed for every
#: method and never tuned.
WARMUP_EPOCHS = 1
WEIGHT_DECAY = 1e-4
RECIPE = {
    "optimizer": f"AdamW, weight decay {WEIGHT_DECAY:g}",
    "schedule": "linear warm-up from 0 to the peak learning rate over the "
                "first warmup_epochs, then cosine decay to 0 at the end of "
                "the budget (optax.warmup_cosine_decay_schedule(0, lr, "
                "warm-up steps, total steps)); the same for every method",
    "warmup_epochs": WARMUP_EPOCHS,
    "origin": "the one-epoch warm-up of issue 21's replication, fixed "
              "before the run for all methods (not searched)",
}


def warmup_steps(total_steps: int, epochs: int) -> float:
  """The warm-up of a schedule of ``total_steps`` over ``epochs``:
  ``WARMUP_EPOCHS`` epochs of steps."""
  return WARMUP_EPOCHS * total_steps / max(epochs, 1)


def schedule(cfg):
  r"""``optax.warmup_cosine_decay_schedule(0, cfg.lr, cfg.warmup_steps,
  cfg.total_steps)`` with its lengths as data (optax checks them with
  Python comparisons, which traced values refuse), so one program serves
  every model:

  .. math::
    \eta(t) = \eta_0 \frac{t}{w} \ (t < w), \qquad
    \eta(t) = \frac{\eta_0}{2} \Bigl(1 + \cos \pi
      \frac{\min(t - w, T - w)}{T - w}\Bigr) \ (t \ge w).
  """
  w = cfg.warmup_steps
  span = jnp.maximum(cfg.total_steps - w, 1.0)

  def value(count):
    warm = cfg.lr * count / jnp.maximum(w, 1.0)
    t = jnp.minimum(count - w, span) / span
    return jnp.where(count < w, warm,
                     cfg.lr * 0.5 * (1 + jnp.cos(jnp.pi * t)))
  return value


def optimizer(cfg):
  """AdamW (weight decay ``WEIGHT_DECAY``) on ``schedule(cfg)``: every
  method's optimiser (the learning rate and the schedule's lengths are
  data, so a grid of learning rates trains in one vmapped program)."""
  return optax.adamw(schedule(cfg), weight_decay=WEIGHT_DECAY)


def mix_inputs(x, partner_x, lam):
  r"""Mixup's input (Zhang et al. 2018): :math:`\tilde x = \lambda x +
  (1 - \lambda) x'`, one λ per example (``lam``: (B,), broadcast over the
  sample's axes). The one function that both the training step and the
  teacher's forward on mixed inputs call, so the teacher sees the very
  input the student trains on.

  Example: ``mix_inputs(x, x[partner], lam)``.
  """
  lam = jnp.reshape(lam, lam.shape + (1,) * (x.ndim - lam.ndim))
  return lam * x + (1 - lam) * partner_x


def targets(cfg, y, online_targets, partner_y=None, lam=None,
            terms=ALL_TERMS):
  r"""One model's training distribution per example: ``kernel_soft_labels``
  of the label (one-hot at α = 0), mixed with the online soft targets by
  ``w_online``; on a mixed input (``partner_y``, ``lam`` given) the same
  mixture of both labels' targets, :math:`\lambda q(y) + (1 - \lambda)
  q(y')` (mixup's hard-label targets λ e_y + (1 − λ) e_y' at α = 0). At
  λ = 1 the targets are exactly the clean ones. Without ``soft`` in
  ``terms`` the kernel part is left out (α = 0: one-hot), without
  ``online`` the online part (w_online = 0)."""
  C = cfg.target_kernel.shape[0]

  def of(labels):
    if "soft" in terms:
      q = st.kernel_soft_labels(labels, cfg.target_kernel,
                                temperature=cfg.target_temperature,
                                alpha=cfg.alpha)
    else:
      q = jax.nn.one_hot(labels, C, dtype=jnp.float32)
    if "online" in terms:
      q = (1 - cfg.w_online) * q + cfg.w_online * online_targets[labels]
    return q
  q = of(y)
  if partner_y is not None:
    q = lam[:, None] * q + (1 - lam[:, None]) * of(partner_y)
  return q


def loss_terms(body, params, cfg, x, y, online_targets, teacher, epoch,
               tree=None, partner_y=None, lam=None, terms=ALL_TERMS):
  """The per-example loss of one model on a batch, and its predicted
  probabilities (for the online label kernel). ``partner_y``, ``lam``: the
  mixup partner's labels and λ of a mixed batch (``x`` already mixed).
  Only the loss terms in ``terms`` are computed (``active_terms``: the
  others have weight 0); the hierarchical loss needs ``tree``, the
  distillation terms ``teacher``."""
  z, logits, _ = forward(body, params, cfg, x, terms)
  loss = jnp.zeros(y.shape, jnp.float32)
  if "ce" in terms:
    q = targets(cfg, y, online_targets, partner_y, lam, terms)
    loss += cfg.w_ce * optax.softmax_cross_entropy(logits, q)
  # The ordinal heads' own losses (CORAL's binary tasks; squared error on
  # the grade index), on the same features.
  if "coral_loss" in terms or "reg_loss" in terms:
    g, r = ordinal_outputs(params, z)
    if "coral_loss" in terms:
      loss += cfg.w_coral * st.coral_loss(g, y)
    if "reg_loss" in terms:
      loss += cfg.w_reg * (r - y) ** 2
  if tree is not None and "hxe" in terms:
    loss += cfg.w_hxe * st.hierarchical_cross_entropy(
        logits, y, tree, alpha=cfg.hxe_alpha)
  if teacher is not None:
    t_logits, t_feats = teacher
    if "kd" in terms:
      loss += cfg.w_kd * st.distillation_loss(
          logits, t_logits, temperature=cfg.kd_temperature)
    if "dkd" in terms:
      warm = jnp.minimum((epoch + 1) / cfg.dkd_warmup, 1.0)
      loss += cfg.w_dkd * warm * st.decoupled_distillation_loss(
          logits, t_logits, y, temperature=cfg.kd_temperature, alpha=1.0,
          beta=cfg.dkd_beta)
    if "sa" in terms:
      # Soft assignments over the codebook in the head's own terms,
      # softmax(scale · cos / τ): the sharpness of KD on the codebook
      # logits.
      loss += cfg.w_sa * st.soft_assignment_distillation_loss(
          z, t_feats, cfg.codebook, temperature=cfg.kd_temperature,
          scale=cfg.scale)
  return loss, jax.nn.softmax(jax.lax.stop_gradient(logits))


# -- the trainer: one epoch per call ----------------------------------------------


def batch(cfg, index, idx, x, y, t_logits, t_feats, mix, *, distilled,
          mixed):
  """What one model's step trains on: the minibatch ``idx`` of its seed
  ``index`` as ``(inputs, labels, teacher outputs, partner labels, λ)``.

  On a mixed program (``mixed``), ``mix`` is this epoch's ``(partner, λ,
  teacher logits, teacher features)``, each (S, n, ·): a model with
  ``cfg.mixup`` = 1 trains on ``mix_inputs(x_i, x_partner(i), λ_i)`` with
  the teacher's outputs precomputed on exactly that input, and the partner
  labels and λ its targets mix; a model with ``cfg.mixup`` = 0 gets the
  clean batch (λ = 1). Otherwise partner labels and λ are None.
  """
  xb, yb = x[index, idx], y[index, idx]
  teacher = (t_logits[index, idx], t_feats[index, idx]) if distilled \
      else None
  if not mixed:
    return xb, yb, teacher, None, None
  partner, lam, m_logits, m_feats = mix
  j, lam = partner[index, idx], lam[index, idx]
  use = cfg.mixup > 0
  xb = jnp.where(use, mix_inputs(xb, x[index, j], lam), xb)
  lam = jnp.where(use, lam, jnp.ones_like(lam))
  if teacher is not None:
    teacher = (jnp.where(use, m_logits[index, idx], teacher[0]),
               jnp.where(use, m_feats[index, idx], teacher[1]))
  return xb, yb, teacher, y[index, j], lam


@functools.cache
def epoch_program(body, batch_size: int, n: int, hierarchical: bool,
                  distilled: bool, mixed: bool = False,
                  terms: frozenset = ALL_TERMS):
  """The jitted one-epoch trainer of (body, batch size, training-set size).

  ``program(state, cfgs, data_index, seeds, epoch, x, y, teacher_logits,
  teacher_features, tree, mix)`` trains every model (leading axis of
  ``state``, ``cfgs``, ``data_index``, ``seeds``) for one epoch on its seed's data
  (``x[data_index]``: inputs are stacked per seed), minibatches reshuffled
  per model and epoch, and returns the new state. ``state`` is
  ``(params, opt_state, online)``: ``online`` holds, per model, the
  previous epoch's soft targets (C, C) and this epoch's ``OnlineKernel``
  (per-class sums of the predicted distributions of correctly classified
  examples, as in online label smoothing). ``mix``: this epoch's mixup
  partners, λ and the teacher's outputs on the mixed inputs (``batch``),
  read only by a ``mixed`` program.

  ``terms``: the parts of the model the program computes (``TERMS``; the
  union of its models' ``active_terms``): a program for fewer terms trains
  the same models, at the cost of what they use. Without ``track`` the
  online kernels are left as they come in.
  """
  steps = n // batch_size
  mixed = mixed and "mixup" in terms
  hierarchical = hierarchical and "hxe" in terms
  distilled = distilled and bool(terms & {"kd", "dkd", "sa"})
  track = "track" in terms

  def one(state, cfg, index, seed, epoch, x, y, t_logits, t_feats, tree,
          mix):
    params, opt_state, online = state
    tx = optimizer(cfg)

    def step(carry, idx):
      params, opt_state, kernel = carry
      xb, yb, teacher, partner_y, lam = batch(
          cfg, index, idx, x, y, t_logits, t_feats, mix,
          distilled=distilled, mixed=mixed)

      def loss(p):
        values, probs = loss_terms(body, p, cfg, xb, yb, online["targets"],
                                   teacher, epoch,
                                   tree if hierarchical else None,
                                   partner_y, lam, terms)
        return values.mean(), probs

      (_, probs), grads = jax.value_and_grad(loss, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      if track:
        kernel = kernel.update(probs, yb)
      return (optax.apply_updates(params, updates), opt_state, kernel), None

    key = jax.random.fold_in(jax.random.key(seed), epoch)
    order = jax.random.permutation(key, n)[:steps * batch_size]
    (params, opt_state, kernel), _ = jax.lax.scan(
        step, (params, opt_state, online["kernel"]),
        order.reshape(steps, batch_size))
    return params, opt_state, dict(online, kernel=kernel)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None, None, None, None,
                                        None, None, None)))


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

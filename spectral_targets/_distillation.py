"""Knowledge-distillation losses with a temperature.

Every loss here is τ²-scaled, as in Hinton et al. (2015): the gradient of
KL(softmax(t/τ) ‖ softmax(s/τ)) with respect to s shrinks like 1/τ², so the
factor keeps the gradient's scale independent of τ. No gradient flows into
the teacher.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._jit import jit
from spectral_targets._soft_assignment import assignment_logits


def _logit_pair(student_logits: jax.typing.ArrayLike,
                teacher_logits: jax.typing.ArrayLike,
                temperature: jax.typing.ArrayLike
                ) -> tuple[jax.Array, jax.Array, jax.typing.ArrayLike]:
  s = num.as_compute(student_logits, "student_logits")
  t = jax.lax.stop_gradient(num.as_compute(teacher_logits, "teacher_logits"))
  if s.shape != t.shape:
    raise ValueError(f"student_logits and teacher_logits must have the same "
                     f"shape, got {s.shape} and {t.shape}.")
  if s.ndim < 1:
    raise ValueError("student_logits must have at least one (class) axis.")
  return s, t, num.temperature(temperature)


def distillation_loss(student_logits: jax.typing.ArrayLike,
                      teacher_logits: jax.typing.ArrayLike, *,
                      temperature: jax.typing.ArrayLike = 1.0,
                      axis: int = -1,
                      where: jax.typing.ArrayLike | None = None
                      ) -> jax.Array:
  r"""Hinton knowledge distillation: τ²-scaled KL from teacher to student.

  .. math::
    L = \tau^2\, \mathrm{KL}\big(\operatorname{softmax}(t/\tau)\,\big\|\,
        \operatorname{softmax}(s/\tau)\big)
      \;\xrightarrow{\;\tau\to\infty\;}\;
        \tfrac12 \operatorname{Var}_{c\,\sim\,\mathrm{uniform}}(t_c - s_c)

  At τ = 1 this is ``optax.kl_divergence(jax.nn.log_softmax(s),
  jax.nn.softmax(t))``, including a teacher logit of -inf (a class the
  teacher rules out: :math:`0 \log 0 = 0`). The teacher is wrapped in
  ``stop_gradient``; low-precision logits are computed in float32.

  Accurate at every temperature. With :math:`\mu = E_p[t - s]` and
  :math:`\epsilon = (t - s - \mu)/\tau`, the KL is
  :math:`\log(1 + \sum_c p_c\,(e^{-\epsilon_c} - 1 + \epsilon_c))`, a
  sum of non-negative terms, each evaluated without cancellation (a Taylor
  series near 0). It keeps float32 precision from τ ≪ 1 to τ = 1e30, where
  the textbook :math:`\sum p(\log p - \log q)` is 6% off at τ = 1e3 and
  noise beyond; when the KL exceeds 1 (no cancellation to fear) the
  textbook form is used.

  Args:
    student_logits: (..., C) student logits.
    teacher_logits: (..., C) teacher logits (-inf allowed).
    temperature: τ > 0. A bad number raises ``ValueError``; a traced τ
      cannot raise, and one that is not positive and finite gives NaN: to
      have it checked under ``jit``, pass a Python number (closed over, or
      ``jax.jit(f, static_argnames="temperature")``).
    axis: the class axis.
    where: boolean mask of the classes to include, one rule for every
      loss: a mask of the logits' rank broadcasts to their shape as it is;
      one of rank one less that broadcasts to the batch shape (...)
      selects examples, as in Optax; otherwise one whose last dimension is
      C, e.g. (C,), selects classes in every example. A 1-D mask for a
      (C, C) batch fits both and raises (pass (1, C) or (C, 1)); a
      mismatch names the shape passed. A fully masked row gives 0.

  Returns:
    (...) per-example losses, >= 0.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> s = jnp.array([[1.0, 0.0, -1.0]])
    >>> st.distillation_loss(s, s, temperature=4.0)
    Array([0.], dtype=float32)
    >>> t = jnp.array([[2.0, 0.0, -jnp.inf]])  # the teacher rules out class 2
    >>> st.distillation_loss(s, t).round(4)
    Array([0.1615], dtype=float32)

  References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    2015.
  """
  s, t, temperature = _logit_pair(student_logits, teacher_logits,
                                  temperature)
  mask = num.class_mask(where, s.shape, axis)
  return _tempered(t, s, temperature, axis, mask)[0]


@jit(static_argnames="axis")
def _tempered(t: jax.Array, s: jax.Array, temperature: jax.typing.ArrayLike,
              axis: int, mask: jax.Array | None
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) over ``axis``, the teacher's top
  class k (kept axis) and E_p[(t − t_k) − (s − s_k)].

  The logit difference is taken relative to class k: a student whose logits
  are the teacher's plus 1000 keeps its precision.
  """
  top = jnp.argmax(t if mask is None else jnp.where(mask, t, -jnp.inf),
                   axis=axis, keepdims=True)

  def at_top(x: jax.Array) -> jax.Array:
    return x - jnp.take_along_axis(x, top, axis=axis)

  loss, mean = num.tempered_kl(
      num.log_softmax(num.tempered(t, temperature, axis, mask), axis, mask),
      num.log_softmax(num.tempered(s, temperature, axis, mask), axis, mask),
      at_top(t) - at_top(s), temperature, axis, mask)
  return loss, top, mean


def decoupled_distillation_loss(student_logits: jax.typing.ArrayLike,
                                teacher_logits: jax.typing.ArrayLike,
                                labels: jax.typing.ArrayLike, *,
                                temperature: jax.typing.ArrayLike = 4.0,
                                alpha: jax.typing.ArrayLike = 1.0,
                                beta: jax.typing.ArrayLike = 8.0,
                                axis: int = -1,
                                where: jax.typing.ArrayLike | None = None
                                ) -> jax.Array:
  r"""Decoupled knowledge distillation (DKD, Zhao et al., 2022).

  With :math:`p = \operatorname{softmax}(\cdot/\tau)`, the binary split
  :math:`b = (p_y, 1 - p_y)` and the distribution over the non-target
  classes :math:`\hat p_c = p_c / (1 - p_y)`, :math:`c \ne y`:

  .. math::
    L = \alpha\,\tau^2\,\mathrm{KL}(b^T \| b^S)
      + \beta\,\tau^2\,\mathrm{KL}(\hat p^T \| \hat p^S)

  (TCKD and NCKD). Everything is computed in log space:
  :math:`\log p_y` and :math:`\log(1 - p_y)` are log-sum-exps over the
  target and the non-target logits, so the loss stays exact however
  confident either model is (a student at [100, 0, 0] against a uniform
  teacher, τ = 1: 65.57, gradient ≈ [0.667, −0.333, −0.333]), and both KLs
  are the temperature-robust ones of ``distillation_loss``.

  **Magnitude.** The defaults are the paper's CIFAR-100 settings (τ = 4,
  α = 1, β = 8): τ²β = 128 multiplies the non-target KL, so expect values
  of several units (the example below gives 9.0) where a cross-entropy is
  of order 1. Zhao et al. add DKD at full weight to the full
  cross-entropy, ramping the DKD weight linearly from 0 over the first 20
  epochs; a fixed 0.5/0.5 mix with cross-entropy lets DKD dominate the
  gradient. Lower β (1 to 2 is common on ImageNet-scale runs) or the DKD
  weight until both terms are of the same order.

  Args:
    student_logits: (..., C) student logits.
    teacher_logits: (..., C) teacher logits (-inf allowed off the label).
    labels: (...) integer labels in [0, C).
    temperature: τ > 0. A bad number raises ``ValueError``; a traced τ
      cannot raise, and one that is not positive and finite gives NaN: to
      have it checked under ``jit``, pass a Python number (closed over, or
      ``jax.jit(f, static_argnames="temperature")``).
    alpha: weight of TCKD, >= 0.
    beta: weight of NCKD, >= 0.
    axis: the class axis.
    where: boolean mask of the classes to include, read as in
      ``distillation_loss``; where it includes any class of an example, it
      must include that example's label (``ValueError`` when concrete; NaN
      for that example under tracing). A fully masked example gives 0.

  Returns:
    (...) per-example losses, >= 0.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> s = jnp.array([[2.0, 0.5, -1.0]])
    >>> t = jnp.array([[3.0, -1.0, 0.5]])
    >>> st.decoupled_distillation_loss(s, t, jnp.array([0])).round(2)
    Array([9.02], dtype=float32)

  References:
    Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation",
    CVPR 2022.
  """
  s, t, temperature = _logit_pair(student_logits, teacher_logits,
                                  temperature)
  v.check_nonnegative(alpha, "alpha")
  v.check_nonnegative(beta, "beta")
  alpha, beta = v.scalar_option(alpha, "alpha"), v.scalar_option(beta, "beta")
  mask = num.class_mask(where, s.shape, axis)
  s, t = jnp.moveaxis(s, axis, -1), jnp.moveaxis(t, axis, -1)
  y = v.check_labels(labels, s.shape[-1], shape=s.shape[:-1],
                     what="the batch shape",
                     context=f" of student_logits {jnp.shape(student_logits)}")
  if mask is not None:
    mask = jnp.moveaxis(mask, axis, -1)
    if v.is_concrete(mask) and v.is_concrete(y):
      host = np.asarray(mask)
      kept = np.take_along_axis(host, np.asarray(y)[..., None], axis=-1)
      dropped = np.argwhere(host.any(axis=-1) & ~kept[..., 0])
      if dropped.size:
        raise ValueError(
            f"where must include each example's label class; it masks out "
            f"the label of example(s) "
            f"{[tuple(int(i) for i in r) for r in dropped[:5]]}"
            f"{' ...' if len(dropped) > 5 else ''}.")
  return _decoupled(s, t, y, mask, temperature, alpha, beta)


@jit
def _decoupled(s: jax.Array, t: jax.Array, y: jax.Array,
               mask: jax.Array | None, temperature: jax.typing.ArrayLike,
               alpha: jax.typing.ArrayLike, beta: jax.typing.ArrayLike
               ) -> jax.Array:
  is_target = jax.nn.one_hot(y, s.shape[-1], dtype=bool)
  inside = jnp.ones_like(is_target) if mask is None else mask
  others = ~is_target & inside
  nckd, top, mean_rest = _tempered(t, s, temperature, -1, others)

  def binary(x: jax.Array) -> jax.Array:
    # (log p_y, log(1 - p_y)) as log-sum-exps of the target and the rest.
    x = num.tempered(x, temperature, -1, inside)
    target = jnp.sum(jnp.where(is_target, x, 0), axis=-1)
    rest = num.logsumexp(x, -1, others)
    total = jnp.logaddexp(target, rest)
    return jnp.stack([target - total, rest - total], -1)

  # The binary logits' difference, relative to the teacher's top non-target
  # class k: for the target, (t_y − t_k) − (s_y − s_k); for the rest,
  # τ(LSE(t/τ) − LSE(s/τ)) over the non-target classes, which is
  # E_p̂[t − s] − τ·KL(p̂ᵀ ‖ p̂ˢ) (no cancellation).
  def at_top(x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(is_target, x, 0), axis=-1) - (
        jnp.take_along_axis(x, top, axis=-1)[..., 0])

  gap = jnp.stack([at_top(t) - at_top(s),
                   mean_rest[..., 0] - nckd / temperature], -1)
  tckd, _ = num.tempered_kl(binary(t), binary(s), gap, temperature)
  loss = alpha * tckd + beta * nckd
  # A fully masked row is 0, as in every loss; one that keeps some classes
  # but not the label is undefined.
  label_kept = jnp.any(is_target & inside, axis=-1)
  empty = ~jnp.any(inside, axis=-1)
  return jnp.where(empty, 0, jnp.where(label_kept, loss, jnp.nan))


def soft_assignment_distillation_loss(
    student_features: jax.typing.ArrayLike,
    teacher_features: jax.typing.ArrayLike,
    prototypes: jax.typing.ArrayLike, *,
    temperature: jax.typing.ArrayLike = 1.0,
    scale: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""Distillation of soft assignments over a codebook.

  .. math::
    L = \tau^2\,\mathrm{KL}\big(\operatorname{softmax}(\ell_T/\tau)\,\big\|\,
        \operatorname{softmax}(\ell_S/\tau)\big), \qquad
    \ell = z P^\top \ \text{or, with a scale } s,\ \ell_c = s\cos(z, p_c)

  The teacher's dark knowledge is read in the codebook's frame: how much of
  each feature falls on every class code (``soft_assignment``, whose τ and
  ``scale`` mean the same). With ``scale=s`` this is exactly
  ``distillation_loss`` on the logits of a codebook head of that scale,
  ``codebook_logits(z, P, scale=s)``. Student and teacher features must
  live in the prototypes' space (project them first if they do not); the
  teacher is wrapped in ``stop_gradient``. The KL is the
  temperature-robust one of ``distillation_loss``.

  Args:
    student_features: (..., d) student features.
    teacher_features: (..., d) teacher features.
    prototypes: (C, d) prototypes (e.g. a spectral codebook).
    temperature: τ > 0. A bad number raises ``ValueError``; a traced τ
      cannot raise, and one that is not positive and finite gives NaN: to
      have it checked under ``jit``, pass a Python number (closed over, or
      ``jax.jit(f, static_argnames="temperature")``).
    scale: None (raw inner products), or s > 0 for the head's cosine
      logits.
    where: boolean mask of the prototypes to include, read as in
      ``distillation_loss``: (..., C), the batch shape (...), or (C,).

  Returns:
    (...) per-example losses, >= 0.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> z = jnp.array([[1.0, 0.0]])
    >>> st.soft_assignment_distillation_loss(z, z, jnp.eye(2))
    Array([0.], dtype=float32)
  """
  temperature = num.temperature(temperature)
  s = assignment_logits(student_features, prototypes, scale)
  t = jax.lax.stop_gradient(
      assignment_logits(teacher_features, prototypes, scale))
  if s.shape != t.shape:
    raise ValueError(f"student_features and teacher_features must have the "
                     f"same batch shape, got {s.shape[:-1]} and "
                     f"{t.shape[:-1]}.")
  mask = num.class_mask(where, s.shape, -1)
  return _tempered(t, s, temperature, -1, mask)[0]

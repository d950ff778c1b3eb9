"""Knowledge-distillation losses with a temperature.

Every loss here is τ²-scaled, as in Hinton et al. (2015): the gradient of
KL(softmax(t/τ) ‖ softmax(s/τ)) with respect to s shrinks like 1/τ², so the
factor keeps the gradient's scale independent of τ. No gradient flows into
the teacher.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._dark_knowledge import assignment_logits


def _logit_pair(student_logits, teacher_logits, temperature):
  s = num.as_compute(student_logits, "student_logits")
  t = jax.lax.stop_gradient(num.as_compute(teacher_logits, "teacher_logits"))
  if s.shape != t.shape:
    raise ValueError(f"student_logits and teacher_logits must have the same "
                     f"shape, got {s.shape} and {t.shape}.")
  if s.ndim < 1:
    raise ValueError("student_logits must have at least one (class) axis.")
  num.check_temperature(temperature)
  return s / temperature, t / temperature


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

  At τ = 1 this is ``optax.kl_divergence(jax.nn.log_softmax(s),
  jax.nn.softmax(t))``. The teacher is wrapped in ``stop_gradient``.
  Low-precision logits are computed in float32.

  Args:
    student_logits: (..., C) student logits.
    teacher_logits: (..., C) teacher logits.
    temperature: τ > 0.
    axis: the class axis.
    where: boolean mask of the classes to include, (..., C) or the batch
      shape (...); a fully masked row gives 0.

  Returns:
    (...) per-example losses, >= 0.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> s = jnp.array([[1.0, 0.0, -1.0]])
    >>> st.distillation_loss(s, s, temperature=4.0)
    Array([0.], dtype=float32)

  References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    2015.
  """
  s, t = _logit_pair(student_logits, teacher_logits, temperature)
  mask = num.class_mask(where, s.shape, axis)
  kl = num.kl_from_log_probs(num.log_softmax(t, axis, mask),
                             num.log_softmax(s, axis, mask), axis, mask)
  return temperature**2 * kl


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

  (TCKD and NCKD). The defaults are the paper's CIFAR-100 settings. The
  non-target mass is summed from the non-target probabilities, never taken
  as 1 − p_y, so it stays accurate when :math:`p_y \to 1`.

  Args:
    student_logits: (..., C) student logits.
    teacher_logits: (..., C) teacher logits.
    labels: (...) integer labels in [0, C).
    temperature: τ > 0.
    alpha: weight of TCKD.
    beta: weight of NCKD.
    axis: the class axis.
    where: boolean mask of the classes to include ((..., C) or batch
      shape); the label's class must be included.

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
  s, t = _logit_pair(student_logits, teacher_logits, temperature)
  s, t = jnp.moveaxis(s, axis, -1), jnp.moveaxis(t, axis, -1)
  C = s.shape[-1]
  y = v.check_labels(labels, C)
  if y.shape != s.shape[:-1]:
    raise ValueError(f"labels must have the batch shape {s.shape[:-1]}, got "
                     f"{y.shape}.")
  mask = None
  if where is not None:
    w = jnp.asarray(where)
    mask = num.class_mask(jnp.moveaxis(w, axis, -1) if w.ndim == s.ndim
                          else w, s.shape, -1)
  is_target = jax.nn.one_hot(y, C, dtype=bool)
  others = ~is_target if mask is None else ~is_target & mask

  def split(x):
    # log p_y and log(1 - p_y) from log-sum-exps over the two parts.
    log_all = num.log_softmax(x, -1, mask)
    log_target = jnp.sum(jnp.where(is_target, log_all, 0), -1)
    log_rest = jnp.log(jnp.sum(jnp.where(others, jnp.exp(log_all), 0), -1)
                       + jnp.finfo(x.dtype).tiny)
    return jnp.stack([log_target, log_rest], -1), num.log_softmax(x, -1,
                                                                  others)

  bt, nt = split(t)
  bs, ns = split(s)
  tckd = num.kl_from_log_probs(bt, bs, -1, None)
  nckd = num.kl_from_log_probs(nt, ns, -1, others)
  return temperature**2 * (alpha * tckd + beta * nckd)


def soft_assignment_distillation_loss(
    student_features: jax.typing.ArrayLike,
    teacher_features: jax.typing.ArrayLike,
    prototypes: jax.typing.ArrayLike, *,
    temperature: jax.typing.ArrayLike = 1.0,
    where: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""Distillation of soft assignments over a codebook.

  .. math::
    L = \tau^2\,\mathrm{KL}\big(\operatorname{softmax}(z_T P^\top/\tau)\,\big\|\,
        \operatorname{softmax}(z_S P^\top/\tau)\big)

  The teacher's dark knowledge is read in the codebook's frame: how much of
  each feature falls on every class code (``soft_assignment``). Student and
  teacher features must live in the prototypes' space (project them first
  if they do not); the teacher is wrapped in ``stop_gradient``.

  Args:
    student_features: (..., d) student features.
    teacher_features: (..., d) teacher features.
    prototypes: (C, d) prototypes (e.g. a spectral codebook).
    temperature: τ > 0.
    where: (..., C) or (C,) boolean mask of the prototypes to include.

  Returns:
    (...) per-example losses, >= 0.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> z = jnp.array([[1.0, 0.0]])
    >>> st.soft_assignment_distillation_loss(z, z, jnp.eye(2))
    Array([0.], dtype=float32)
  """
  s = assignment_logits(student_features, prototypes, temperature)
  t = jax.lax.stop_gradient(
      assignment_logits(teacher_features, prototypes, temperature))
  if s.shape != t.shape:
    raise ValueError(f"student_features and teacher_features must have the "
                     f"same batch shape, got {s.shape[:-1]} and "
                     f"{t.shape[:-1]}.")
  mask = num.class_mask(where, s.shape, None)
  kl = num.kl_from_log_probs(num.log_softmax(t, -1, mask),
                             num.log_softmax(s, -1, mask), -1, mask)
  return temperature**2 * kl

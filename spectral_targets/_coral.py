"""CORAL: ordinal regression as K - 1 rank-consistent binary tasks "is the
grade above k?" (Cao, Mirjalili & Raschka, 2020), its loss and what its
logits predict."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v


def _check_logits(logits: object, axis: int) -> jax.Array:
  g = num.as_compute(v.as_float_array(logits, "logits"), "logits")
  if g.ndim < 1:
    raise ValueError(f"logits must have shape (..., K - 1), got {g.shape}.")
  if not -g.ndim <= axis < g.ndim:
    raise ValueError(f"axis {axis} is out of range for logits of shape "
                     f"{g.shape}.")
  if g.shape[axis] == 0:
    raise ValueError(f"logits need K - 1 >= 1 binary tasks on axis {axis}, "
                     f"got shape {g.shape}.")
  return g


def coral_loss(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, *,
               axis: int = -1,
               where: jax.typing.ArrayLike | None = None,
               importance_weights: jax.typing.ArrayLike | None = None
               ) -> jax.Array:
  r"""CORAL loss: weighted binary cross-entropies of the K - 1 "grade above
  k" tasks, per example.

  .. math::
    L = -\sum_{k=0}^{K-2} \lambda_k \Big[t_k \log\sigma(g_k)
      + (1 - t_k)\log\big(1 - \sigma(g_k)\big)\Big],
    \qquad t_k = [\,y > k\,]

  computed in log space (:math:`-\log\sigma(g) = \operatorname{softplus}(-g)`).
  CORAL's logits share one weight vector and differ by their biases,
  :math:`g_k = w\cdot z + b_k` (``spectral_targets.nnx.CoralHead``); the
  minimiser has non-increasing biases (Cao et al., Theorem 1), which makes
  the K - 1 answers rank-consistent.

  Args:
    logits: (..., K - 1) logits :math:`g_k` of P(y > k), the tasks on
      ``axis`` (bf16/f16 computed in float32).
    labels: (...) integer grades in [0, K).
    axis: the task axis of ``logits``.
    where: boolean mask of the tasks to include, read as in
      ``distillation_loss``: the shape of ``logits``, the batch shape (...),
      or (K - 1,). Excluded tasks add 0; a fully excluded row gives 0 with a
      finite gradient.
    importance_weights: (K - 1,) non-negative task weights
      :math:`\lambda_k` (default all 1).

  Returns:
    (...) per-example losses.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> g = jnp.array([[2.0, 0.0, -2.0]])  # K = 4 grades
    >>> st.coral_loss(g, jnp.array([1]))  # t = (1, 0, 0)
    Array([0.947...], dtype=float32)

  References:
    Cao, Mirjalili & Raschka, "Rank consistent ordinal regression for neural
    networks with application to age estimation", Pattern Recognition
    Letters 140, 2020.
  """
  g = _check_logits(logits, axis)
  g = jnp.moveaxis(g, axis, -1)
  K = g.shape[-1] + 1
  y = v.check_labels(labels, K)
  if y.shape != g.shape[:-1]:
    raise ValueError(f"labels must have the batch shape {g.shape[:-1]} of "
                     f"logits (task axis {axis} removed), got {y.shape}.")
  if importance_weights is None:
    lam = jnp.ones((K - 1,), g.dtype)
  else:
    lam = v.as_float_array(importance_weights, "importance_weights")
    if lam.shape != (K - 1,):
      raise ValueError(f"importance_weights must have shape ({K - 1},), got "
                       f"{lam.shape}.")
    if v.is_concrete(lam):
      a = np.asarray(lam)
      if not (np.isfinite(a) & (a >= 0)).all():
        raise ValueError("importance_weights must be finite and >= 0, got "
                         f"{a.tolist()}.")
  t = y[..., None] > jnp.arange(K - 1)
  per_task = jnp.where(t, jax.nn.softplus(-g), jax.nn.softplus(g))
  mask = num.class_mask(where, jnp.moveaxis(g, -1, axis).shape, axis)
  if mask is not None:
    per_task = jnp.where(jnp.moveaxis(mask, axis, -1), per_task, 0)
  return jnp.sum(lam.astype(g.dtype) * per_task, axis=-1)


def coral_probabilities(logits: jax.typing.ArrayLike, *, axis: int = -1
                        ) -> jax.Array:
  r"""The grade distribution that CORAL's K - 1 logits imply.

  .. math::
    P(y = k) = \sigma(g_{k-1}) - \sigma(g_k),
    \qquad \sigma(g_{-1}) = 1,\ \sigma(g_{K-1}) = 0,

  evaluated, for :math:`a = g_{k-1} \ge b = g_k`, as
  :math:`\sigma(a)\,\sigma(-b)\,(1 - e^{\,b-a})`, which keeps its
  relative precision when both probabilities are near 1 or near 0. The rows
  sum to 1 (they telescope) and are non-negative exactly when the logits
  are non-increasing along ``axis`` (rank-consistent), as CORAL's shared
  weight vector with ordered biases gives; otherwise some entry is
  negative and says so (an out-of-order pair is the plain difference
  :math:`\sigma(a) - \sigma(b)`: finite, with a finite gradient, however
  far apart the two logits are). Feed them to ``posterior_median`` or
  ``expected_cost_predictions``.

  Args:
    logits: (..., K - 1) logits of P(y > k), the tasks on ``axis``.
    axis: the task axis of ``logits`` (and the class axis of the output).

  Returns:
    (..., K) grade probabilities, the classes on ``axis``.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.coral_probabilities(jnp.array([[1.0, -1.0]])).round(3).tolist()
    [[0.269, 0.462, 0.269]]

  References:
    Cao, Mirjalili & Raschka, Pattern Recognition Letters 140, 2020.
  """
  g = jnp.moveaxis(_check_logits(logits, axis), axis, -1)
  pad = jnp.full(g.shape[:-1] + (1,), jnp.inf, g.dtype)
  a = jnp.concatenate([pad, g], -1)   # g_{k-1}
  b = jnp.concatenate([g, -pad], -1)  # g_k
  # 0 - expm1: an exact tie gives +0, not -0. Out of order (b > a) the
  # product form is 0 * inf far apart; its expm1 is kept at most 0 so that
  # neither branch's value or gradient is NaN.
  ordered = jax.nn.sigmoid(a) * jax.nn.sigmoid(-b) * (
      0 - jnp.expm1(jnp.minimum(b - a, 0)))
  p = jnp.where(b > a, jax.nn.sigmoid(a) - jax.nn.sigmoid(b), ordered)
  return jnp.moveaxis(p, -1, axis)


def coral_predictions(logits: jax.typing.ArrayLike, *, axis: int = -1
                      ) -> jax.Array:
  r"""CORAL's predicted grade: the number of tasks answered "above".

  .. math::
    \hat y = \sum_{k=0}^{K-2} [\,\sigma(g_k) > 1/2\,]
      = \sum_{k} [\,g_k > 0\,]

  With rank-consistent (non-increasing) logits this is the posterior median
  of ``coral_probabilities`` (a logit of exactly 0 is a tie, counted "not
  above", as the median breaks ties to the lower grade). A row with a NaN
  logit gets -1, as in ``expected_cost_predictions``.

  Args:
    logits: (..., K - 1) logits of P(y > k), the tasks on ``axis``.
    axis: the task axis of ``logits``.

  Returns:
    (...) int32 grades in [0, K) (-1 for a row with a NaN).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.coral_predictions(jnp.array([[2.0, 0.5, -1.0], [-1., -2., -3.]]))
    Array([2, 0], dtype=int32)

  References:
    Cao, Mirjalili & Raschka, Pattern Recognition Letters 140, 2020.
  """
  g = jnp.moveaxis(_check_logits(logits, axis), axis, -1)
  k = jnp.sum(g > 0, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.isnan(g).any(-1), -1, k)

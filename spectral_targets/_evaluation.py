"""How good are a classifier's predictions: calibration and how bad its
mistakes are under a class distance."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._jit import jit


def _check(scores: object, labels: jax.typing.ArrayLike, name: str
           ) -> tuple[jax.Array, jax.Array]:
  p = num.as_compute(scores, name)
  if p.ndim != 2 or p.shape[0] == 0:
    raise ValueError(f"{name} must have shape (N, C) with N >= 1, got "
                     f"{p.shape}.")
  y = v.check_labels(labels, p.shape[1], shape=p.shape[:1],
                     context=f" to match {name} {p.shape}")
  return p, y


def _check_distances(distances: object, C: int) -> jax.Array:
  Dm = num.as_compute(v.as_float_array(distances, "distances"), "distances")
  if Dm.shape != (C, C):
    raise ValueError(f"distances must have shape ({C}, {C}), got "
                     f"{Dm.shape}.")
  return Dm


def expected_calibration_error(probs: jax.typing.ArrayLike,
                               labels: jax.typing.ArrayLike, *,
                               num_bins: int = 15) -> jax.Array:
  r"""Expected calibration error of the top-1 confidence (Guo et al., 2017).

  .. math::
    \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,
      \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|

  with equal-width bins :math:`((b-1)/B, b/B]` of the confidence
  :math:`\max_c p_c` (a confidence of exactly 0 falls in the first bin).

  ``probs`` must be probabilities, not logits: when concrete, every entry
  must lie in [0, 1] and every row sum to 1 (within 1e-2 plus 4 ulps of
  the input's dtype), else ``ValueError``; pass
  ``jax.nn.softmax(logits)``. Under ``jit`` this is not checked.

  Args:
    probs: (N, C) predicted distributions.
    labels: (N,) integer labels.
    num_bins: B.

  Returns:
    Scalar in [0, 1].

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> p = jnp.array([[0.9, 0.1], [0.6, 0.4]])
    >>> st.expected_calibration_error(p, jnp.array([0, 1]), num_bins=10)
    Array(0.35, dtype=float32)

  References:
    Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
    Networks", ICML 2017.
  """
  p, y = _check(probs, labels, "probs")
  B = v.check_int(num_bins, "num_bins", minimum=1)
  v.check_distributions(p, "probs", jnp.result_type(probs))
  return _ece(p, y, B)


@jit(static_argnums=2)
def _ece(p: jax.Array, y: jax.Array, B: int) -> jax.Array:
  conf = p.max(-1)
  correct = (p.argmax(-1) == y).astype(p.dtype)
  bins = jnp.clip(jnp.ceil(conf * B).astype(jnp.int32) - 1, 0, B - 1)
  gap = jax.ops.segment_sum(correct - conf, bins, num_segments=B)
  return jnp.sum(jnp.abs(gap)) / p.shape[0]


def mistake_severity(predictions: jax.typing.ArrayLike,
                     labels: jax.typing.ArrayLike,
                     distances: jax.typing.ArrayLike) -> jax.Array:
  r"""Mean class distance between the true and the predicted class, over
  the mistakes only (Bertinetto et al., 2020).

  .. math::
    \frac{1}{|\{i: \hat y_i \ne y_i\}|}\sum_{i:\,\hat y_i \ne y_i}
      D_{y_i \hat y_i}

  With the LCA-height distance of a tree (``1 - from_hierarchy(...)``,
  scaled by the tree's height) this is the paper's mistake severity. No
  mistakes gives 0.

  Args:
    predictions: (N,) predicted classes.
    labels: (N,) true classes.
    distances: (C, C) class distances.

  Returns:
    Scalar.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> D = jnp.array([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> st.mistake_severity(jnp.array([0, 2, 0]), jnp.array([0, 0, 1]), D)
    Array(1.5, dtype=float32)
  """
  Dm = num.as_compute(v.as_float_array(distances, "distances"), "distances")
  if Dm.ndim != 2 or Dm.shape[0] != Dm.shape[1]:
    raise ValueError(f"distances must be a square matrix, got {Dm.shape}.")
  C = Dm.shape[0]
  y = v.check_labels(labels, C, shape=(None,))
  yhat = v.check_labels(predictions, C, shape=y.shape, name="predictions",
                        context=" (that of labels)")
  wrong = yhat != y
  total = jnp.sum(jnp.where(wrong, Dm[y, yhat], 0))
  return total / jnp.maximum(wrong.sum(), 1)


def hierarchical_distance_at_k(scores: jax.typing.ArrayLike,
                               labels: jax.typing.ArrayLike,
                               distances: jax.typing.ArrayLike, *,
                               k: int) -> jax.Array:
  r"""Mean distance from the true class to each of the top-k predictions
  (Bertinetto et al., 2020).

  .. math::
    \frac{1}{N}\sum_i \frac{1}{k}\sum_{j=1}^{k} D_{y_i,\,\pi_i(j)}

  where :math:`\pi_i(j)` is the class with the j-th highest score. A row
  of scores with a NaN has no ranking, so it makes the result NaN (top-k
  would otherwise rank the NaN somewhere and return a finite distance).

  Args:
    scores: (N, C) logits or probabilities.
    labels: (N,) true classes.
    distances: (C, C) class distances.
    k: 1 <= k <= C.

  Returns:
    Scalar.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> D = jnp.array([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> s = jnp.array([[3., 2., 1.], [1., 2., 3.]])
    >>> st.hierarchical_distance_at_k(s, jnp.array([0, 1]), D, k=2)
    Array(0.5, dtype=float32)
  """
  s, y = _check(scores, labels, "scores")
  C = s.shape[1]
  Dm = _check_distances(distances, C)
  k = v.check_int(k, "k", minimum=1, maximum=C)
  _, top = jax.lax.top_k(s, k)
  per_example = jnp.mean(Dm[y[:, None], top], axis=-1)
  unranked = jnp.isnan(s).any(axis=-1)
  return jnp.mean(jnp.where(unranked, jnp.nan, per_example))

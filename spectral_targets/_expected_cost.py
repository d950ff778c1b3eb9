"""Bayes decisions under a class cost: the prediction that minimises the
expected cost under a predicted distribution (CRM), and its ordinal special
case, the posterior median.

Names are nouns for the values returned: ``expected_costs`` (the risk of
every candidate class), ``expected_cost_predictions`` (the classes that
minimise it, which is what ``mistake_severity`` and accuracy take as
``predictions``) and ``posterior_median``.

A row that cannot be decided (a NaN in its probabilities or costs) gets the
class -1, eagerly and under ``jit`` alike. Every function of the package that
reads labels rejects -1 when its input is concrete, and an accuracy counts it
as a mistake, so the undecided row never passes for a class.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._jit import jit


def _check_probabilities(probabilities: object) -> jax.Array:
  """(..., C) probabilities, at least float32; when concrete, every row
  without NaN holds probabilities that sum to 1 (NaN rows are decided as
  -1, not rejected)."""
  given = v.as_float_array(probabilities, "probabilities")
  p = num.as_compute(given, "probabilities")
  if p.ndim < 1 or p.shape[-1] == 0:
    raise ValueError(f"probabilities must have shape (..., C) with C >= 1, "
                     f"got {p.shape}.")
  if v.is_concrete(p) and p.size:
    rows = np.asarray(p, np.float64).reshape(-1, p.shape[-1])
    v.check_distributions(rows[~np.isnan(rows).any(-1)], "probabilities",
                          given.dtype)
  return p


def expected_costs(probabilities: jax.typing.ArrayLike,
                   distances: jax.typing.ArrayLike) -> jax.Array:
  r"""Expected cost of predicting each class under a predicted distribution.

  .. math::
    R_k(p) = \sum_{j=1}^{C} p_j\, D_{jk}

  one (N, C) @ (C, C) product (no (N, C, C) array). ``-expected_costs(p,
  D)`` are scores whose ranking is the CRM re-ranking of Karthik et al.
  (2021): pass them to ``hierarchical_distance_at_k`` for the top-k reading.
  The product runs at full float32 precision on every backend (TF32 would
  move near ties).

  ``probabilities`` must be probabilities, not logits (checked when concrete
  as in ``expected_calibration_error``, except that a row with a NaN is let
  through and gives NaN costs).

  Args:
    probabilities: (..., C) predicted distributions (bf16/f16 computed in
      float32).
    distances: (C, C) costs, ``distances[j, k]`` the cost of predicting k
      when the truth is j (need not be symmetric). For a class tree, the
      height of the lowest common ancestor is ``h(root) * (1 -
      from_hierarchy(edges, classes=classes))``.

  Returns:
    (..., C) expected costs.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> D = jnp.array([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> st.expected_costs(jnp.array([[0.4, 0.2, 0.4]]), D)
    Array([[1. , 0.8, 1. ]], dtype=float32)

  References:
    Karthik, Prabhu, Dokania & Torr, "No Cost Likelihood Manipulation at
    Test Time for Making Better Mistakes in Deep Networks", ICLR 2021.
  """
  p = _check_probabilities(probabilities)
  C = p.shape[-1]
  D = num.as_compute(v.as_float_array(distances, "distances"), "distances")
  if D.shape != (C, C):
    raise ValueError(f"distances must have shape ({C}, {C}) for {C} "
                     f"classes, got {D.shape}.")
  v.check_finite(D, "distances")
  return _costs(p, D)


@jit
def _costs(p: jax.Array, D: jax.Array) -> jax.Array:
  dtype = jnp.promote_types(p.dtype, D.dtype)
  return jnp.matmul(p.astype(dtype), D.astype(dtype),
                    precision=jax.lax.Precision.HIGHEST)


def expected_cost_predictions(probabilities: jax.typing.ArrayLike,
                              distances: jax.typing.ArrayLike) -> jax.Array:
  r"""The class of least expected cost (CRM, Karthik et al. 2021).

  .. math::
    \hat y = \operatorname*{arg\,min}_k \sum_{j=1}^{C} p_j\, D_{jk}

  the Bayes decision for the cost D under the posterior p: re-ranking a
  plain model's softmax with the class distances, at no training cost. With
  ``D = 1 - I`` it is the arg max of p; with ``D[j, k] = |j - k|`` on ordered
  classes it is the posterior median (``posterior_median``).

  **Ties** (several classes of equal expected cost, computed in at least
  float32) go to the lowest class index. **NaN**: a row whose expected
  costs hold a NaN (a NaN probability) has no decision and gets -1, which
  every label-reading function of the package rejects when concrete.

  Args:
    probabilities: (..., C) predicted distributions (see ``expected_costs``).
    distances: (C, C) costs, ``distances[j, k]`` the cost of predicting k
      when the truth is j (finite, checked when concrete).

  Returns:
    (...) int32 predicted classes (-1 for an undecidable row).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> D = jnp.array([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])
    >>> p = jnp.array([[0.4, 0.2, 0.4], [0.5, 0.0, 0.5], [0.6, 0.4, 0.0]])
    >>> st.expected_cost_predictions(p, D)  # arg max would say 0, 0, 0
    Array([1, 0, 0], dtype=int32)

  References:
    Karthik, Prabhu, Dokania & Torr, "No Cost Likelihood Manipulation at
    Test Time for Making Better Mistakes in Deep Networks", ICLR 2021.
  """
  return _lowest_argmin(expected_costs(probabilities, distances))


@jit
def _lowest_argmin(risk: jax.Array) -> jax.Array:
  # argmin returns the first of equal minima; a NaN would win it.
  best = jnp.argmin(risk, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.isnan(risk).any(-1), -1, best)


def posterior_median(probabilities: jax.typing.ArrayLike) -> jax.Array:
  r"""The median class of a distribution over ordered classes: the Bayes
  decision for the absolute error :math:`|\hat y - y|`.

  .. math::
    \hat y = \min\Big\{k : \sum_{j \le k} p_j \ge \tfrac12 \sum_j p_j\Big\}

  The expected absolute error :math:`R(k) = \sum_j p_j |j - k|` changes by
  :math:`R(k+1) - R(k) = 2F(k) - 1` (F the cumulative distribution), so it
  is smallest from the first k with F(k) ≥ 1/2 on: this is
  ``expected_cost_predictions(p, D)`` with ``D[j, k] = |j - k|``, ties
  (F(k) = 1/2 exactly) broken the same way, to the lower class. O(C) per
  row, no C × C matrix. Near ties can go either way by rounding (each
  route rounds differently). A row with a NaN gets -1.

  Args:
    probabilities: (..., C) predicted distributions over ordered classes
      (checked as in ``expected_costs``).

  Returns:
    (...) int32 median classes (-1 for a row with a NaN).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> p = jnp.array([[0.3, 0.1, 0.2, 0.4], [0.5, 0.0, 0.0, 0.5]])
    >>> st.posterior_median(p)  # arg max: 3, 0
    Array([2, 0], dtype=int32)

  References:
    Berger, "Statistical Decision Theory and Bayesian Analysis" (2nd ed.,
    Springer 1985), §4.4.2: the posterior median is the Bayes rule for
    absolute-error loss.
  """
  return _median(_check_probabilities(probabilities))


@jit
def _median(p: jax.Array) -> jax.Array:
  cdf = jnp.cumsum(p, axis=-1)
  half = cdf[..., -1:] / 2
  # The first k reaching half the mass; the last class if rounding keeps
  # every partial sum below it.
  k = jnp.sum(cdf < half, axis=-1).astype(jnp.int32)
  k = jnp.minimum(k, p.shape[-1] - 1)
  return jnp.where(jnp.isnan(p).any(-1), -1, k)

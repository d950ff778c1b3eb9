"""How far off a classifier is on ordered classes (grades): mean absolute
error in grades and quadratic weighted kappa, the metrics ordinal
classification is read by."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _validation as v
from spectral_targets._jit import jit


def _grades(predictions: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
            ) -> tuple[jax.Array, jax.Array]:
  pairs = []
  for x, name in ((predictions, "predictions"), (labels, "labels")):
    a = v.as_array(x, name)
    if not jnp.issubdtype(a.dtype, jnp.integer):
      raise TypeError(f"{name} must have an integer dtype (grades 0, 1, "
                      f"...), got {a.dtype}.")
    if a.ndim != 1 or a.shape[0] == 0:
      raise ValueError(f"{name} must have shape (N,) with N >= 1, got "
                       f"{a.shape}.")
    if v.is_concrete(a) and int(np.asarray(a).min()) < 0:
      raise ValueError(f"{name} must be grades >= 0; found "
                       f"{int(np.asarray(a).min())} (an undecided row of "
                       "expected_cost_predictions is -1).")
    pairs.append(a)
  yhat, y = pairs
  if yhat.shape != y.shape:
    raise ValueError(f"predictions and labels must have the same shape, got "
                     f"{yhat.shape} and {y.shape}.")
  dtype = jnp.result_type(float)
  return yhat.astype(dtype), y.astype(dtype)


def mean_absolute_error(predictions: jax.typing.ArrayLike,
                        labels: jax.typing.ArrayLike) -> jax.Array:
  r"""Mean absolute error in grades.

  .. math::
    \mathrm{MAE} = \frac1N \sum_{i=1}^{N} |\hat y_i - y_i|

  For probabilistic predictions the decision that minimises it is the
  posterior median (``posterior_median``), not the arg max.

  Args:
    predictions: (N,) predicted grades (integers >= 0; checked when
      concrete).
    labels: (N,) true grades.

  Returns:
    Scalar.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.mean_absolute_error(jnp.array([0, 2, 3]), jnp.array([0, 0, 4]))
    Array(1., dtype=float32)
  """
  yhat, y = _grades(predictions, labels)
  return jnp.mean(jnp.abs(yhat - y))


def quadratic_weighted_kappa(predictions: jax.typing.ArrayLike,
                             labels: jax.typing.ArrayLike) -> jax.Array:
  r"""Cohen's kappa with quadratic weights (Cohen, 1968).

  .. math::
    \kappa_w = 1 - \frac{\sum_{ij} w_{ij} O_{ij}}{\sum_{ij} w_{ij} E_{ij}},
    \qquad w_{ij} = (i - j)^2,

  with O the confusion matrix of (label, prediction) and E the outer
  product of its marginals, both normalised to sum 1 (the usual
  :math:`(i-j)^2/(C-1)^2` weights give the same ratio). With quadratic
  weights both sums are moments, so no confusion matrix (and no number of
  classes) is needed:

  .. math::
    \kappa_w = 1 - \frac{\overline{(\hat y - y)^2}}
      {\operatorname{var} y + \operatorname{var} \hat y
       + (\bar y - \bar{\hat y})^2}

  (Lin's concordance correlation of the grades). 1 is perfect agreement,
  0 what independent predictions with the same marginals score. When every
  label and every prediction is the same grade the ratio is 0/0 and the
  result is NaN: kappa is undefined there.

  Args:
    predictions: (N,) predicted grades (integers >= 0; checked when
      concrete).
    labels: (N,) true grades.

  Returns:
    Scalar in [-1, 1], or NaN when undefined.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> y = jnp.array([0, 1, 2, 3])
    >>> st.quadratic_weighted_kappa(jnp.array([0, 1, 3, 3]), y)
    Array(0.9..., dtype=float32)
    >>> st.quadratic_weighted_kappa(jnp.array([2, 2]), jnp.array([2, 2]))
    Array(nan, dtype=float32)

  References:
    Cohen, "Weighted kappa: Nominal scale agreement provision for scaled
    disagreement or partial credit", Psychological Bulletin 70(4), 1968.
  """
  return _kappa(*_grades(predictions, labels))


@jit
def _kappa(yhat: jax.Array, y: jax.Array) -> jax.Array:
  # Centred first: the sums of squares then carry no mean² to cancel.
  my, mp = jnp.mean(y), jnp.mean(yhat)
  observed = jnp.mean(jnp.square(yhat - y))
  chance = (jnp.mean(jnp.square(y - my)) + jnp.mean(jnp.square(yhat - mp))
            + jnp.square(my - mp))
  return jnp.where(chance > 0, 1 - observed / jnp.where(chance > 0, chance, 1),
                   jnp.nan)

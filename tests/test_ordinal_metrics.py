"""MAE and quadratic weighted kappa against scikit-learn, a confusion-matrix
loop from Cohen's definition, and hand cases."""

import jax
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import mean_absolute_error as sk_mae

import spectral_targets as st


def kappa_from_confusion(yhat, y, C):
  """Cohen (1968) written out: confusion matrix, chance matrix, weights."""
  O = np.zeros((C, C))
  for a, b in zip(y, yhat):
    O[a, b] += 1
  O /= O.sum()
  E = np.outer(O.sum(1), O.sum(0))
  W = np.array([[(i - j) ** 2 / (C - 1) ** 2 for j in range(C)]
                for i in range(C)])
  return 1 - (W * O).sum() / (W * E).sum()


@pytest.mark.parametrize("jitted", [False, True])
def test_kappa_matches_sklearn_and_the_definition(jitted):
  rng = np.random.default_rng(0)
  fn = jax.jit(st.quadratic_weighted_kappa) if jitted else \
      st.quadratic_weighted_kappa
  for C, N in [(7, 300), (10, 1000), (3, 17)]:
    y = rng.integers(0, C, size=N)
    yhat = np.clip(y + rng.integers(-2, 3, size=N), 0, C - 1)
    want = cohen_kappa_score(y, yhat, weights="quadratic")
    got = float(fn(yhat, y))
    assert got == pytest.approx(want, abs=1e-5)
    assert got == pytest.approx(kappa_from_confusion(yhat, y, C), abs=1e-5)


def test_kappa_hand_cases():
  y = np.array([0, 1, 2, 3])
  # O: one pair off by one, (2, 3); chance sum computed by hand: 3.0.
  assert float(st.quadratic_weighted_kappa(np.array([0, 1, 3, 3]), y)) == \
      pytest.approx(1 - 0.25 / 3.0)
  assert float(st.quadratic_weighted_kappa(y, y)) == 1
  # Reversed order: perfect disagreement.
  assert float(st.quadratic_weighted_kappa(y[::-1], y)) == pytest.approx(-1)
  # A constant prediction agrees no better than chance.
  assert float(st.quadratic_weighted_kappa(np.full(4, 2), y)) == \
      pytest.approx(0, abs=1e-7)


def test_kappa_is_nan_where_undefined():
  same = np.full(5, 3)
  assert np.isnan(float(st.quadratic_weighted_kappa(same, same)))
  assert np.isnan(float(jax.jit(st.quadratic_weighted_kappa)(same, same)))


@pytest.mark.parametrize("jitted", [False, True])
def test_mean_absolute_error(jitted):
  rng = np.random.default_rng(1)
  y, yhat = rng.integers(0, 7, size=200), rng.integers(0, 7, size=200)
  fn = jax.jit(st.mean_absolute_error) if jitted else st.mean_absolute_error
  assert float(fn(yhat, y)) == pytest.approx(sk_mae(y, yhat), rel=1e-6)
  assert float(st.mean_absolute_error(np.array([0, 2, 3]),
                                      np.array([0, 0, 4]))) == 1.0


def test_errors_name_the_argument():
  y = np.array([0, 1, 2])
  for fn in (st.mean_absolute_error, st.quadratic_weighted_kappa):
    with pytest.raises(TypeError, match="predictions must have an integer"):
      fn(np.array([0.0, 1.0, 2.0]), y)
    with pytest.raises(ValueError, match="predictions must have shape"):
      fn(np.zeros((0,), int), np.zeros((0,), int))
    with pytest.raises(ValueError, match="same shape"):
      fn(y[:2], y)
    with pytest.raises(ValueError, match="predictions must be grades >= 0"):
      fn(np.array([0, -1, 2]), y)

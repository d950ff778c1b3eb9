"""Evaluation metrics against hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st

RNG = np.random.default_rng(14)
D = np.array([[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]])


def test_ece_hand_computed():
  # Four samples, 2 bins: (0, .5] and (.5, 1].
  p = np.array([[0.8, 0.2, 0.0],   # conf .8, correct  -> bin 1
                [0.7, 0.3, 0.0],   # conf .7, wrong    -> bin 1
                [0.4, 0.35, 0.25],  # conf .4, correct -> bin 0
                [0.5, 0.5, 0.0]])  # conf .5, argmax 0, wrong -> bin 0
  y = np.array([0, 1, 0, 2])
  # bin 1: acc 1/2, conf .75 -> |.5 - .75| * 2/4 = .125
  # bin 0: acc 1/2, conf .45 -> |.5 - .45| * 2/4 = .025
  got = st.expected_calibration_error(p, y, num_bins=2)
  assert float(got) == pytest.approx(0.15, abs=1e-6)
  perfect = np.eye(3)[[0, 1, 2]]
  assert float(st.expected_calibration_error(perfect, np.arange(3))) == 0


def test_ece_against_loop_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(500, 7)) * 2
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  y = rng.integers(0, 7, size=500)
  conf, pred = p.max(1), p.argmax(1)
  edges = np.linspace(0, 1, 16)
  ece = 0.0
  for lo, hi in zip(edges[:-1], edges[1:]):
    inb = (conf > lo) & (conf <= hi)
    if inb.any():
      ece += inb.mean() * abs((pred[inb] == y[inb]).mean() - conf[inb].mean())
  assert float(st.expected_calibration_error(p.astype(np.float32), y)) == \
      pytest.approx(ece, abs=1e-5)


def test_mistake_severity_hand_computed():
  yhat = np.array([0, 2, 0, 1])
  y = np.array([0, 0, 1, 1])
  # mistakes: (0 -> 2) d=2, (1 -> 0) d=1 -> 1.5
  assert float(st.mistake_severity(yhat, y, D)) == 1.5
  assert float(st.mistake_severity(y, y, D)) == 0


def test_hierarchical_distance_at_k_hand_computed():
  s = np.array([[3., 2., 1.], [1., 2., 3.], [1., 3., 2.]])
  y = np.array([0, 1, 2])
  # k=1: D[0,0]=0, D[1,2]=1, D[2,1]=1 -> 2/3
  assert float(st.hierarchical_distance_at_k(s, y, D, k=1)) == \
      pytest.approx(2 / 3)
  # k=3 averages each row of D over all classes.
  assert float(st.hierarchical_distance_at_k(s, y, D, k=3)) == \
      pytest.approx(D[y].mean())


@pytest.mark.parametrize("jitted", [False, True])
def test_hierarchical_distance_at_k_nan_scores_stay_nan(jitted):
  # top_k ranks a NaN somewhere; a ranking made from NaN is no ranking.
  s = np.array([[3., 2., 1.], [1., np.nan, 3.]])
  y = np.array([0, 1])
  fn = lambda s, y: st.hierarchical_distance_at_k(s, y, D, k=1)
  fn = jax.jit(fn) if jitted else fn
  assert np.isnan(float(fn(s, y)))
  assert float(fn(s[:1], y[:1])) == 0.0


def test_errors():
  with pytest.raises(ValueError, match=r"k must be <= 3"):
    st.hierarchical_distance_at_k(np.ones((2, 3)), np.array([0, 1]), D, k=4)
  with pytest.raises(ValueError, match=r"distances must have shape \(3, 3\)"):
    st.hierarchical_distance_at_k(np.ones((2, 3)), np.array([0, 1]),
                                  D[:2, :2], k=1)
  with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\)"):
    st.mistake_severity(np.array([3]), np.array([0]), D)
  with pytest.raises(ValueError, match="num_bins must be >= 1"):
    st.expected_calibration_error(np.ones((2, 3)) / 3, np.array([0, 1]),
                                  num_bins=0)
  with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
    st.expected_calibration_error(np.ones((2, 3)) / 3, np.array([0]))




def test_expected_calibration_error_wants_probabilities():
  y = np.array([0, 1])
  with pytest.raises(ValueError, match=r"probs must hold probabilities in "
                     r"\[0, 1\] \(logits\?"):
    st.expected_calibration_error(np.array([[3.0, -1.0], [0.5, 2.0]]), y)
  with pytest.raises(ValueError, match="probs rows must sum to 1.*row 1 "
                     "sums to 0.8"):
    st.expected_calibration_error(np.array([[0.3, 0.7], [0.4, 0.4]]), y)
  with pytest.raises(ValueError, match="probabilities"):
    st.expected_calibration_error(np.array([[np.nan, 1.0], [0.5, 0.5]]), y)
  # bf16-rounded probabilities pass (their rows sum to 1 within rounding).
  p = jax.nn.softmax(RNG.normal(size=(8, 10)) * 3).astype(jnp.bfloat16)
  got = st.expected_calibration_error(p, np.arange(8), num_bins=5)
  assert 0 <= float(got) <= 1

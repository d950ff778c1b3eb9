"""fit_temperature against scipy.optimize.minimize_scalar on the float64
negative log-likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

import spectral_targets as st


def nll(z, y, tau):
  z = np.asarray(z, np.float64) / tau
  return np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])


def scipy_temperature(z, y):
  """argmin over log τ of the float64 NLL (Brent, tight tolerance)."""
  z = np.asarray(z, np.float64)
  scale = np.max(z.max(1) - z.min(1))
  res = minimize_scalar(lambda t: nll(z, y, scale * np.exp(t)),
                        bracket=(-3.0, 3.0), tol=1e-12)
  assert res.success
  return scale * np.exp(res.x)


def problem(N, C, confidence, seed, scale=1.0):
  """Labels drawn from softmax(h); the model reports confidence * h."""
  rng = np.random.default_rng(seed)
  h = rng.normal(size=(N, C)) * 2
  p = np.exp(h - logsumexp(h, axis=1, keepdims=True))
  y = np.array([rng.choice(C, p=row) for row in p])
  return (confidence * scale * h).astype(np.float32), y


@pytest.mark.parametrize("N,C,confidence", [
    (500, 10, 3.0), (500, 10, 0.4), (2000, 100, 1.7), (300, 2, 5.0),
    (50, 7, 1.0)])
def test_against_scipy(N, C, confidence):
  z, y = problem(N, C, confidence, seed=N + C)
  tau = st.fit_temperature(z, y)
  assert tau.shape == () and tau.dtype == jnp.float32
  want = scipy_temperature(z, y)
  np.testing.assert_allclose(float(tau), want, rtol=2e-4)
  assert nll(z, y, float(tau)) <= nll(z, y, want) + 1e-6


@pytest.mark.parametrize("scale", [1e-20, 1e-3, 1e3, 1e25])
def test_scale_of_the_logits_does_not_matter(scale):
  z, y = problem(400, 10, 2.5, seed=1)
  base = float(st.fit_temperature(z, y))
  got = float(st.fit_temperature(z * np.float32(scale), y))
  np.testing.assert_allclose(got, base * scale, rtol=1e-4)


def test_calibrates_expected_calibration_error():
  z, y = problem(3000, 10, 3.0, seed=2)
  tau = st.fit_temperature(z, y)
  ece = lambda z: float(st.expected_calibration_error(jax.nn.softmax(z), y))
  assert ece(z / tau) < 0.3 * ece(z)
  np.testing.assert_array_equal(jnp.argmax(z / tau, 1), jnp.argmax(z, 1))


def test_jit_vmap_and_low_precision():
  z, y = problem(300, 10, 2.0, seed=3)
  eager = st.fit_temperature(z, y)
  np.testing.assert_allclose(jax.jit(st.fit_temperature)(z, y), eager,
                             rtol=1e-6)
  batch = jnp.stack([z, 2 * z])
  np.testing.assert_allclose(
      jax.vmap(st.fit_temperature, in_axes=(0, None))(batch, y),
      [eager, 2 * eager], rtol=1e-5)
  low = jnp.asarray(z, jnp.bfloat16)
  got = st.fit_temperature(low, y)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, st.fit_temperature(low.astype(jnp.float32),
                                                     y), rtol=1e-6)


def test_no_finite_minimiser_raises_eagerly_and_is_nan_under_jit():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(50, 5)).astype(np.float32)
  right = np.argmax(z, axis=1)
  wrong = np.argmin(z, axis=1)
  with pytest.raises(ValueError, match="every example is classified "
                     "correctly.*τ → 0"):
    st.fit_temperature(z, right)
  with pytest.raises(ValueError, match="not above the mean logit.*τ → ∞"):
    st.fit_temperature(z, wrong)
  with pytest.raises(ValueError, match="every row of logits is constant"):
    st.fit_temperature(np.ones((4, 3), np.float32), np.zeros(4, int))
  fit = jax.jit(st.fit_temperature)
  for labels in (right, wrong):
    assert np.isnan(fit(z, labels))


def test_nan_logits():
  z, y = problem(20, 4, 1.0, seed=5)
  z[3, 1] = np.nan
  with pytest.raises(ValueError, match="logits must be finite"):
    st.fit_temperature(z, y)
  assert np.isnan(jax.jit(st.fit_temperature)(z, y))


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((np.zeros((0, 3)), np.zeros(0, int)), {}, ValueError,
     r"logits must have shape \(N, C\) with N >= 1"),
    ((np.zeros((4, 1)), np.zeros(4, int)), {}, ValueError,
     "logits must have at least 2 classes"),
    ((np.zeros(4), np.zeros(4, int)), {}, ValueError,
     r"logits must have shape \(N, C\)"),
    ((np.zeros((4, 3)), np.zeros(3, int)), {}, ValueError,
     r"labels must have shape \(4,\)"),
    ((np.zeros((4, 3)), np.full(4, 3)), {}, ValueError,
     r"labels must lie in \[0, 3\)"),
    ((np.zeros((4, 3), int), np.zeros(4, int)), {}, TypeError,
     "logits must have a floating dtype"),
    ((np.zeros((4, 3)), np.zeros(4, int)), {"max_iter": 0}, ValueError,
     "max_iter must be >= 1"),
    ((np.zeros((4, 3)), np.zeros(4, int)), {"tol": -1.0}, ValueError,
     "tol must be a positive finite number"),
])
def test_bad_inputs(args, kwargs, error, match):
  with pytest.raises(error, match=match):
    st.fit_temperature(*args, **kwargs)

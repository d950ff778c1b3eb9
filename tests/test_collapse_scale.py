"""Neural-collapse metrics at the edges: positive rescaling, half-precision
statistics, and metrics that are undefined (NaN, never a number)."""

import hypothesis
import hypothesis.strategies as hs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st
from reference import class_covariances as reference_covariances

C, D = 3, 4
RNG = np.random.default_rng(0)
Y = np.repeat(np.arange(C), 20)
Z = (RNG.normal(size=(60, D)) + 3 * np.eye(D)[Y]).astype(np.float32)
W = (np.eye(D)[:C] + 0.3 * RNG.normal(size=(C, D))).astype(np.float32)
SCALE_FREE = ("nc1", "nc2", "nc2_equinorm", "nc3", "nc4", "prototype_modes",
              "num_present")


@hypothesis.given(log10=hs.floats(-30, 30), seed=hs.integers(0, 2**32 - 1))
@hypothesis.example(log10=20.0, seed=0)
@hypothesis.example(log10=-20.0, seed=0)
def test_positive_rescaling_leaves_the_scale_free_metrics(log10, seed):
  rng = np.random.default_rng(seed)
  z = (rng.normal(size=(60, D)) + 3 * np.eye(D)[Y]).astype(np.float32)
  c = np.float32(10.0**log10)
  base = st.collapse_metrics(z, Y, C, classifier=W)
  got = st.collapse_metrics(z * c, Y, C, classifier=W)
  for name in SCALE_FREE:
    np.testing.assert_allclose(getattr(got, name), getattr(base, name),
                               rtol=2e-5, atol=1e-6, err_msg=name)
  # The spectra carry the units: c² times, to float32's range.
  want = np.asarray(base.between_spectrum, np.float64) * float(c) ** 2
  have = np.asarray(got.between_spectrum, np.float64)
  top = want.max()
  if 1e-36 < top < 1e37:  # relative to the largest: the rest is rounding
    np.testing.assert_allclose(have / top, want / top, atol=1e-5)


def test_rescaling_under_jit_and_from_statistics():
  f = jax.jit(st.collapse_metrics, static_argnums=2)
  base = f(Z, Y, C)
  for c in (1e20, 1e-20):
    got = f(Z * np.float32(c), Y, C)
    np.testing.assert_allclose(got.nc1, base.nc1, rtol=2e-5)
    assert int(got.prototype_modes) == int(base.prototype_modes) == 2
  stats = st.ClassStatistics.zeros(C, D).update(Z * np.float32(1e-15), Y)
  np.testing.assert_allclose(
      st.collapse_metrics_from_statistics(stats).nc2, base.nc2, rtol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_half_precision_statistics_are_accumulated_in_float32(dtype, offset):
  z = (10 * RNG.normal(size=(3000, D)) + offset).astype(np.float32)
  z = np.asarray(jnp.asarray(z, dtype).astype(jnp.float32))  # the rounded data
  y = RNG.integers(0, C, 3000)
  want_b, want_w = reference_covariances(z, y, C)
  stats = st.ClassStatistics.zeros(C, D, dtype)
  for chunk in np.array_split(np.arange(3000), 5):
    stats = stats.update(jnp.asarray(z[chunk], dtype), y[chunk])
  assert stats.means.dtype == jnp.float32
  between, within = stats.covariances()
  np.testing.assert_allclose(within, want_w, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(between, want_b, rtol=1e-3, atol=1e-3)
  got_b, got_w = st.class_covariances(jnp.asarray(z, dtype), y, C)
  np.testing.assert_allclose(got_w, want_w, rtol=1e-4, atol=1e-3)
  # The metrics run on them (no LAPACK dtype error), also on a state whose
  # arrays are half precision.
  m = st.collapse_metrics_from_statistics(stats)
  half = st.ClassStatistics(stats.counts, stats.means.astype(dtype),
                            stats.scatter.astype(dtype))
  if dtype == jnp.bfloat16:  # (a float16 scatter of 3000 samples is inf)
    # bf16 means are rounded to 3 digits, so only finiteness is promised.
    assert np.isfinite(float(st.collapse_metrics_from_statistics(half).nc1))
  assert np.isfinite(float(m.nc1))
  np.testing.assert_allclose(
      st.procrustes(jnp.asarray(Z, dtype), jnp.asarray(Z[:, ::-1], dtype)),
      st.procrustes(np.asarray(jnp.asarray(Z, dtype), np.float32),
                    np.asarray(jnp.asarray(Z[:, ::-1], dtype), np.float32)),
      atol=1e-5)


def test_undefined_metrics_are_nan():
  m = st.collapse_metrics(Z, Y, C, classifier=np.zeros((C, D), np.float32))
  assert np.isnan(m.nc3)  # an all-zero classifier has no direction
  bad = W.copy()
  bad[1, 2] = np.nan
  assert np.isnan(st.collapse_metrics(Z, Y, C, classifier=bad).nc4)
  assert np.isnan(st.collapse_metrics(
      Z, Y, C, classifier=W, bias=np.array([0, np.nan, 0], np.float32)).nc4)
  same = np.full((60, D), 0.3, np.float32)  # every class mean equal
  m = jax.jit(st.collapse_metrics, static_argnums=2)(same, Y, C, classifier=W)
  for name in ("nc1", "nc2", "nc2_equinorm", "nc3"):
    assert np.isnan(getattr(m, name)), name
  # A defined case stays a number.
  m = st.collapse_metrics(Z, Y, C, classifier=W, bias=np.zeros(C, np.float32))
  assert all(np.isfinite(getattr(m, n)) for n in ("nc1", "nc2", "nc3", "nc4"))


def test_a_complex_classifier_raises():
  with pytest.raises(TypeError, match="classifier must be real"):
    st.collapse_metrics(Z, Y, C, classifier=W.astype(np.complex64))
  with pytest.raises(TypeError, match="bias must be real"):
    st.collapse_metrics(Z, Y, C, classifier=W, bias=np.zeros(C, complex))

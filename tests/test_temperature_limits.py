"""Distillation losses as τ → 0: exact (0 on identical inputs, with zero
gradients; the float64 value otherwise), in float32/bf16/f16, eagerly and
under jit and vmap. At τ = 1e-20, τ² is subnormal in float32 and XLA's CPU
backend flushes it to 0, so nothing may be divided by it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

import spectral_targets as st

TINY = [1e-6, 1e-10, 1e-20, 1e-30]
RNG = np.random.default_rng(3)
S = RNG.normal(size=(4, 5)).astype(np.float32)
T = RNG.normal(size=(4, 5)).astype(np.float32)
Y = np.array([0, 2, 4, 1])
CODES = np.asarray(st.spectral_codebook(st.flat(5), 4))
Z = RNG.normal(size=(4, 4)).astype(np.float32)


def kd_reference(s, t, tau):
  """τ² KL(softmax(t/τ) ‖ softmax(s/τ)) in float64, log space (the textbook
  softmax of reference.hinton_kd underflows to log 0 at small τ)."""
  s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
  lp, lq = log_softmax(t / tau, -1), log_softmax(s / tau, -1)
  p = np.exp(lp)
  return tau**2 * np.sum(np.where(p > 0, p * (lp - lq), 0), -1)


LOSSES = {
    "distillation_loss": lambda s, t, tau: st.distillation_loss(
        s, t, temperature=tau),
    "decoupled_distillation_loss": lambda s, t, tau:
        st.decoupled_distillation_loss(s, t, Y[:s.shape[0]] if s.ndim > 1
                                       else Y[0], temperature=tau),
    "soft_assignment_distillation_loss": lambda s, t, tau:
        st.soft_assignment_distillation_loss(s[..., :4], t[..., :4], CODES,
                                             temperature=tau),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("tau", TINY)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_identical_inputs_give_zero_and_zero_gradients(name, tau, dtype):
  loss = LOSSES[name]
  x = jnp.asarray(S, dtype)
  for f in (loss, jax.jit(loss, static_argnums=2)):
    np.testing.assert_array_equal(f(x, x, tau), 0)
    g = jax.grad(lambda a: f(a, x, tau).sum())(x)
    assert np.all(np.isfinite(np.asarray(g, np.float32)))
    np.testing.assert_array_equal(np.asarray(g, np.float32), 0)
  rows = jax.vmap(lambda a: loss(a, a, tau))(x)
  np.testing.assert_array_equal(rows, 0)


@pytest.mark.parametrize("tau", [1e-1, 1e-2, *TINY])
def test_kd_matches_the_float64_value_at_any_small_tau(tau):
  want = kd_reference(S, T, tau)
  np.testing.assert_allclose(st.distillation_loss(S, T, temperature=tau),
                             want, rtol=1e-5, atol=1e-7 * tau)
  np.testing.assert_allclose(
      jax.jit(lambda s, t: st.distillation_loss(s, t, temperature=tau))(S, T),
      want, rtol=1e-5, atol=1e-7 * tau)
  # A traced τ computes the same.
  np.testing.assert_allclose(
      jax.jit(lambda s, t, u: st.distillation_loss(s, t, temperature=u))(
          S, T, tau), want, rtol=1e-5, atol=1e-7 * tau)
  np.testing.assert_allclose(
      jax.vmap(lambda s, t: st.distillation_loss(s, t, temperature=tau))(S, T),
      want, rtol=1e-5, atol=1e-7 * tau)


@pytest.mark.parametrize("tau", [1e-2, 1e-10, 1e-30])
def test_kd_gradient_is_finite_and_matches_its_small_tau_limit(tau):
  # As τ → 0 the gradient of τ²·KL is τ·(softmax(s/τ) − softmax(t/τ)),
  # one-hot differences scaled by τ; in float64 exactly that.
  g = jax.grad(lambda s: st.distillation_loss(s, T, temperature=tau).sum())(
      jnp.asarray(S))
  p = np.exp(log_softmax(T.astype(np.float64) / tau, -1))
  q = np.exp(log_softmax(S.astype(np.float64) / tau, -1))
  assert np.all(np.isfinite(g))
  if tau >= 1e-19:
    np.testing.assert_allclose(g, tau * (q - p), rtol=1e-4, atol=1e-7 * tau)
  else:
    # The backward pass multiplies τ·τ first, which float32 flushes to 0
    # below ~1e-19: the gradient, of size τ, is then 0 (finite, never NaN).
    np.testing.assert_allclose(g, tau * (q - p), atol=1.01 * tau)


@pytest.mark.parametrize("tau", [1e-20, 1e-30])
def test_soft_assignment_is_exact_at_tiny_temperatures(tau):
  # The argmax prototype takes all the mass; the shift by the maximum
  # before dividing by τ keeps exp from overflowing (NaN before).
  z = np.array([[0.3, 0.9], [1.0, -0.2]], np.float32)
  P = np.eye(2, dtype=np.float32)
  for f in (st.soft_assignment, jax.jit(st.soft_assignment,
                                        static_argnames="temperature")):
    a = np.asarray(f(z, P, temperature=tau))
    np.testing.assert_array_equal(a, np.eye(2)[np.argmax(z @ P.T, -1)])


def test_soft_assignment_traced_bad_temperature_is_nan():
  z, P = np.ones((1, 2), np.float32), np.eye(2, dtype=np.float32)
  out = jax.jit(lambda t: st.soft_assignment(z, P, temperature=t))(0.0)
  assert np.isnan(np.asarray(out)).all()
  with pytest.raises(ValueError, match="temperature"):
    st.soft_assignment(z, P, temperature=0.0)

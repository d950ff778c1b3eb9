"""The distillation losses (``_distillation``): Hinton KD and DKD against a
float64 NumPy or a 120-digit ``decimal`` reference, from confident logits to
τ = 1e30, with teachers that rule classes out."""

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given
from hypothesis import strategies as hs
from scipy.special import logsumexp

import spectral_targets as st

LOW = (jnp.bfloat16, jnp.float16)
RNG = np.random.default_rng(14)


# -- references ----------------------------------------------------------------

def kd_decimal(s, t, tau):
  """τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) in 120-digit decimal arithmetic, for
  one row; -inf teacher logits contribute 0 log 0 = 0."""
  with decimal.localcontext(decimal.Context(prec=120)):
    D = lambda x: decimal.Decimal(repr(float(x)))
    tau = D(tau)
    a = [None if np.isneginf(x) else D(x) / tau for x in t]
    b = [D(x) / tau for x in s]

    def lse(xs):
      xs = [x for x in xs if x is not None]
      m = max(xs)
      return m + sum((x - m).exp() for x in xs).ln()

    la, lb = lse(a), lse(b)
    kl = sum((x - la).exp() * ((x - la) - (y - lb))
             for x, y in zip(a, b) if x is not None)
    return float(tau * tau * kl)


def dkd64(s, t, y, tau, alpha, beta):
  """DKD in float64 log space (log-sum-exps for both parts of the split),
  per row, from the paper's definition."""

  def split(x, yi, keep):
    x = x / tau
    total, rest = logsumexp(x), logsumexp(x[keep])
    return np.array([x[yi] - total, rest - total]), x[keep] - rest

  def kl(lp, lq):
    some = ~np.isneginf(lp)  # 0 log 0 = 0
    return np.sum(np.exp(lp[some]) * (lp[some] - lq[some]))

  out = []
  for si, ti, yi in zip(np.asarray(s, np.float64), np.asarray(t, np.float64),
                        np.asarray(y)):
    keep = np.arange(si.size) != yi
    (bt, nt), (bs, ns) = split(ti, yi, keep), split(si, yi, keep)
    out.append(tau**2 * (alpha * kl(bt, bs) + beta * kl(nt, ns)))
  return np.array(out)



# -- DKD at confident logits ---------------------------------------------------

def test_dkd_confident_student_issue_case():
  s = jnp.array([[100.0, 0.0, 0.0]])
  t = jnp.zeros((1, 3))
  f = lambda s: st.decoupled_distillation_loss(s, t, jnp.array([0]),
                                               temperature=1.0)[0]
  # TCKD = KL((1/3, 2/3) ‖ (1, 2e^-100)) = 100·2/3 − log 3, NCKD = 0.
  assert float(f(s)) == pytest.approx(200 / 3 - np.log(3), rel=1e-6)
  assert float(f(s)) == pytest.approx(65.57, abs=5e-3)
  np.testing.assert_allclose(jax.grad(f)(s), [[2 / 3, -1 / 3, -1 / 3]],
                             rtol=1e-5)


@pytest.mark.parametrize("margin", [30.0, 90.0, 200.0, 1000.0, 1e4])
def test_dkd_keeps_growing_with_the_margin(margin):
  # The old log(Σ exp + tiny) stopped at a margin of ~88τ.
  s = np.array([[margin, 0.0, -1.0, 0.5]], np.float32)
  t = np.array([[0.0, 1.0, 0.0, -2.0]], np.float32)
  for tau in (1.0, 4.0):
    got = st.decoupled_distillation_loss(s, t, np.array([0]),
                                         temperature=tau)
    np.testing.assert_allclose(got, dkd64(s, t, [0], tau, 1.0, 8.0),
                               rtol=2e-6)


@pytest.mark.parametrize("dtype", (jnp.float32,) + LOW)
def test_dkd_finite_gradient_at_huge_logits(dtype):
  s = jnp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], dtype)
  t = jnp.asarray([[-1e4, 1e4, 5.0], [1e4, 0.0, -1e4]], dtype)
  y = np.array([0, 1])
  for tau in (1.0, 4.0):
    f = functools.partial(
        lambda s, tau: st.decoupled_distillation_loss(
            s, t, y, temperature=tau).sum(), tau=tau)
    loss = st.decoupled_distillation_loss(s, t, y, temperature=tau)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(
        loss, dkd64(np.asarray(s, np.float64), np.asarray(t, np.float64), y,
                    tau, 1.0, 8.0), rtol=1e-6)
    g = np.asarray(jax.grad(f)(s), np.float32)
    assert np.all(np.isfinite(g))
    # One-hot teacher and student on different classes: the gradient of
    # each KL is q − p: TCKD ±1 on (target, rest), NCKD β(q̂ − p̂), times τ.
    np.testing.assert_allclose(g, tau * np.array([[1, -8, 7], [-8, 1, 7]]),
                               atol=1e-3)


def test_dkd_high_temperature_limit():
  # τ → ∞: TCKD → ½ (1/C)(1 − 1/C)(d_y − mean_rest d)², NCKD → ½ Var_rest d,
  # with d = t − s (the binary split tends to (1/C, 1 − 1/C)).
  s = RNG.normal(size=(4, 7)).astype(np.float32) * 3
  t = RNG.normal(size=(4, 7)).astype(np.float32) * 3
  y = np.array([0, 3, 6, 2])
  d = (t - s).astype(np.float64)
  C = d.shape[1]
  rest = np.ones_like(d, bool)
  rest[np.arange(4), y] = False
  d_rest = d[rest].reshape(4, C - 1)
  tckd = 0.5 * (C - 1) / C**2 * (d[np.arange(4), y] - d_rest.mean(1)) ** 2
  nckd = 0.5 * d_rest.var(1)
  for tau in (1e6, 1e30):
    got = st.decoupled_distillation_loss(s, t, y, temperature=tau, alpha=1.0,
                                         beta=2.0)
    np.testing.assert_allclose(got, tckd + 2 * nckd, rtol=1e-4)
  for tau in (1e3, 1e4):  # against the float64 definition
    got = st.decoupled_distillation_loss(s, t, y, temperature=tau)
    np.testing.assert_allclose(got, dkd64(s, t, y, tau, 1.0, 8.0), rtol=1e-4)


def test_dkd_rejects_bad_weights_and_masked_label():
  s = RNG.normal(size=(3, 5)).astype(np.float32)
  t = RNG.normal(size=(3, 5)).astype(np.float32)
  y = np.array([0, 1, 2])
  for name in ("alpha", "beta"):
    for bad in (np.nan, -1.0, np.inf):
      with pytest.raises(ValueError, match=f"{name} must be a non-negative"):
        st.decoupled_distillation_loss(s, t, y, **{name: bad})
  where = np.ones((3, 5), bool)
  where[1, 1] = False
  with pytest.raises(ValueError, match=r"where must include each example's "
                     r"label class.*\[\(1,\)\]"):
    st.decoupled_distillation_loss(s, t, y, where=where)
  with pytest.raises(ValueError, match="where must include"):
    st.decoupled_distillation_loss(s, t, y, where=np.arange(5) != 2)
  # Under jit the check cannot run: that example is NaN, never garbage.
  out = jax.jit(lambda w: st.decoupled_distillation_loss(s, t, y, where=w))(
      where)
  out = np.asarray(out)
  assert np.isnan(out[1]) and np.all(np.isfinite(out[[0, 2]]))
  # alpha = beta = 0 are allowed (either part switched off).
  np.testing.assert_allclose(
      st.decoupled_distillation_loss(s, t, y, alpha=0.0, beta=0.0), 0)


def test_dkd_teacher_ruling_out_classes():
  s = np.array([[1.0, 2.0, 0.5, -1.0]], np.float32)
  t = np.array([[2.0, -np.inf, 1.0, 0.0]], np.float32)
  got = st.decoupled_distillation_loss(s, t, np.array([0]), temperature=2.0)
  np.testing.assert_allclose(got, dkd64(s, t, [0], 2.0, 1.0, 8.0), rtol=1e-5)
  g = jax.grad(lambda s: st.decoupled_distillation_loss(
      s, t, np.array([0]), temperature=2.0).sum())(jnp.asarray(s))
  assert np.all(np.isfinite(g))


finite_logits = hs.lists(hs.floats(-1e4, 1e4, width=32), min_size=2,
                         max_size=8)


@example(row=[100.0, 0.0, 0.0], other=[0.0, 0.0, 0.0], log_tau=0.0)
@example(row=[1e4, -1e4], other=[-1e4, 1e4], log_tau=-1.3)
@example(row=[1.0, 0.0, 2.0], other=[0.0, 1.0, 0.0], log_tau=30.0)
@given(row=finite_logits, other=finite_logits, log_tau=hs.floats(-1.3, 30))
def test_dkd_nonnegative_with_finite_gradient(row, other, log_tau):
  tau = 10.0**log_tau
  s = np.asarray(row, np.float32)[None]
  t = np.resize(np.asarray(other, np.float32), s.shape)
  y = np.array([len(row) // 2])
  f = lambda s: st.decoupled_distillation_loss(s, t, y, temperature=tau)[0]
  value, grad = jax.value_and_grad(f)(jnp.asarray(s))
  assert np.isfinite(value) and value >= 0
  assert np.all(np.isfinite(grad))



# -- Hinton KD at any temperature, and teachers that rule classes out --------------

@pytest.mark.parametrize("tau", [1e-3, 1.0, 4.0, 1e3, 1e4, 1e8, 1e30])
def test_kd_against_high_precision_reference(tau):
  s = RNG.normal(size=(6, 7)).astype(np.float32) * np.array(
      [[0.1], [1], [3], [10], [30], [1]], np.float32)
  t = RNG.normal(size=(6, 7)).astype(np.float32) * 3
  t[5] = s[5] + 1000 + RNG.normal(size=7) * 0.1  # an offset costs nothing
  want = [kd_decimal(si, ti, tau) for si, ti in zip(s, t)]
  got = st.distillation_loss(s, t, temperature=tau)
  np.testing.assert_allclose(got, want, rtol=3e-5, atol=1e-30)


def test_kd_high_temperature_limit_and_gradient():
  # τ²KL → ½ Var_uniform(t − s); its gradient in s is −(d − mean d)/C.
  s = RNG.normal(size=(3, 5)).astype(np.float32)
  t = RNG.normal(size=(3, 5)).astype(np.float32)
  d = (t - s).astype(np.float64)
  f = lambda s: st.distillation_loss(s, t, temperature=1e30)
  np.testing.assert_allclose(f(s), 0.5 * d.var(1), rtol=1e-6)
  g = jax.grad(lambda s: f(s).sum())(jnp.asarray(s))
  np.testing.assert_allclose(g, -(d - d.mean(1, keepdims=True)) / 5,
                             rtol=1e-5, atol=1e-7)


@example(row=[1.0, 0.0], other=[0.0, 1.0], log_tau=30.0)
@given(row=hs.lists(hs.floats(-100, 100, width=32), min_size=2, max_size=6),
       other=hs.lists(hs.floats(-100, 100, width=32), min_size=2, max_size=6),
       log_tau=hs.floats(-2, 30))
def test_kd_finite_and_nonnegative_over_decades_of_tau(row, other, log_tau):
  tau = 10.0**log_tau
  s = np.asarray(row, np.float32)
  t = np.resize(np.asarray(other, np.float32), s.shape)
  value, grad = jax.value_and_grad(
      lambda s: st.distillation_loss(s, t, temperature=tau))(jnp.asarray(s))
  assert np.isfinite(value) and value >= 0 and np.all(np.isfinite(grad))
  assert float(value) == pytest.approx(kd_decimal(s, t, tau), rel=1e-3,
                                       abs=1e-6)


def test_minus_inf_teacher_logit_is_zero_log_zero():
  s = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float32)
  t = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]], np.float32)
  got = st.distillation_loss(s, t)
  np.testing.assert_allclose(
      got, optax.kl_divergence(jax.nn.log_softmax(s), jax.nn.softmax(t)),
      rtol=1e-6)
  for tau in (1.0, 4.0, 1e4):
    np.testing.assert_allclose(st.distillation_loss(s, t, temperature=tau),
                               [kd_decimal(a, b, tau) for a, b in zip(s, t)],
                               rtol=1e-5)
  g = jax.grad(lambda s: st.distillation_loss(s, t, temperature=4.0).sum())(
      jnp.asarray(s))
  assert np.all(np.isfinite(g))
  # A teacher with no class left has no distribution: NaN, not a number.
  assert np.isnan(st.distillation_loss(s[:1], np.full((1, 3), -np.inf,
                                                      np.float32))[0])

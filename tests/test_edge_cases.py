"""Bad and extreme inputs: every case gives the right value (against a
float64 NumPy or a 120-digit ``decimal`` reference) or a clear error naming
the argument. Nothing silent: no NaN dropped, no wrong finite number."""

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
import reference as ref

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


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


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


def test_nan_propagates_through_the_losses():
  s = np.array([[1.0, np.nan, 0.0]], np.float32)
  t = np.zeros((1, 3), np.float32)
  assert np.isnan(st.distillation_loss(s, t)[0])
  assert np.isnan(st.distillation_loss(t, s)[0])
  assert np.isnan(st.decoupled_distillation_loss(s, t, np.array([0]))[0])
  assert np.isnan(st.entropy(jnp.array([0.5, jnp.nan, 0.5])))
  assert np.isnan(st.codebook_logits(s, jnp.eye(3), scale=1.0)).all()
  # A masked-out NaN is legitimately ignored.
  assert float(st.entropy(jnp.array([0.5, jnp.nan, 0.5]),
                          where=jnp.array([True, False, True]))) == (
      pytest.approx(np.log(2)))


# -- scale-free quantities in float32 --------------------------------------------

@pytest.mark.parametrize("c", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_gram_error_and_alignment_scale_free(c):
  assert float(st.gram_error(c * st.flat(5), 2)) == pytest.approx(
      np.sqrt(0.5), rel=1e-6)
  S = np.asarray(st.graded(6, 2.0), np.float64)
  A = ref.random_symmetric(np.random.default_rng(0), 6)
  assert float(st.alignment(c * st.graded(6, 2.0), S)) == pytest.approx(1.0,
                                                                         abs=1e-6)
  want = np.vdot(A, S) / np.linalg.norm(A) / np.linalg.norm(S)
  assert float(st.alignment(np.float32(c) * A.astype(np.float32), S)) == (
      pytest.approx(want, abs=1e-6))
  J = np.eye(6) - 1 / 6
  Ac, Sc = J @ A @ J, J @ S @ J
  assert float(st.alignment(np.float32(c) * A.astype(np.float32), S,
                            centered=True)) == pytest.approx(
      np.vdot(Ac, Sc) / np.linalg.norm(Ac) / np.linalg.norm(Sc), abs=1e-5)


@pytest.mark.parametrize("c", [1e-15, 1.0, 1e15])
def test_operator_paths_scale_free(c):
  F = np.random.default_rng(1).normal(size=(60, 8))
  S = F @ F.T
  lam = np.linalg.eigvalsh(S)[::-1]
  want = np.sqrt(np.sum(lam[4:] ** 2) / np.sum(lam**2))
  K = st.low_rank_kernel((c * F).astype(np.float32))
  assert float(st.gram_error(K, 4, method="randomized")) == pytest.approx(
      want, rel=1e-4)
  codes = np.random.default_rng(2).normal(size=(60, 3))
  G = codes @ codes.T
  want = np.vdot(S, G) / np.linalg.norm(S) / np.linalg.norm(G)
  got = st.alignment(K, st.low_rank_kernel((codes / c).astype(np.float32)))
  assert float(got) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("c", [1e-30, 1e30])
def test_from_class_means_scale_free(c):
  z = RNG.normal(size=(40, 5))
  y = np.arange(40) % 4
  mu = _unit(np.stack([z[y == k].mean(0) for k in range(4)]))
  np.testing.assert_allclose(
      st.from_class_means((c * z).astype(np.float32), y, 4), mu @ mu.T,
      atol=1e-6)


@pytest.mark.parametrize("c", [1e-30, 1e-7, 1.0, 1e20, 1e30])
def test_cosine_heads_and_losses_scale_free(c):
  z = RNG.normal(size=(4, 3))
  W = RNG.normal(size=(5, 3))
  y = np.array([0, 4, 2, 1])
  zc = (c * z).astype(np.float32)
  cos = _unit(z) @ _unit(W).T
  np.testing.assert_allclose(st.codebook_logits(zc, W, scale=10.0),
                             10 * cos, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(st.codebook_logits(z, (c * W).astype(np.float32),
                                                scale=10.0),
                             10 * cos, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(st.cosine_regression_loss(zc, y, W),
                             1 - cos[np.arange(4), y], atol=1e-6)
  K = np.asarray(st.graded(5, 1.0), np.float64)
  np.testing.assert_allclose(st.similarity_regression_loss(zc, y, W, K),
                             ((cos - K[y]) ** 2).sum(1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      st.soft_assignment(zc, W, scale=10.0, temperature=2.0),
      ref.softmax(10 * cos / 2.0), atol=1e-6)
  codes = (c * W).astype(np.float32)
  G = np.abs(_unit(W) @ _unit(W).T)
  np.fill_diagonal(G, 0)
  assert float(st.coherence(codes)) == pytest.approx(G.max(), rel=1e-5)
  R = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
  np.testing.assert_allclose(st.procrustes(codes, codes @ R), R, atol=1e-5)
  # The cosine's gradient has no epsilon either: against float64.
  g = jax.grad(lambda z: st.codebook_logits(z, W, scale=1.0)[0, 0])(zc)
  x, w = np.asarray(zc[0], np.float64), _unit(W)[0]
  want = (w - (x @ w) * x / (x @ x)) / np.linalg.norm(x)
  np.testing.assert_allclose(g[0], want, rtol=1e-4)


def test_zero_feature_gives_zero_logits_and_finite_gradients():
  W = RNG.normal(size=(5, 3)).astype(np.float32)
  z = jnp.zeros((2, 3))
  assert np.all(np.asarray(st.codebook_logits(z, W, scale=8.0)) == 0)
  g = jax.jacobian(lambda z: st.codebook_logits(z, W, scale=1.0))(z)
  assert np.all(np.isfinite(g))
  assert np.all(np.asarray(st.cosine_regression_loss(z, np.array([0, 1]), W))
                == 1)
  g = jax.grad(lambda z: st.cosine_regression_loss(
      z, np.array([0, 1]), W).sum())(z)
  assert np.all(np.isfinite(g))


scales = hs.floats(-30, 30).map(lambda k: 10.0**k)


@given(c=scales, seed=hs.integers(0, 2**31 - 1), centered=hs.booleans())
def test_rescaling_leaves_scale_free_quantities_unchanged(c, seed, centered):
  rng = np.random.default_rng(seed)
  A = ref.random_symmetric(rng, 5).astype(np.float32)
  B = ref.random_psd(rng, 5).astype(np.float32)
  c32 = np.float32(c)
  assert float(st.gram_error(c32 * A, 2)) == pytest.approx(
      float(st.gram_error(A, 2)), abs=2e-6)
  assert float(st.alignment(c32 * A, B, centered=centered)) == pytest.approx(
      float(st.alignment(A, B, centered=centered)), abs=2e-6)
  z = rng.normal(size=(12, 3)).astype(np.float32)
  y = np.arange(12) % 3
  np.testing.assert_allclose(st.from_class_means(c32 * z, y, 3),
                             st.from_class_means(z, y, 3), atol=2e-6)


# -- dtypes ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_kernels_are_computed_in_float32(dtype):
  S = st.double_center(st.graded(6, 2.0)).astype(dtype)
  S64 = np.asarray(S.astype(jnp.float32), np.float64)  # the rounded kernel
  lam64 = np.linalg.eigvalsh(S64)[::-1]
  lam = st.spectrum(S)
  assert lam.dtype == jnp.float32
  np.testing.assert_allclose(lam, lam64, atol=1e-5)
  lam2, _ = st.eigenmodes(S)
  np.testing.assert_allclose(lam2, lam64, atol=1e-5)
  codes = st.spectral_codebook(S, 2)
  assert codes.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
  want = np.sqrt(np.sum(lam64[2:] ** 2) / np.sum(lam64**2))
  assert float(st.gram_error(S, 2)) == pytest.approx(want, rel=1e-4)
  K = st.low_rank_kernel(np.eye(6, 2).astype(dtype))
  assert K.dtype == jnp.float32
  q = st.kernel_soft_labels(np.array([0]), st.graded(4, 1.0).astype(dtype),
                            alpha=1.0)
  assert q.dtype == jnp.float32


# -- kernels checked wherever they are taken ------------------------------------

@pytest.mark.parametrize("fn", [
    lambda K: st.kernel_soft_labels(np.array([0, 1]), K, alpha=0.5),
    lambda K: st.similarity_regression_loss(np.ones((2, 2), np.float32),
                                            np.array([0, 1]), np.eye(2), K)])
def test_losses_check_their_kernel(fn):
  with pytest.raises(ValueError, match="kernel must be finite"):
    fn(np.array([[1.0, np.nan], [np.nan, 1.0]]))
  with pytest.raises(ValueError, match="kernel must be symmetric"):
    fn(np.array([[1.0, 0.5], [0.0, 1.0]]))
  with pytest.raises(ValueError, match="kernel must be a square"):
    fn(np.ones((2, 3)))
  with pytest.raises(TypeError, match="kernel must be an array"):
    fn(None)


def test_inputs_that_are_not_arrays_name_their_argument():
  with pytest.raises(TypeError, match="kernel must be an array, got None"):
    st.spectrum(None)
  with pytest.raises(ValueError, match="kernel must be a rectangular"):
    st.spectrum([[1.0, 0.0], [0.0]])
  with pytest.raises(ValueError, match="a must be a rectangular"):
    st.alignment([[1.0, 0.0], [0.0]], np.eye(2))
  with pytest.raises(TypeError, match="kernel must be a numeric array, got "
                     "a string"):
    st.gram_error("abc", 1)


def test_blocks_and_from_confusion_reject_what_is_not_a_kernel():
  with pytest.raises(TypeError, match="groups must be a sequence.*None"):
    st.blocks(None)
  with pytest.raises(TypeError, match="groups must be a sequence.*int 3"):
    st.blocks(3)
  with pytest.raises(TypeError, match=r"string 'aab'; pass list\('aab'\)"):
    st.blocks("aab")
  with pytest.raises(ValueError, match="groups must be one-dimensional"):
    st.blocks(np.zeros((2, 2)))
  with pytest.raises(TypeError, match=r"groups\[1\] is \[0\]"):
    st.blocks([0, [0], 1])
  np.testing.assert_array_equal(st.blocks(list("aab")), st.blocks([0, 0, 1]))
  np.testing.assert_array_equal(st.blocks(range(3)), np.eye(3))
  with pytest.raises(ValueError, match="confusion must have at least one "
                     "class"):
    st.from_confusion(np.zeros((0, 0)))


def test_from_class_means_names_non_finite_classes():
  z = RNG.normal(size=(9, 2))
  y = np.arange(9) % 3
  z[4, 1] = np.nan
  z[2, 0] = np.inf
  with pytest.raises(ValueError, match=r"features of class\(es\) \[1, 2\] "
                     "are not finite"):
    st.from_class_means(z, y, 3)


def test_d_must_be_static_under_jit():
  S = st.graded(5, 2.0)
  with pytest.raises(TypeError, match=r"d must be a static Python int.*"
                     r"static_argnames='d'"):
    jax.jit(st.gram_error)(S, 2)
  assert float(jax.jit(st.gram_error, static_argnames="d")(S, 2)) == (
      pytest.approx(float(st.gram_error(S, 2))))


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


# -- kernel_soft_labels: defaults and masks ------------------------------------

def test_kernel_soft_labels_alpha_is_required_and_small_alpha_is_mostly_one_hot():
  with pytest.raises(TypeError, match="alpha"):
    st.kernel_soft_labels(np.array([0]), st.graded(10, 2.0))
  q = np.asarray(st.kernel_soft_labels(np.arange(10), st.graded(10, 2.0),
                                       alpha=0.1))
  assert np.all(np.diag(q) >= 0.9)
  np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_kernel_soft_labels_with_the_label_masked_out(alpha):
  S = np.asarray(st.graded(6, 2.0), np.float64)
  where = np.array([[False, True, True, False, True, True],
                    [True, True, False, True, True, True]])
  y = np.array([0, 1])
  q = np.asarray(st.kernel_soft_labels(y, S, alpha=alpha, temperature=0.5,
                                       where=where))
  np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)
  # Row 0 lost its label: the kernel part alone, over the included classes.
  keep = where[0]
  np.testing.assert_allclose(q[0, keep], ref.softmax(S[0, keep] / 0.5),
                             atol=1e-6)
  assert np.all(q[0, ~keep] == 0)
  # Row 1 kept it: the usual mixture, renormalised over the included ones.
  keep = where[1]
  want = alpha * ref.softmax(S[1, keep] / 0.5) + (1 - alpha) * (
      np.arange(6)[keep] == 1)
  np.testing.assert_allclose(q[1, keep], want, atol=1e-6)


# -- one mask rule for every loss -----------------------------------------------

B, C = 4, 6
S_LOG = RNG.normal(size=(B, C)).astype(np.float32)
T_LOG = RNG.normal(size=(B, C)).astype(np.float32)
Z_S = RNG.normal(size=(B, 3)).astype(np.float32)
Z_T = RNG.normal(size=(B, 3)).astype(np.float32)
CODES = RNG.normal(size=(C, 3)).astype(np.float32)
KERNEL = np.asarray(st.graded(C, 1.5))
Y = np.array([0, 2, 4, 5])
PROBS = ref.softmax(S_LOG).astype(np.float32)
MASKED = {
    "kd": lambda w: st.distillation_loss(S_LOG, T_LOG, temperature=2.0,
                                         where=w),
    "dkd": lambda w: st.decoupled_distillation_loss(S_LOG, T_LOG, Y, where=w),
    "sakd": lambda w: st.soft_assignment_distillation_loss(
        Z_S, Z_T, CODES, where=w),
    "simreg": lambda w: st.similarity_regression_loss(Z_S, Y, CODES, KERNEL,
                                                      where=w),
    "soft_labels": lambda w: st.kernel_soft_labels(Y, KERNEL, alpha=0.3,
                                                   where=w),
    "entropy": lambda w: st.entropy(PROBS, where=w),
}


@pytest.mark.parametrize("name", list(MASKED))
def test_every_loss_reads_a_mask_the_same_way(name):
  f = MASKED[name]
  classes = np.ones(C, bool)
  classes[[1, 3]] = False
  full = np.broadcast_to(classes, (B, C))
  want = f(full)
  np.testing.assert_allclose(f(classes), want, rtol=1e-6)          # (C,)
  np.testing.assert_allclose(f(classes[None]), want, rtol=1e-6)    # (1, C)
  batch = np.array([True, False, True, True])
  np.testing.assert_allclose(f(batch), f(batch[:, None]), rtol=1e-6)  # (B,)
  np.testing.assert_allclose(f(batch), f(np.broadcast_to(batch[:, None],
                                                         (B, C))), rtol=1e-6)
  with pytest.raises(ValueError, match=r"where of shape \(5,\) does not "
                     r"broadcast to shape \(4, 6\)"):
    f(np.ones(5, bool))
  with pytest.raises(ValueError, match=r"where of shape \(3, 2\) does not "
                     "broadcast"):
    f(np.ones((3, 2), bool))
  with pytest.raises(TypeError, match="where must be a boolean mask"):
    f(np.ones(C))


def test_a_one_dimensional_mask_of_a_square_batch_is_ambiguous():
  s = RNG.normal(size=(C, C)).astype(np.float32)
  with pytest.raises(ValueError, match=r"where of shape \(6,\) is ambiguous "
                     r"for shape \(6, 6\).*where\[None, :\] for a class mask"):
    st.distillation_loss(s, s.T, where=np.ones(C, bool))
  with pytest.raises(ValueError, match="ambiguous"):  # static: under jit too
    jax.jit(lambda w: st.entropy(jax.nn.softmax(s), where=w))(
        np.ones(C, bool))
  got = st.distillation_loss(s, s.T, where=np.ones((1, C), bool))
  np.testing.assert_allclose(got, st.distillation_loss(s, s.T), rtol=1e-6)


def test_masks_with_a_class_axis_elsewhere():
  classes = np.arange(C) != 2
  got = st.distillation_loss(S_LOG.T, T_LOG.T, axis=0, where=classes)
  np.testing.assert_allclose(got, st.distillation_loss(S_LOG, T_LOG,
                                                       where=classes),
                             rtol=1e-6)
  batch = np.array([True, False, True, True])
  got = st.distillation_loss(S_LOG.T, T_LOG.T, axis=0, where=batch)
  np.testing.assert_allclose(got, st.distillation_loss(S_LOG, T_LOG,
                                                       where=batch),
                             rtol=1e-6)


# -- one meaning of τ for the head and the soft assignment ----------------------

def test_soft_assignment_scale_matches_the_head():
  tau, scale = 2.0, 16.0
  head = st.codebook_logits(Z_S, CODES, scale=scale)
  np.testing.assert_allclose(
      st.soft_assignment(Z_S, CODES, temperature=tau, scale=scale),
      jax.nn.softmax(head / tau), atol=1e-6)
  np.testing.assert_allclose(
      st.soft_assignment_distillation_loss(Z_S, Z_T, CODES, temperature=tau,
                                           scale=scale),
      st.distillation_loss(head, st.codebook_logits(Z_T, CODES, scale=scale),
                           temperature=tau), rtol=1e-5)
  # Invariant to the features' norm, unlike the raw default.
  np.testing.assert_allclose(
      st.soft_assignment(7 * Z_S, CODES, scale=scale),
      st.soft_assignment(Z_S, CODES, scale=scale), atol=1e-6)
  with pytest.raises(ValueError, match="scale must be a positive"):
    st.soft_assignment(Z_S, CODES, scale=0.0)

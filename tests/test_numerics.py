"""The promises of ``_numerics``, checked through every public function
built on them: NaN propagates (never a finite number), scale-free quantities
are right from 1e-30 to 1e30 in float32, bf16/f16 inputs are computed in
float32, and one ``where`` rule serves every loss. (Checks of one function
live in the test file of its module.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

import spectral_targets as st
import reference as ref

LOW = (jnp.bfloat16, jnp.float16)
RNG = np.random.default_rng(14)


# -- NaN propagates -------------------------------------------------------------


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


@pytest.mark.parametrize("c", [1e-30, 1e-7, 1.0, 1e20, 1e30])
def test_cosine_heads_and_losses_scale_free(c):
  z = RNG.normal(size=(4, 3))
  W = RNG.normal(size=(5, 3))
  y = np.array([0, 4, 2, 1])
  zc = (c * z).astype(np.float32)
  cos = ref.unit(z) @ ref.unit(W).T
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
  G = np.abs(ref.unit(W) @ ref.unit(W).T)
  np.fill_diagonal(G, 0)
  assert float(st.coherence(codes)) == pytest.approx(G.max(), rel=1e-5)
  R = np.linalg.qr(RNG.normal(size=(3, 3)))[0]
  np.testing.assert_allclose(st.procrustes(codes, codes @ R), R, atol=1e-5)
  # The cosine's gradient has no epsilon either: against float64.
  g = jax.grad(lambda z: st.codebook_logits(z, W, scale=1.0)[0, 0])(zc)
  x, w = np.asarray(zc[0], np.float64), ref.unit(W)[0]
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

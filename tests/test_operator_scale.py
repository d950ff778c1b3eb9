"""Operators densified for a dense eigensolver: one rescaling rule (a power
of four near the Frobenius norm), and the checks a dense kernel gets
(finite, symmetric) for operators that are not symmetric by structure."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse

import spectral_targets as st
from reference import best_rank_psd

RNG = np.random.default_rng(0)
F = RNG.normal(size=(6, 3)).astype(np.float32)


def gram_error_reference(S, d):
  S = np.asarray(S, np.float64)
  return np.linalg.norm(S - best_rank_psd(S, d)) / np.linalg.norm(S)


@pytest.mark.parametrize("c", [1.0, 1e20, 1e-30])
@pytest.mark.parametrize("d", [2, 3])
def test_low_rank_kernels_at_any_scale(c, d):
  K = st.low_rank_kernel(np.float32(c) * F)
  want = gram_error_reference(F.astype(np.float64) @ F.T, d)
  np.testing.assert_allclose(float(st.gram_error(K, d)), want, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(st.spectral_codebook(K, d),
                             st.spectral_codebook(st.low_rank_kernel(F), d),
                             atol=1e-5)
  lam = np.asarray(st.top_eigenmodes(K, d, method="dense").eigenvalues,
                   np.float64)
  want_lam = np.linalg.eigvalsh(F.astype(np.float64) @ F.T)[::-1][:d]
  if c == 1.0:
    np.testing.assert_allclose(lam, want_lam, rtol=1e-5)
  else:  # c² λ: beyond float32's range it is inf or 0, as the truth is
    assert np.all(np.isinf(lam)) if c > 1 else np.all(lam == 0)


def test_an_asymmetric_sparse_kernel_raises():
  A = np.eye(4, dtype=np.float32) + 0.1
  A[0, 1] += 0.5
  for call in (lambda K: st.spectral_codebook(K, 2),
               lambda K: st.top_eigenmodes(K, 2),
               lambda K: st.gram_error(K, 2)):
    with pytest.raises(ValueError, match=r"kernel must be symmetric; largest "
                       r"asymmetry \|S\[0, 1\] - S\[1, 0\]\| = 0.5"):
      call(sparse.BCOO.fromdense(A))
  # Symmetric, with duplicate entries that sum: accepted, equal to dense.
  S = np.asarray(st.graded(5, 1.0))
  B = sparse.BCOO.fromdense(S)
  dup = sparse.BCOO((jnp.concatenate([B.data / 2, B.data / 2]),
                     jnp.concatenate([B.indices, B.indices])), shape=S.shape)
  np.testing.assert_allclose(st.spectral_codebook(dup, 2),
                             st.spectral_codebook(S, 2), atol=1e-5)


def test_a_nan_in_a_sparse_kernel_is_named_on_the_dense_path():
  A = np.eye(4, dtype=np.float32)
  A[2, 2] = np.nan
  with pytest.raises(ValueError, match=r"kernel must be finite; found nan at "
                     r"index \(2, 2\)"):
    st.spectral_codebook(sparse.BCOO.fromdense(A), 2)


def test_a_nan_in_a_custom_operator_is_named_on_the_dense_path():
  import jax

  @jax.tree_util.register_static
  class Broken(st.KernelOperator):
    num_classes, dtype = 4, jnp.float32

    def matmul(self, x):
      return jnp.asarray(x, self.dtype) * jnp.array([1, np.nan, 1, 1])[:, None]

  for call in (lambda: st.spectral_codebook(Broken(), 2),
               lambda: st.separating_dimension(Broken())):
    with pytest.raises(ValueError, match="kernel must be finite; found nan"):
      call()


def test_procrustes_edges():
  for shape in ((0, 2), (3, 0)):
    with pytest.raises(ValueError, match="x and y must have at least one "
                       "point and one dimension"):
      st.procrustes(np.zeros(shape), np.zeros(shape))
  x = RNG.normal(size=(5, 3)).astype(np.float32)
  q, _ = np.linalg.qr(RNG.normal(size=(3, 3)))
  for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
    R = st.procrustes(jnp.asarray(x, dtype), jnp.asarray(x @ q, dtype))
    assert R.dtype == jnp.float32
    np.testing.assert_allclose(R, q, atol=3e-2 if dtype != jnp.float32
                               else 1e-5)

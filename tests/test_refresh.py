"""refresh_codebook: the new kernel's codebook, as close to the old codes as
an orthogonal map allows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import spectral_targets as st

S_OLD = np.asarray(st.double_center(st.graded(8, 1.0)))
S_NEW = np.asarray(st.double_center(st.graded(8, 1.4)))
D = 4


def _gram(x):
  x = np.asarray(x, np.float64)
  return x @ x.T


@pytest.fixture(scope="module")
def codes():
  old = np.asarray(st.spectral_codebook(S_OLD, D))
  # The head's codes live in some frame of their own.
  frame = scipy.stats.ortho_group.rvs(D, random_state=0)
  return old @ frame


def test_gram_is_the_new_kernels(codes):
  new = st.refresh_codebook(codes, S_NEW)
  assert new.shape == (8, D)
  np.testing.assert_allclose(_gram(new), _gram(st.spectral_codebook(S_NEW, D)),
                             atol=1e-5)


def test_distance_is_minimal_over_orthogonal_maps(codes):
  new = np.asarray(st.refresh_codebook(codes, S_NEW), np.float64)
  base = np.asarray(st.spectral_codebook(S_NEW, D), np.float64)
  best = np.linalg.norm(new - codes)
  R, _ = scipy.linalg.orthogonal_procrustes(base, codes)
  np.testing.assert_allclose(best, np.linalg.norm(base @ R - codes),
                             rtol=1e-5)
  np.testing.assert_allclose(new, base @ R, atol=1e-5)
  for seed in range(200):
    Q = scipy.stats.ortho_group.rvs(D, random_state=seed)
    assert best <= np.linalg.norm(base @ Q - codes) + 1e-6
  # Close to the optimum: small rotations around it only move further away.
  for seed in range(20):
    A = np.random.default_rng(seed).normal(size=(D, D)) * 1e-2
    Q = scipy.linalg.expm(A - A.T)
    assert best <= np.linalg.norm(base @ R @ Q - codes) + 1e-6
  assert best < np.linalg.norm(base - codes)


def test_unchanged_kernel_gives_back_the_old_codes(codes):
  np.testing.assert_allclose(st.refresh_codebook(codes, S_OLD), codes,
                             atol=1e-5)


def test_refresh_from_an_online_kernel_and_an_operator():
  C = 6
  rng = np.random.default_rng(0)
  y = rng.integers(0, C, size=200)
  z = 3 * np.eye(C)[y] + rng.normal(size=(200, C))
  state = st.OnlineKernel.init(C).update(jax.nn.softmax(z), y)
  K = st.double_center(state.kernel())
  old = st.spectral_codebook(st.double_center(st.flat(C)), C - 1)
  new = st.refresh_codebook(old, K)
  np.testing.assert_allclose(_gram(new), _gram(st.spectral_codebook(K, C - 1)),
                             atol=1e-5)
  # Any kernel spectral_codebook takes: here an implicit tree kernel, with
  # options passed through.
  tree = st.random_hierarchy(40, seed=1)
  T = st.from_hierarchy(tree, implicit=True)
  old = st.spectral_codebook(T, 8, normalize=False)
  again = st.refresh_codebook(old, T, normalize=False)
  np.testing.assert_allclose(again, old, atol=1e-4)


def test_errors(codes):
  with pytest.raises(ValueError, match="kernel has 7 classes but old_codes "
                     "has 8 rows"):
    st.refresh_codebook(codes, S_NEW[:7, :7])
  with pytest.raises(ValueError, match="old_codes must have rank 2"):
    st.refresh_codebook(codes[0], S_NEW)
  with pytest.raises(ValueError, match="old_codes must have 1 <= d <= C"):
    st.refresh_codebook(np.ones((3, 5)), np.eye(3))
  with pytest.raises(ValueError, match="old_codes must be finite"):
    st.refresh_codebook(np.full((8, D), np.nan), S_NEW)
  with pytest.raises(TypeError, match="takes no d"):
    st.refresh_codebook(codes, S_NEW, d=3)
  with pytest.raises(ValueError, match="kernel must be symmetric"):
    st.refresh_codebook(codes, S_NEW + np.triu(np.ones((8, 8)), 1))
  with pytest.raises(TypeError, match="runs eagerly"):
    jax.jit(lambda c: st.refresh_codebook(c, S_NEW))(jnp.asarray(codes))

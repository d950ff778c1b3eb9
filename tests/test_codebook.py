import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as hs

import spectral_targets as st
import reference as ref


def _angles_deg(codes):
  a = np.sort(np.degrees(np.arctan2(codes[:, 1], codes[:, 0])))
  return np.diff(np.r_[a, a[0] + 360])


def _off_diagonal(G):
  return G[~np.eye(G.shape[0], dtype=bool)]


@pytest.mark.parametrize("C", [9, 20])
def test_flat_d2_is_regular_polygon(C):
  # DESIGN.md item 5: eigh's arbitrary basis puts six of nine codes on one
  # direction; the deliberate choice gives the even ring.
  codes = np.asarray(st.spectral_codebook(st.flat(C), 2))
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(_angles_deg(codes), 360 / C, atol=0.05)


@pytest.mark.parametrize("C", [2, 3, 5, 10, 17])
def test_flat_full_is_simplex_etf(C):
  codes = np.asarray(st.spectral_codebook(st.flat(C), C - 1))
  G = codes @ codes.T
  np.testing.assert_allclose(np.diag(G), 1, atol=1e-5)
  np.testing.assert_allclose(_off_diagonal(G), -1 / (C - 1), atol=1e-5)


def test_blocks_d2_three_clusters_120_degrees():
  groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
  S = st.blocks(groups)
  np.testing.assert_allclose(st.spectrum(S), [3, 3, 3, 0, 0, 0, 0, 0, 0],
                             atol=1e-5)
  codes = np.asarray(st.spectral_codebook(S, 2))
  G = codes @ codes.T
  same = np.equal.outer(groups, groups)
  np.testing.assert_allclose(G[same], 1, atol=1e-5)
  np.testing.assert_allclose(G[~same], -0.5, atol=1e-4)


def test_naive_eigh_basis_would_collapse():
  # The regression the deliberate choice exists for: the plain top-2 eigh
  # coordinates of flat(9) have very unequal norms, i.e. after normalising,
  # codes bunch up. Our codebook's unnormalised norms are equal instead.
  lam, U = st.eigenmodes(st.flat(9))
  naive = np.linalg.norm(np.asarray(U[:, :2]), axis=1)
  ours = np.linalg.norm(np.asarray(
      st.spectral_codebook(st.flat(9), 2, normalize=False)), axis=1)
  assert naive.max() / naive.min() > 1.5
  np.testing.assert_allclose(ours, ours.mean(), rtol=1e-4)


def test_hierarchy_codebook_superclasses():
  # 20 superclasses: the 20 top modes are tied (eigenvalue 3). At d = 10 the
  # cut falls inside them; every class still gets a unit code, siblings
  # share one and superclasses spread out.
  edges, classes = st.cifar100_hierarchy()
  S = st.from_hierarchy(edges, classes=classes)
  codes = np.asarray(st.spectral_codebook(S, 10))
  G = codes @ codes.T
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
  sib = np.asarray(S) == 0.5
  np.testing.assert_allclose(G[sib], 1, atol=1e-4)
  # 20 equal-norm vectors in 10 dims: far from collapsed.
  assert G[np.asarray(S) == 0].max() < 0.6
  # At d = 20 (a gap) the superclass codes are orthogonal; centred, they
  # form a regular simplex.
  codes = np.asarray(st.spectral_codebook(S, 20))
  np.testing.assert_allclose((codes @ codes.T)[np.asarray(S) == 0], 0,
                             atol=1e-4)
  codes = np.asarray(st.spectral_codebook(st.double_center(S), 19))
  np.testing.assert_allclose((codes @ codes.T)[np.asarray(S) == 0], -1 / 19,
                             atol=1e-4)


def test_graded_horseshoe_and_no_degeneracy_work():
  S = st.double_center(st.graded(9, 2.2))
  codes = np.asarray(st.spectral_codebook(S, 2))
  lam, U = np.linalg.eigh(np.asarray(S, np.float64))
  X = U[:, ::-1][:, :2] * np.sqrt(lam[::-1][:2])
  X /= np.linalg.norm(X, axis=1, keepdims=True)
  # Distinct eigenvalues: the codebook is the plain MDS one up to signs.
  np.testing.assert_allclose(np.abs(codes), np.abs(X), atol=1e-4)
  # The horseshoe: each class nearer its neighbour than the class after;
  # the ends curl back towards each other (closer than to the middle).
  G = codes @ codes.T
  assert all(G[i, i + 1] > G[i, i + 2] for i in range(7))
  assert G[0, 8] > G[0, 4]


@given(C=hs.integers(2, 24), seed=hs.integers(0, 2**31), data=hs.data())
def test_unit_rows_and_relabelling_invariance(C, seed, data):
  rng = np.random.default_rng(seed)
  # Well-separated eigenvalues, so the top-d subspace is well defined.
  lam = np.linspace(C, 1, C) * rng.choice([-1, 1], size=C) ** (
      np.arange(C) > C // 2)
  S = ref.with_spectrum(rng, lam)
  d = data.draw(hs.integers(1, C))
  X = ref.best_rank_psd(S, d)
  n2 = np.diag(X)
  assume(n2.min() > 1e-2 * n2.max())  # else a zero-code error is right
  codes = np.asarray(st.spectral_codebook(S, d))
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
  perm = rng.permutation(C)
  permuted = np.asarray(st.spectral_codebook(S[np.ix_(perm, perm)], d))
  back = np.empty_like(permuted)
  back[perm] = permuted
  R = np.asarray(st.procrustes(back, codes))
  np.testing.assert_allclose(back @ R, codes, atol=2e-3)


@given(C=hs.integers(2, 24), seed=hs.integers(0, 2**31))
def test_unnormalised_full_rank_reproduces_psd(C, seed):
  S = ref.random_psd(np.random.default_rng(seed), C)
  X = np.asarray(st.spectral_codebook(S, C, normalize=False), np.float64)
  np.testing.assert_allclose(X @ X.T, S, atol=1e-4 * np.abs(S).max())


@given(C=hs.integers(2, 16), seed=hs.integers(0, 2**31), data=hs.data())
def test_unnormalised_gram_error_matches(C, seed, data):
  S = ref.random_symmetric(np.random.default_rng(seed), C)
  d = data.draw(hs.integers(1, C))
  X = np.asarray(st.spectral_codebook(S, d, normalize=False), np.float64)
  err = np.linalg.norm(S - X @ X.T) / np.linalg.norm(S)
  assert err == pytest.approx(float(st.gram_error(S, d)), abs=1e-4)


def test_zero_code_is_an_error_naming_the_class():
  # Class 2 is unrelated to the others and its mode is the smallest.
  S = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 0.5]])
  with pytest.raises(ValueError, match=r"class\(es\) \[2\] get a zero code "
                     r"at d=1"):
    st.spectral_codebook(S, 1)
  assert st.spectral_codebook(S, 2).shape == (3, 2)


def test_bad_input():
  S = st.flat(4)
  with pytest.raises(ValueError, match="d must be >= 1"):
    st.spectral_codebook(S, 0)
  with pytest.raises(ValueError, match="d must be <= 4"):
    st.spectral_codebook(S, 5)
  with pytest.raises(TypeError, match="d must be an int"):
    st.spectral_codebook(S, 2.0)
  with pytest.raises(ValueError, match="degeneracy_rtol must be a positive"):
    st.spectral_codebook(S, 2, degeneracy_rtol=-1.0)
  with pytest.raises(TypeError, match="complex"):
    st.spectral_codebook(np.eye(3) * 1j, 2)
  # Integer kernels work.
  assert st.spectral_codebook(np.array([[2, 1], [1, 2]]), 1).shape == (2, 1)


def test_traced_kernel_raises_clearly():
  with pytest.raises(TypeError, match="needs a concrete kernel"):
    jax.jit(lambda S: st.spectral_codebook(S, 2))(st.flat(4))


def test_deterministic():
  a = st.spectral_codebook(st.flat(7), 3)
  b = st.spectral_codebook(st.flat(7), 3)
  np.testing.assert_array_equal(a, b)
  assert isinstance(a, jax.Array) and a.dtype == jnp.float32

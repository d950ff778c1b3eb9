import jax
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as hs

import spectral_targets as st
import reference as ref

RNG = np.random.default_rng(14)


def test_flat_matches_definition():
  for C in (1, 2, 7):
    np.testing.assert_allclose(st.flat(C), np.eye(C) - 1 / C, atol=1e-7)


def test_blocks_any_hashable_ids():
  S = st.blocks(["a", "b", "a", 3])
  expected = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]])
  np.testing.assert_array_equal(S, expected)
  np.testing.assert_array_equal(st.blocks(np.array([2, 2, 5])),
                                st.blocks([0, 0, 1]))


def test_graded_matches_definition():
  i = np.arange(9)
  expected = np.exp(-(((i[:, None] - i[None]) / 2.2) ** 2))
  np.testing.assert_allclose(st.graded(9, 2.2), expected, rtol=1e-6)


@given(C=hs.integers(1, 12), seed=hs.integers(0, 2**31))
def test_double_center_is_jsj(C, seed):
  S = ref.random_symmetric(np.random.default_rng(seed), C)
  J = np.eye(C) - 1 / C
  np.testing.assert_allclose(st.double_center(S), J @ S @ J, atol=1e-5)


def test_double_center_removes_blog_negative_eigenvalue():
  # DESIGN.md item 3: eig(S - mean S) ends in -0.241, eig(JSJ) in 0.
  S = np.asarray(st.graded(9, 2.2), np.float64)
  assert np.linalg.eigvalsh(S - S.mean())[0] == pytest.approx(-0.241, abs=1e-3)
  assert float(st.spectrum(st.double_center(S))[-1]) == pytest.approx(
      0, abs=1e-5)


def test_kernels_jit():
  S = st.graded(6, 1.5)
  np.testing.assert_allclose(jax.jit(st.double_center)(S),
                             st.double_center(S), atol=1e-6)
  z = np.random.default_rng(0).normal(size=(30, 4))
  y = np.arange(30) % 3
  f = jax.jit(st.from_class_means, static_argnums=2)
  np.testing.assert_allclose(f(z, y, 3), st.from_class_means(z, y, 3),
                             atol=1e-6)


# -- distances, confusion, class means ---------------------------------------

def test_from_distances():
  D = np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0]], float)
  np.testing.assert_allclose(st.from_distances(D, scale=2.0), np.exp(-D / 2),
                             rtol=1e-6)
  np.testing.assert_allclose(st.from_distances(D), np.exp(-D / 2), rtol=1e-6)
  with pytest.raises(ValueError, match="non-negative"):
    st.from_distances(-D)
  with pytest.raises(ValueError, match="zero diagonal"):
    st.from_distances(D + 1)
  with pytest.raises(ValueError, match="scale must be a positive"):
    st.from_distances(D, scale=0.0)
  with pytest.raises(ValueError, match="pass scale explicitly"):
    st.from_distances(np.zeros((2, 2)))


def test_from_confusion():
  M = np.array([[8, 2, 0], [1, 6, 3], [0, 0, 5]])
  P = M / M.sum(1, keepdims=True)
  np.testing.assert_allclose(st.from_confusion(M), (P + P.T) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match=r"no counts for class\(es\) \[1\]"):
    st.from_confusion([[1, 0], [0, 0]])
  with pytest.raises(ValueError, match="non-negative"):
    st.from_confusion([[1, -1], [0, 1]])
  with pytest.raises(ValueError, match="square"):
    st.from_confusion(np.ones((2, 3)))


def test_from_class_means():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(50, 3))
  y = rng.integers(0, 4, size=50)
  mu = np.stack([z[y == c].mean(0) for c in range(4)])
  mu /= np.linalg.norm(mu, axis=1, keepdims=True)
  np.testing.assert_allclose(st.from_class_means(z, y, 4), mu @ mu.T,
                             atol=1e-5)
  with pytest.raises(ValueError, match=r"class\(es\) \[4\] have no samples"):
    st.from_class_means(z, y, 5)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
    st.from_class_means(z, y, 3)
  with pytest.raises(TypeError, match="labels must have an integer dtype"):
    st.from_class_means(z, y.astype(float), 4)
  with pytest.raises(ValueError, match="features must have rank 2"):
    st.from_class_means(z[:, 0], y, 4)


# -- validation shared by every kernel-taking function -----------------------

@pytest.mark.parametrize("fn", [
    st.double_center, st.spectrum, lambda S: st.gram_error(S, 1),
    lambda S: st.alignment(S, S),
    lambda S: st.spectral_codebook(S, 1, allow_merged=True)])
def test_kernel_validation(fn):
  with pytest.raises(ValueError, match="square"):
    fn(np.ones((2, 3)))
  with pytest.raises(ValueError, match=r"largest asymmetry \|S\[0, 1\] - "
                     r"S\[1, 0\]\| = 0\.5"):
    fn(np.array([[1.0, 0.5], [0.0, 1.0]]))
  with pytest.raises(ValueError, match="finite"):
    fn(np.array([[1.0, np.nan], [np.nan, 1.0]]))
  with pytest.raises(ValueError, match="finite"):
    fn(np.array([[np.inf, 0.0], [0.0, 1.0]]))
  with pytest.raises(TypeError, match="real"):
    fn(np.eye(2) * (1 + 1j))
  with pytest.raises(TypeError, match="numeric"):
    fn(np.array([["a", "b"], ["b", "a"]]))
  # Integer and boolean kernels are promoted to float.
  fn(np.array([[2, 1], [1, 2]]))
  fn(np.eye(2, dtype=bool))


@example(C=2)
@given(C=hs.integers(1, 6))
def test_bad_sizes(C):
  with pytest.raises(ValueError, match="num_classes must be >= 1"):
    st.flat(0)
  with pytest.raises(TypeError, match="num_classes must be an int"):
    st.graded(2.5, 1.0)
  with pytest.raises(ValueError, match="width must be a positive"):
    st.graded(C, 0.0)
  with pytest.raises(ValueError, match="groups must name"):
    st.blocks([])
  assert st.graded(C, 1.0).shape == (C, C)


# -- scale-free in float32 and clear errors (issue 14) ---------------------------

@pytest.mark.parametrize("c", [1e-30, 1e30])
def test_from_class_means_scale_free(c):
  z = RNG.normal(size=(40, 5))
  y = np.arange(40) % 4
  mu = ref.unit(np.stack([z[y == k].mean(0) for k in range(4)]))
  np.testing.assert_allclose(
      st.from_class_means((c * z).astype(np.float32), y, 4), mu @ mu.T,
      atol=1e-6)


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

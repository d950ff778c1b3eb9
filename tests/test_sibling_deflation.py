"""top_eigenmodes(method="tree") against a float64 eigh of the dense tree
kernel, the sibling deflation it rests on, and the codebooks it feeds."""

import functools

import jax
import numpy as np
import pytest

import reference as ref
import spectral_targets as st
from spectral_targets import _eigensolvers
from spectral_targets import _operators
from spectral_targets import _sibling_deflation


def _star():
  # A root with 5 leaves and a child holding 3: both groups' sibling
  # eigenvalues (1, 4 times; 0.5, twice) are among the top.
  return ([("r", i) for i in range(5)] + [("r", "s")]
          + [("s", i) for i in range(5, 8)])


def _tree(name):
  if name == "random":
    return st.random_hierarchy(400, seed=0), None
  if name == "shallow":
    return st.random_hierarchy(300, depth=3, branching=6, seed=2), None
  if name == "wordnet":
    return st.cifar100_hierarchy("wordnet")
  if name == "subset":  # classes a subset of the leaves, in shuffled order
    edges = st.random_hierarchy(500, seed=4)
    leaves = sorted({c for _, c in edges} - {p for p, _ in edges})
    rng = np.random.default_rng(0)
    return edges, list(rng.permutation(leaves)[:300])
  return _star(), None


@functools.cache
def case(name):
  edges, classes = _tree(name)
  K = st.from_hierarchy(edges, classes=classes, implicit=True)
  if classes is None:
    classes = list(st.build_tree(edges).classes)
  S = ref.lca_kernel(edges, classes)
  lam, U = np.linalg.eigh(S)
  return K, S, lam[::-1], U[:, ::-1]


def _clusters(lam, atol):
  """Runs [a, b) of eigenvalues (descending) within atol of their
  neighbours."""
  breaks = np.flatnonzero(lam[:-1] - lam[1:] > atol) + 1
  return list(zip(np.r_[0, breaks], np.r_[breaks, lam.size]))


NAMES = ["random", "shallow", "wordnet", "subset", "star"]


@pytest.mark.parametrize("name", NAMES)
def test_every_eigenpair_matches_dense_eigh(name):
  K, S, lam, U = case(name)
  C = S.shape[0]
  top = st.top_eigenmodes(K, C, method="tree")
  assert top.method == "tree" and top.converged
  got = np.asarray(top.eigenvalues, np.float64)
  V = np.asarray(top.eigenvectors, np.float64)
  atol = 1e-5 * lam[0]
  np.testing.assert_allclose(got, lam, atol=atol)
  np.testing.assert_allclose(V.T @ V, np.eye(C), atol=1e-5)
  assert np.linalg.norm(S @ V - V * got, axis=0).max() <= 1e-4 * lam[0]
  # A repeated eigenvalue's basis is free: compare eigenspaces (their
  # projectors), each as a whole; float32 mixes eigenvalues closer than
  # ~1e-4 max|λ| (angle ~ rounding / gap), which count as one here.
  for a, b in _clusters(lam, 1e-4 * lam[0]):
    np.testing.assert_allclose(V[:, a:b] @ V[:, a:b].T,
                               U[:, a:b] @ U[:, a:b].T, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_a_cut_inside_a_repeated_eigenvalue_stays_in_its_eigenspace(name):
  K, S, lam, U = case(name)
  a, b = max(_clusters(lam, 1e-6 * lam[0]), key=lambda r: r[1] - r[0])
  k = (a + b) // 2  # half of the longest repeated eigenvalue
  top = st.top_eigenmodes(K, k, method="tree")
  V = np.asarray(top.eigenvectors, np.float64)
  np.testing.assert_allclose(top.eigenvalues, lam[:k], atol=1e-5 * lam[0])
  np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-5)
  inside = U[:, a:b].T @ V[:, a:k]  # the cut part lies in the eigenspace
  np.testing.assert_allclose(np.sum(inside**2, axis=0), 1, atol=1e-4)


def test_sibling_pairs_in_closed_form():
  K, S, _, _ = case("star")
  parts = _sibling_deflation.deflate(K)
  np.testing.assert_array_equal(parts.sizes, [5, 3])
  np.testing.assert_array_equal(parts.sibling_eigenvalues(10),
                                [1, 1, 1, 1, 0.5, 0.5])
  np.testing.assert_array_equal(parts.sibling_eigenvalues(3), [1, 1, 1])
  V = parts.sibling_vectors(6, np.float64)
  np.testing.assert_allclose(S @ V, V * [1, 1, 1, 1, 0.5, 0.5], atol=1e-12)
  np.testing.assert_allclose(V.T @ V, np.eye(6), atol=1e-12)
  # Helmert: (1, -1)/√2, (1, 1, -2)/√6, ... on a group's classes.
  np.testing.assert_allclose(V[:3, 1], np.array([1, 1, -2]) / np.sqrt(6))
  np.testing.assert_allclose(V[5:, 4:].sum(axis=0), 0, atol=1e-12)


@pytest.mark.parametrize("name", ["random", "subset"])
def test_reduced_kernel_is_the_kernel_on_group_constant_vectors(name):
  K, S, _, _ = case(name)
  parts = _sibling_deflation.deflate(K)
  G = parts.sizes.size
  P = np.zeros((S.shape[0], G))
  P[np.arange(S.shape[0]), parts.group] = 1
  P /= np.sqrt(P.sum(axis=0))
  want = P.T @ S @ P
  x = np.random.default_rng(0).normal(size=(G, 3)).astype(np.float32)
  product = jax.jit(lambda R, x: R @ x)(parts.reduced, x)
  np.testing.assert_allclose(product, want @ x, rtol=1e-5,
                             atol=1e-5 * np.abs(want).sum(1).max())
  np.testing.assert_allclose(parts.reduced.to_dense(), want, atol=1e-5)
  # Vectors constant on groups and the sibling contrasts span everything.
  V = parts.sibling_vectors(S.shape[0] - G, np.float64)
  np.testing.assert_allclose(P.T @ V, 0, atol=1e-12)
  assert np.linalg.matrix_rank(np.concatenate([P, V], axis=1)) == S.shape[0]


def test_auto_takes_the_tree_solver_for_tree_kernels():
  K = st.from_hierarchy(st.random_hierarchy(4096, seed=0), implicit=True)
  resolve = _eigensolvers.resolve_method
  assert resolve("auto", 4096, 64, K) == "tree"
  assert resolve("auto", 4096, 64) == "randomized"  # no kernel given
  assert resolve("auto", 4096, 64, _operators.scaled(K, 0.5)) == "tree"
  assert resolve("auto", 4096, 64, _operators.as_operator(
      st.low_rank_kernel(np.ones((4096, 2), np.float32)))) == "randomized"
  assert resolve("auto", 1000, 8, K) == "dense"
  # A deep binary-ish tree: 2,369 groups of 4,096 classes, a reduced
  # kernel large enough to be solved iteratively (residuals reported).
  edges = st.random_hierarchy(4096, depth=20, branching=2.0, seed=0)
  K = st.from_hierarchy(edges, implicit=True)
  top = st.top_eigenmodes(K, 64)
  assert top.method == "tree" and top.iterations > 0 and top.converged
  assert 0 < float(top.residuals.max()) <= 1e-5
  lam = np.linalg.eigvalsh(np.asarray(st.from_hierarchy(edges), np.float64))
  np.testing.assert_allclose(top.eigenvalues, lam[::-1][:64],
                             atol=1e-5 * lam[-1])


def test_a_scaled_tree_kernel_scales_the_eigenvalues():
  K, _, lam, _ = case("random")
  top = st.top_eigenmodes(_operators.scaled(K, 0.25), 20, method="tree")
  np.testing.assert_allclose(top.eigenvalues, 0.25 * lam[:20],
                             atol=1e-5 * lam[0])


def test_codebook_and_gram_error_equal_the_dense_ones():
  edges = st.random_hierarchy(2000, seed=0)
  S = st.from_hierarchy(edges)
  lam = np.linalg.eigvalsh(np.asarray(S, np.float64))[::-1]
  d = 8 + int(np.argmax((lam[7:39] - lam[8:40]) / lam[0]))  # a cut in a gap
  dense = st.spectral_codebook(S, d, method="dense", normalize=False)
  K = st.from_hierarchy(edges, implicit=True)
  codes = st.spectral_codebook(K, d, method="tree", normalize=False)
  np.testing.assert_allclose(codes @ codes.T, dense @ dense.T,
                             atol=2e-3 * float(np.max(np.sum(dense**2, 1))))
  np.testing.assert_allclose(st.gram_error(K, d, method="tree"),
                             st.gram_error(S, d, method="dense"), atol=1e-4)


def test_codebook_resolves_a_tie_at_the_cut():
  # 30 superclasses of 40 classes: the reduced kernel is 20.5 I (30 x 30),
  # so d = 10 cuts a 30-fold eigenvalue; the tie-breaking then chooses as
  # it does from the dense kernel.
  edges = [("root", f"s{g}") for g in range(30)] + [
      (f"s{g}", f"c{g}.{i}") for g in range(30) for i in range(40)]
  K = st.from_hierarchy(edges, implicit=True)
  X = np.asarray(st.spectral_codebook(K, 10, normalize=False, method="tree"))
  norms = np.linalg.norm(X, axis=1)
  np.testing.assert_allclose(norms, norms.mean(), rtol=1e-3)
  np.testing.assert_allclose(X.reshape(30, 40, 10), np.repeat(
      X[::40, None], 40, axis=1), atol=1e-4)  # a superclass shares a code
  dense = np.asarray(st.spectral_codebook(K.to_dense(), 10, normalize=False,
                                          method="dense"))
  np.testing.assert_allclose(norms, np.linalg.norm(dense, axis=1), rtol=1e-3)

  def largest_cosine(Y):
    units = Y[::40] / np.linalg.norm(Y[::40], axis=1, keepdims=True)
    return (units @ units.T - 2 * np.eye(30)).max()

  assert largest_cosine(X) <= largest_cosine(dense) + 1e-2


def test_bad_arguments():
  with pytest.raises(ValueError, match="method='tree' needs a TreeKernel"):
    st.top_eigenmodes(st.graded(50, 3.0), 4, method="tree")
  K = st.from_hierarchy([("r", "a")], implicit=True)  # one class, no sibling
  top = st.top_eigenmodes(K, 1, method="tree")
  np.testing.assert_allclose(top.eigenvalues, [1.0])

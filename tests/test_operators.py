"""Kernels as operators: the implicit tree kernel, low rank plus diagonal,
centring, and the user's own products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse

import reference as ref
import spectral_targets as st
from conftest import (SHIPPED_HIERARCHIES, UNSHIPPED_HIERARCHIES,
                      hierarchy_path)
from spectral_targets import _operators


def _check_tree_operator(edges, classes=None, k=5):
  S = np.asarray(st.from_hierarchy(edges, classes=classes), np.float64)
  K = st.from_hierarchy(edges, classes=classes, implicit=True)
  X = np.random.default_rng(0).normal(size=(S.shape[0], k))
  np.testing.assert_allclose(K @ X.astype(np.float32), S @ X, rtol=1e-4,
                             atol=1e-4 * np.abs(S @ X).max())
  np.testing.assert_allclose(K @ X[:, 0].astype(np.float32), S @ X[:, 0],
                             rtol=1e-4, atol=1e-4 * np.abs(S @ X).max())
  np.testing.assert_allclose(K.diagonal(), np.diag(S))
  np.testing.assert_allclose(K.squared_norm(), np.sum(S**2), rtol=1e-6)
  assert K.shape == S.shape


@pytest.mark.parametrize("name", SHIPPED_HIERARCHIES + UNSHIPPED_HIERARCHIES)
def test_tree_operator_equals_dense_on_real_taxonomies(name):
  _check_tree_operator(st.load_hierarchy(hierarchy_path(name)))


@pytest.mark.parametrize("num_classes,depth,seed", [
    (2, 1, 0), (50, 3, 1), (700, 8, 2), (1500, 10, 3)])
def test_tree_operator_equals_dense_on_generated_trees(num_classes, depth,
                                                       seed):
  edges = st.random_hierarchy(num_classes, depth=depth, seed=seed)
  _check_tree_operator(edges)
  # A subset of the leaves, in a shuffled order; inner nodes above no
  # chosen class drop out.
  leaves = [c for _, c in edges if c not in {p for p, _ in edges}]
  pick = list(np.random.default_rng(seed).permutation(leaves)[:max(2, len(
      leaves) // 3)])
  _check_tree_operator(edges, classes=pick)


def test_tree_operator_against_independent_lca_reference():
  edges, classes = st.cifar100_hierarchy("wordnet")
  K = st.from_hierarchy(edges, classes=classes, implicit=True)
  np.testing.assert_allclose(K.to_dense(), ref.lca_kernel(edges, classes),
                             atol=1e-6)


def test_tree_operator_passes_through_jit():
  K = st.from_hierarchy(st.random_hierarchy(300, seed=0), implicit=True)
  x = jnp.ones((300, 3))
  np.testing.assert_allclose(jax.jit(lambda K, x: K @ x)(K, x), K @ x,
                             rtol=1e-6)
  with pytest.raises(ValueError, match=r"x must be \(300,\)"):
    K @ jnp.ones((299, 3))


def test_low_rank_kernel():
  rng = np.random.default_rng(0)
  F = rng.normal(size=(40, 3))
  delta = rng.uniform(size=40)
  S = F @ F.T + np.diag(delta)
  K = st.low_rank_kernel(F, delta)
  X = rng.normal(size=(40, 4))
  np.testing.assert_allclose(K @ X, S @ X, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(K.to_dense(), S, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(K.diagonal(), np.diag(S), rtol=1e-5)
  np.testing.assert_allclose(K.squared_norm(), np.sum(S**2), rtol=1e-6)
  np.testing.assert_allclose(st.low_rank_kernel(F).to_dense(), F @ F.T,
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="factor must have rank 2"):
    st.low_rank_kernel(np.ones(3))
  with pytest.raises(ValueError, match=r"diagonal must be a scalar or \(40,\)"):
    st.low_rank_kernel(F, np.ones(39))
  with pytest.raises(ValueError, match="factor must be finite"):
    st.low_rank_kernel(np.full((2, 2), np.nan))


def test_centered_operator_matches_double_center():
  edges = st.random_hierarchy(200, seed=1)
  S = st.from_hierarchy(edges)
  Kc = _operators.CenteredKernel(st.from_hierarchy(edges, implicit=True))
  J = np.asarray(st.double_center(S), np.float64)
  np.testing.assert_allclose(Kc.to_dense(), J, atol=1e-5)
  np.testing.assert_allclose(Kc.diagonal(), np.diag(J), atol=1e-5)
  np.testing.assert_allclose(Kc.squared_norm(), np.sum(J**2), rtol=1e-5)


def test_any_object_with_shape_and_matmul_is_a_kernel():
  edges = st.random_hierarchy(700, seed=2)
  S = np.array(st.from_hierarchy(edges))
  S[S < 0.3] = 0  # sparse enough to store as BCOO
  bcoo = sparse.BCOO.fromdense(jnp.asarray(S))
  top = st.top_eigenmodes(bcoo, 6, method="randomized")
  assert top.method == "randomized" and top.converged
  want = np.linalg.eigvalsh(S.astype(np.float64))[::-1][:6]
  np.testing.assert_allclose(top.eigenvalues, want, rtol=1e-4)
  with pytest.raises(ValueError, match="square operator"):
    st.top_eigenmodes(sparse.BCOO.fromdense(jnp.ones((3, 4))), 1)


class _NoNorm(st.KernelOperator):
  """A user operator that provides only its product."""

  def __init__(self, S):
    self.S = S

  num_classes = property(lambda self: self.S.shape[0])
  dtype = property(lambda self: self.S.dtype)

  def matmul(self, x):
    return self.S @ x


jax.tree_util.register_pytree_node(
    _NoNorm, lambda op: ((op.S,), None), lambda _, c: _NoNorm(*c))


def test_operator_without_norm_or_diagonal_says_what_is_missing():
  op = _NoNorm(st.graded(3000, 50.0))
  with pytest.raises(ValueError, match="gram_error needs the kernel's squared "
                     "Frobenius norm: _NoNorm does not provide"):
    st.gram_error(op, 4)
  codes = st.spectral_codebook(op, 4, normalize=False)  # products suffice
  assert codes.shape == (3000, 4)
  with pytest.raises(ValueError, match="alignment needs"):
    st.alignment(op, st.low_rank_kernel(codes))

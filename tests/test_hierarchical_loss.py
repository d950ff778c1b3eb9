"""Hierarchical cross-entropy and the soft labels of Bertinetto et al. 2020,
against direct NumPy float64 implementations of the paper's definitions."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as hs
from jax.test_util import check_grads
from scipy.special import logsumexp

import spectral_targets as st

TOY = [("root", "animal"), ("animal", "cat"), ("animal", "dog"),
       ("root", "vehicle"), ("vehicle", "car"), ("vehicle", "boat"),
       ("boat", "canoe"), ("boat", "ferry")]
TOY_CLASSES = ["cat", "dog", "car", "canoe", "ferry"]


class RefTree:
  """A tree walked through dicts: each node's classes and its depth."""

  def __init__(self, edges, classes):
    self.parent = {c: p for p, c in edges}
    self.nodes = set(self.parent) | set(self.parent.values())
    self.classes = list(classes)
    self.below = {}
    for k, c in enumerate(self.classes):
      for n in self.path(c):
        self.below.setdefault(n, []).append(k)

  def path(self, n):
    out = [n]
    while out[-1] in self.parent:
      out.append(self.parent[out[-1]])
    return out  # leaf ... root

  def depth(self, n):
    return len(self.path(n)) - 1


def hxe_reference(z, y, edges, classes, alpha, normalize=False):
  """L = -sum_n exp(-alpha depth(n)) log p(n)/p(parent n), float64."""
  tree = edges if isinstance(edges, RefTree) else RefTree(edges, classes)
  z = np.asarray(z, np.float64)
  out = np.zeros(len(y))
  for i, (zi, yi) in enumerate(zip(z, y)):
    log_p = {n: logsumexp(zi[k]) - logsumexp(zi) for n, k in tree.below.items()}
    path = tree.path(tree.classes[yi])
    for n, up in itertools.pairwise(path):
      out[i] -= math.exp(-alpha * tree.depth(n)) * (log_p[n] - log_p[up])
  if normalize:
    # The reference code (better_mistakes/trees.py,
    # get_exponential_weighting) divides by the sum over every position of
    # the tree, whether or not a class lies below it.
    out /= sum(math.exp(-alpha * tree.depth(n)) for n in tree.nodes)
  return out


def _problem(C, N, scale, seed):
  rng = np.random.default_rng(seed)
  z = (rng.normal(size=(N, C)) * scale).astype(np.float32)
  return z, rng.integers(0, C, size=N)


TREES = {
    "toy": (TOY, TOY_CLASSES),
    "cifar100-superclasses": st.cifar100_hierarchy("superclasses"),
    "cifar100-wordnet": st.cifar100_hierarchy("wordnet"),
    "random": (st.random_hierarchy(300, depth=6, seed=3), None),
}


def _classes(edges, classes):
  return list(st.build_tree(edges, classes).classes)


@pytest.mark.parametrize("name", list(TREES))
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("normalize", [False, True])
def test_against_reference(name, alpha, normalize):
  edges, classes = TREES[name]
  classes = _classes(edges, classes)
  tree = st.build_tree(edges, classes)
  z, y = _problem(len(classes), 12, 3.0, seed=len(classes))
  got = st.hierarchical_cross_entropy(z, y, tree, alpha=alpha,
                                      normalize=normalize)
  want = hxe_reference(z, y, edges, classes, alpha, normalize)
  assert got.shape == (12,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_subset_of_leaves_prunes_the_tree():
  # Classes drawn from part of the tree: only nodes with a class below count
  # in the probabilities; the normalisation runs over the whole tree.
  edges, _ = st.cifar100_hierarchy("wordnet")
  classes = _classes(edges, None)[::7]
  tree = st.build_tree(edges, classes)
  z, y = _problem(len(classes), 9, 2.0, seed=1)
  for normalize in (False, True):
    np.testing.assert_allclose(
        st.hierarchical_cross_entropy(z, y, tree, alpha=0.3,
                                      normalize=normalize),
        hxe_reference(z, y, edges, classes, 0.3, normalize), rtol=2e-5)


def test_weights_follow_depth_of_the_lower_node():
  # cat sits at depth 2 under animal (depth 1): with p = softmax(z),
  # L = -e^{-2a} log p(cat | animal) - e^{-a} log p(animal).
  tree = st.build_tree(TOY, TOY_CLASSES)
  z = np.array([[1.0, -0.5, 0.3, 2.0, 0.0]])
  p = np.exp(z[0]) / np.exp(z[0]).sum()
  a = 0.7
  want = (-math.exp(-2 * a) * math.log(p[0] / (p[0] + p[1]))
          - math.exp(-a) * math.log(p[0] + p[1]))
  got = st.hierarchical_cross_entropy(z, np.array([0]), tree, alpha=a)
  np.testing.assert_allclose(got, [want], rtol=1e-6)
  # Normalised: divided by the sum over all 9 nodes, root included.
  total = 1 + 2 * math.exp(-a) + 4 * math.exp(-2 * a) + 2 * math.exp(-3 * a)
  got = st.hierarchical_cross_entropy(z, np.array([0]), tree, alpha=a,
                                      normalize=True)
  np.testing.assert_allclose(got, [want / total], rtol=1e-6)


@given(seed=hs.integers(0, 2**31), C=hs.integers(2, 40),
       depth=hs.integers(1, 6), subset=hs.booleans())
def test_alpha_zero_is_cross_entropy_on_any_tree(seed, C, depth, subset):
  edges = st.random_hierarchy(C, depth=depth, branching=3.0, seed=seed)
  classes = _classes(edges, None)
  if subset and C > 2:
    classes = classes[1::2]
  tree = st.build_tree(edges, classes)
  z, y = _problem(len(classes), 6, 4.0, seed)
  np.testing.assert_allclose(
      st.hierarchical_cross_entropy(z, y, tree, alpha=0.0),
      optax.softmax_cross_entropy_with_integer_labels(z, y), rtol=1e-5,
      atol=1e-5)


def test_jit_with_tree_as_constant_and_as_argument():
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = st.build_tree(edges, classes)
  z, y = _problem(100, 8, 2.0, seed=0)
  want = st.hierarchical_cross_entropy(z, y, tree, alpha=0.5)
  closed = jax.jit(lambda z, y, a: st.hierarchical_cross_entropy(
      z, y, tree, alpha=a))
  np.testing.assert_allclose(closed(z, y, 0.5), want, rtol=1e-6)
  as_arg = jax.jit(st.hierarchical_cross_entropy,
                   static_argnames=("normalize", "axis"))
  np.testing.assert_allclose(as_arg(z, y, tree, alpha=0.5), want, rtol=1e-6)
  # An equal tree built again hits the same compiled program.
  as_arg(z, y, st.build_tree(edges, classes), alpha=0.1)
  assert as_arg._cache_size() == 1
  # A tree first used inside a trace caches concrete arrays, not tracers.
  fresh = st.build_tree(TOY, TOY_CLASSES)
  zt, yt = _problem(5, 3, 1.0, seed=2)
  inside = jax.jit(lambda z: st.hierarchical_cross_entropy(
      z, yt, fresh, alpha=0.2))(zt)
  np.testing.assert_allclose(
      st.hierarchical_cross_entropy(zt, yt, fresh, alpha=0.2), inside,
      rtol=1e-6)


def test_gradient_matches_reference_finite_differences():
  edges, classes = TREES["random"]
  classes = _classes(edges, classes)[:40]
  tree = st.build_tree(edges, classes)
  z, y = _problem(40, 3, 2.0, seed=5)
  g = jax.grad(lambda z: st.hierarchical_cross_entropy(
      z, y, tree, alpha=0.4, normalize=True).sum())(jnp.asarray(z))
  z64, eps, ref = z.astype(np.float64), 1e-6, RefTree(edges, classes)
  want = np.zeros_like(z64)
  for i, j in np.ndindex(*z.shape):
    d = np.zeros_like(z64)
    d[i, j] = eps
    want[i, j] = (hxe_reference(z64 + d, y, ref, None, 0.4, True).sum()
                  - hxe_reference(z64 - d, y, ref, None, 0.4,
                                  True).sum()) / (2 * eps)
  np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
  check_grads(lambda z: st.hierarchical_cross_entropy(
      z, y, tree, alpha=0.4).sum(), (jnp.asarray(z),), order=1,
      modes=("rev",), atol=5e-2, rtol=5e-2)
  # With respect to alpha too.
  check_grads(lambda a: st.hierarchical_cross_entropy(
      z, y, tree, alpha=a).sum(), (jnp.float32(0.4),), order=1,
      modes=("rev",), atol=5e-2, rtol=5e-2)


def test_gradient_at_alpha_zero_is_softmax_minus_one_hot():
  tree = st.build_tree(*st.cifar100_hierarchy("wordnet"))
  z, y = _problem(100, 4, 3.0, seed=7)
  g = jax.grad(lambda z: st.hierarchical_cross_entropy(
      z, y, tree, alpha=0.0).sum())(jnp.asarray(z))
  np.testing.assert_allclose(g, jax.nn.softmax(z) - jax.nn.one_hot(y, 100),
                             atol=1e-6)


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e30])
def test_large_logits(scale):
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = st.build_tree(edges, classes)
  rng = np.random.default_rng(0)
  z = (rng.normal(size=(6, 100)) * scale).astype(np.float32)
  y = rng.integers(0, 100, size=6)
  y[0] = int(np.argmax(z[0]))   # a confident right answer: loss ~ 0
  y[1] = int(np.argmin(z[1]))   # a confident wrong one: loss ~ scale
  got = st.hierarchical_cross_entropy(z, y, tree, alpha=0.5)
  want = hxe_reference(z, y, edges, classes, 0.5)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
  g = jax.grad(lambda z: st.hierarchical_cross_entropy(
      z, y, tree, alpha=0.5).sum())(jnp.asarray(z))
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_computed_in_float32(dtype):
  tree = st.build_tree(*st.cifar100_hierarchy("superclasses"))
  z, y = _problem(100, 5, 3.0, seed=4)
  low = jnp.asarray(z, dtype)
  got = st.hierarchical_cross_entropy(low, y, tree, alpha=0.3)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
      got, st.hierarchical_cross_entropy(low.astype(jnp.float32), y, tree,
                                         alpha=0.3), rtol=1e-6)


def test_batch_shape_and_axis():
  tree = st.build_tree(TOY, TOY_CLASSES)
  rng = np.random.default_rng(1)
  z = rng.normal(size=(2, 3, 5)).astype(np.float32)
  y = rng.integers(0, 5, size=(2, 3))
  got = st.hierarchical_cross_entropy(z, y, tree, alpha=0.5)
  assert got.shape == (2, 3)
  np.testing.assert_allclose(
      got.ravel(), hxe_reference(z.reshape(6, 5), y.ravel(), TOY,
                                 TOY_CLASSES, 0.5), rtol=1e-5)
  moved = st.hierarchical_cross_entropy(np.moveaxis(z, -1, 0), y, tree,
                                        alpha=0.5, axis=0)
  np.testing.assert_allclose(moved, got, rtol=1e-6)
  assert st.hierarchical_cross_entropy(z[0, 0], y[0, 0], tree,
                                       alpha=0.5).shape == ()


def test_nan_logits_propagate():
  tree = st.build_tree(TOY, TOY_CLASSES)
  z = np.zeros((2, 5), np.float32)
  z[0, 3] = np.nan
  got = st.hierarchical_cross_entropy(z, np.array([0, 0]), tree, alpha=0.5)
  assert np.isnan(got[0]) and np.isfinite(got[1])


@pytest.mark.parametrize("call,error,match", [
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y, TOY, alpha=0.1),
     TypeError, "tree must be a Tree"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z[:, :4], y, t, alpha=0.1),
     ValueError, "logits must have 5 classes"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y[:2], t, alpha=0.1),
     ValueError, "labels must have shape"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y + 5, t, alpha=0.1),
     ValueError, r"labels must lie in \[0, 5\)"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y * 1.0, t, alpha=0.1),
     TypeError, "labels must have an integer dtype"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y, t, alpha=np.nan),
     ValueError, "alpha must be a finite number >= 0"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y, t, alpha=-1.0),
     ValueError, "alpha must be a finite number >= 0"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z, y, t, alpha=0.1,
                                                   normalize="yes"),
     TypeError, "normalize must be a bool"),
    (lambda t, z, y: st.hierarchical_cross_entropy(z.astype(int), y, t,
                                                   alpha=0.1),
     TypeError, "logits must have a floating dtype"),
])
def test_errors(call, error, match):
  tree = st.build_tree(TOY, TOY_CLASSES)
  z, y = _problem(5, 3, 1.0, seed=0)
  with pytest.raises(error, match=match):
    call(tree, z, y)


def test_errors_are_raised_under_jit():
  tree = st.build_tree(TOY, TOY_CLASSES)
  z, y = _problem(5, 3, 1.0, seed=0)
  with pytest.raises(ValueError, match="logits must have 5 classes"):
    jax.jit(lambda z: st.hierarchical_cross_entropy(
        z, y, tree, alpha=0.1))(z[:, :3])


# -- the soft labels of the same paper: kernel_soft_labels, S = -d/d_max -----

def lca_heights(edges, classes):
  """d(a, b) = height of the lowest common ancestor, by walking the tree."""
  tree = RefTree(edges, classes)
  kids = {}
  for p, c in edges:
    kids.setdefault(p, []).append(c)
  memo = {}

  def height(n):
    if n not in memo:
      memo[n] = 1 + max(height(k) for k in kids[n]) if n in kids else 0
    return memo[n]

  C = len(classes)
  D = np.zeros((C, C))
  for i, a in enumerate(classes):
    above = tree.path(a)
    for j, b in enumerate(classes):
      lca = next(n for n in tree.path(b) if n in above)
      D[i, j] = height(lca)
  return D


@pytest.mark.parametrize("beta", [1.0, 4.0, 30.0])
def test_bertinetto_soft_labels_are_kernel_soft_labels(beta):
  # The paper: q(y)_c = exp(-beta d(y, c)/d_max) / sum_c' exp(...). The
  # mapping: kernel_soft_labels with S = -d/d_max and temperature 1/beta.
  edges, classes = st.cifar100_hierarchy("wordnet")
  D = lca_heights(edges, classes)
  want = np.exp(-beta * D / D.max())
  want /= want.sum(axis=1, keepdims=True)
  y = np.arange(100)
  S = -D / D.max()
  got = st.kernel_soft_labels(y, S, temperature=1 / beta, alpha=1.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # The LCA-height kernel differs from S by a constant, which the softmax
  # ignores when every class is below the deepest LCA's root (d_max = h).
  K = st.from_hierarchy(edges, classes=classes)
  np.testing.assert_allclose(
      st.kernel_soft_labels(y, K, temperature=1 / beta, alpha=1.0), want,
      rtol=1e-5, atol=1e-7)

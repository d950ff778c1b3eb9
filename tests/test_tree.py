"""Class trees (``_tree``): ``build_tree``'s tree object and its use under
jit, the LCA kernel ``from_hierarchy`` against an independent reference (toy,
random and real taxonomies), and clear errors for malformed hierarchies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

import spectral_targets as st
from conftest import (SHIPPED_HIERARCHIES, UNSHIPPED_HIERARCHIES,
                      hierarchy_path)
import reference as ref

TOY = [("root", "animal"), ("animal", "cat"), ("animal", "dog"),
       ("root", "vehicle"), ("vehicle", "car"), ("vehicle", "boat"),
       ("boat", "canoe"), ("boat", "ferry")]


def _walk(edges):
  """Depth and height of every node, by walking parent and child links."""
  parent = {c: p for p, c in edges}
  kids = {}
  for p, c in edges:
    kids.setdefault(p, []).append(c)
  nodes = {n for e in edges for n in e}

  def depth(n):
    return 0 if n not in parent else 1 + depth(parent[n])

  def height(n):
    return 0 if n not in kids else 1 + max(height(k) for k in kids[n])

  return {n: depth(n) for n in nodes}, {n: height(n) for n in nodes}


@pytest.mark.parametrize("edges", [
    TOY, st.cifar100_hierarchy("wordnet")[0],
    st.random_hierarchy(200, depth=6, seed=1)])
def test_depth_height_parent_against_walk(edges):
  tree = st.build_tree(edges)
  depth, height = _walk(edges)
  assert [depth[n] for n in tree.nodes] == tree.depth.tolist()
  assert [height[n] for n in tree.nodes] == tree.height.tolist()
  parent = {c: p for p, c in edges}
  for i, n in enumerate(tree.nodes):
    p = tree.parent[i]
    assert (p < 0) == (n not in parent)
    if p >= 0:
      assert tree.nodes[p] == parent[n]
  kids = {p for p, _ in edges}
  leaves = list(dict.fromkeys(n for e in edges for n in e if n not in kids))
  assert list(tree.classes) == leaves and tree.num_classes == len(leaves)


def test_classes_order_and_mapping_input():
  tree = st.build_tree(TOY, ["ferry", "cat", "car"])
  assert tree.classes == ("ferry", "cat", "car")
  assert [tree.nodes[i] for i in tree.class_nodes] == ["ferry", "cat", "car"]
  as_map = st.build_tree({c: p for p, c in TOY}, classes=["ferry", "cat",
                                                          "car"])
  assert as_map == tree


def test_hashable_by_value_and_immutable():
  a = st.build_tree(TOY)
  b = st.build_tree(list(TOY))
  assert a == b and hash(a) == hash(b) and a is not b
  assert a != st.build_tree(TOY, ["dog", "cat", "car", "canoe", "ferry"])
  assert a != st.build_tree(TOY[:-1])
  with pytest.raises(ValueError, match="read-only"):
    a.parent[0] = 3
  with pytest.raises(AttributeError):
    a.classes = ()


def test_static_pytree_under_jit():
  tree = st.build_tree(TOY)
  assert jax.tree_util.tree_leaves(tree) == []
  f = jax.jit(lambda x, t: x * t.num_classes + t.height[t.root])
  assert float(f(jnp.float32(2.0), tree)) == 2.0 * 5 + 3
  f(jnp.float32(1.0), st.build_tree(TOY))     # equal tree: no recompile
  assert f._cache_size() == 1
  f(jnp.float32(1.0), st.build_tree(TOY[:-1]))
  assert f._cache_size() == 2
  # Closed over as a constant.
  g = jax.jit(lambda x: x + tree.depth[tree.class_nodes].sum())
  assert float(g(jnp.float32(0.0))) == 2 + 2 + 2 + 3 + 3


def test_operator_is_the_implicit_kernel():
  tree = st.build_tree(TOY)
  K = st.from_hierarchy(TOY, implicit=True)
  np.testing.assert_allclose(tree.operator.to_dense(), K.to_dense())
  np.testing.assert_allclose(tree.operator.to_dense(), st.from_hierarchy(TOY),
                             atol=1e-6)
  assert tree.operator is tree.operator  # built once


# -- errors (issue 14): each names what is wrong -------------------------------

def test_cycle_through_the_root_is_named():
  with pytest.raises(ValueError, match=r"cycle through \['r', 'a'\] and no "
                     r"root"):
    st.build_tree([("r", "a"), ("a", "r")])
  with pytest.raises(ValueError, match=r"cycle through \['c', 'a', 'b'\] and "
                     "no root"):
    st.from_hierarchy([("c", "a"), ("a", "b"), ("b", "c")])


def test_detached_cycle_is_named():
  with pytest.raises(ValueError, match=r"cycle through \['x', 'y'\], "
                     "detached from the root 'r'"):
    st.build_tree([("r", "a"), ("x", "y"), ("y", "x")])


def test_unhashable_ids():
  with pytest.raises(TypeError, match=r"the parent in edges\[1\] is not "
                     r"hashable: \['a'\] \(list\)"):
    st.build_tree([("r", "x"), (["a"], "b")])
  with pytest.raises(TypeError, match=r"the child in edges\[0\] is not "
                     r"hashable: \{'a': 1\} \(dict\)"):
    st.from_hierarchy([("r", {"a": 1})])
  with pytest.raises(TypeError, match=r"classes\[1\] is not hashable"):
    st.build_tree(TOY, ["cat", ["dog"]])


def test_other_bad_inputs():
  with pytest.raises(TypeError, match="edges must be an iterable"):
    st.build_tree(3)
  with pytest.raises(TypeError, match="edges must be an iterable"):
    st.build_tree("ab")
  with pytest.raises(TypeError, match="classes must be a sequence of class "
                     "ids, not a string"):
    st.build_tree(TOY, "cat")


# -- the LCA kernel ------------------------------------------------------------

def test_from_hierarchy_toy_against_reference():
  classes = ["cat", "dog", "car", "canoe", "ferry"]
  S = st.from_hierarchy(TOY, classes=classes)
  np.testing.assert_allclose(S, ref.lca_kernel(TOY, classes), atol=1e-6)
  # height(root) = 3; cat/dog meet at height 1; canoe/ferry at height 1.
  assert float(S[0, 1]) == pytest.approx(2 / 3)
  assert float(S[3, 2]) == pytest.approx(1 / 3)
  assert float(S[0, 2]) == 0


def test_from_hierarchy_default_leaf_order():
  S = st.from_hierarchy(TOY)
  # Leaves in order of first appearance: cat, dog, car, canoe, ferry.
  np.testing.assert_allclose(
      S, st.from_hierarchy(TOY, classes=["cat", "dog", "car", "canoe",
                                          "ferry"]))


def _random_tree(rng, n_inner):
  edges, frontier = [], [0]
  nxt = 1
  for _ in range(n_inner):
    p = frontier[rng.integers(len(frontier))]
    for _ in range(rng.integers(1, 4)):
      edges.append((p, nxt))
      frontier.append(nxt)
      nxt += 1
  return edges


@given(seed=hs.integers(0, 2**31), n_inner=hs.integers(1, 12))
def test_from_hierarchy_random_trees(seed, n_inner):
  rng = np.random.default_rng(seed)
  edges = _random_tree(rng, n_inner)
  rng.shuffle(edges)
  S = st.from_hierarchy(edges)
  kids = {p for p, _ in edges}
  leaves = list(dict.fromkeys(n for e in edges for n in e if n not in kids))
  np.testing.assert_allclose(S, ref.lca_kernel(edges, leaves), atol=1e-6)
  assert float(st.spectrum(S)[-1]) > -1e-5  # PSD by construction


@pytest.mark.parametrize("name", SHIPPED_HIERARCHIES + UNSHIPPED_HIERARCHIES)
def test_from_hierarchy_real_taxonomies(name):
  edges = st.load_hierarchy(hierarchy_path(name))
  S = np.asarray(st.from_hierarchy(edges))
  kids = {p for p, _ in edges}
  leaves = list(dict.fromkeys(n for e in edges for n in e if n not in kids))
  assert S.shape == (len(leaves),) * 2
  np.testing.assert_allclose(np.diag(S), 1)
  assert S.min() >= 0 and np.allclose(S, S.T)
  pick = np.random.default_rng(0).choice(len(leaves), 40, replace=False)
  sub = [leaves[k] for k in pick]
  np.testing.assert_allclose(S[np.ix_(pick, pick)], ref.lca_kernel(edges, sub),
                             atol=1e-6)


@pytest.mark.parametrize("edges,classes,match", [
    ([], None, "edges is empty"),
    ([("a", "b", "c")], None, r"edges\[0\] must be a \(parent, child\) pair"),
    ([("a", "a")], None, "to itself"),
    ([("a", "c"), ("b", "c")], None, "two parents"),
    ([("a", "b"), ("c", "d")], None, "single root"),
    ([("r", "a"), ("a", "b"), ("b", "a")], None, "two parents|cycle"),
    ([("r", "a"), ("a", "b"), ("b", "c"), ("c", "a")], None, "two parents"),
    ([("r", "a"), ("r", "b")], ["a", "zebra"], "not in the hierarchy"),
    ([("r", "a"), ("a", "b")], ["a"], "inner nodes"),
    ([("r", "a"), ("r", "b")], ["a", "a"], "repeat"),
])
def test_from_hierarchy_rejects(edges, classes, match):
  with pytest.raises(ValueError, match=match):
    st.from_hierarchy(edges, classes=classes)


def test_from_hierarchy_detects_detached_cycle():
  with pytest.raises(ValueError, match="cycle"):
    st.from_hierarchy([("r", "a"), ("x", "y"), ("y", "x")])

"""build_tree: the public tree object, its use under jit, and clear errors
for malformed hierarchies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st

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


def test_non_utf8_file_names_path_and_line(tmp_path):
  f = tmp_path / "tree.txt"
  f.write_bytes(b"root a\n# ok\nroot \xe9t\xe9\n")
  with pytest.raises(ValueError, match=r"tree.txt:3: not valid UTF-8 \(byte "
                     r"0xe9 at column 6\)"):
    st.load_hierarchy(f)
  f.write_bytes("\ufeffroot a\nroot été\n".encode())   # BOM, UTF-8
  assert st.load_hierarchy(f) == [("root", "a"), ("root", "été")]


@pytest.mark.parametrize("seed,error", [(1.5, TypeError), ("0", TypeError),
                                        (None, TypeError), (-1, ValueError)])
def test_random_hierarchy_seed(seed, error):
  with pytest.raises(error, match="seed must be"):
    st.random_hierarchy(10, seed=seed)
  assert st.random_hierarchy(10, seed=np.int64(3)) == st.random_hierarchy(
      10, seed=3)


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

"""Class taxonomies (``_taxonomies``): the file reader, the CIFAR-100 trees
that ship with the package, and the random generator."""

import numpy as np
import pytest

import spectral_targets as st
from conftest import HIERARCHIES


def test_shipped_cifar100_trees():
  edges, classes = st.cifar100_hierarchy()
  S = np.asarray(st.from_hierarchy(edges, classes=classes))
  assert S.shape == (100, 100) and len(set(classes)) == 100
  # 20 superclasses of 5: each row has five 1-or-0.5 entries, the rest 0.
  assert sorted(set(np.round(S.ravel(), 6))) == [0, 0.5, 1]
  assert np.all((S > 0).sum(1) == 5)
  assert np.linalg.matrix_rank(S > 0.25) == 20
  assert float(S[classes.index("apple"), classes.index("pear")]) == 0.5
  edges, names = st.cifar100_hierarchy("wordnet")
  assert names == classes
  raw = st.load_hierarchy(HIERARCHIES / "cifar100.parent-child.txt")
  np.testing.assert_allclose(
      st.from_hierarchy(edges, classes=names),
      st.from_hierarchy(raw, classes=[str(k) for k in range(100)]))
  with pytest.raises(ValueError, match="tree must be"):
    st.cifar100_hierarchy("coarse")


def test_load_hierarchy_format(tmp_path):
  f = tmp_path / "tree.txt"
  f.write_text("# a comment\nroot a\n\nroot b\n")
  assert st.load_hierarchy(f) == [("root", "a"), ("root", "b")]
  f.write_text("root a b\n")
  with pytest.raises(ValueError, match=r"tree.txt:1: expected 'PARENT CHILD'"):
    st.load_hierarchy(f)


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


def test_random_hierarchy_shape_and_determinism():
  edges = st.random_hierarchy(5000, depth=7, seed=4)
  assert edges == st.random_hierarchy(5000, depth=7, seed=4)
  assert edges != st.random_hierarchy(5000, depth=7, seed=5)
  parent = dict((c, p) for p, c in edges)
  leaves = set(parent) - {p for p, _ in edges}
  assert len(leaves) == 5000 and len(parent) == len(edges)  # a tree
  depth = {}
  for leaf in leaves:
    node, n = leaf, 0
    while node in parent:
      node, n = parent[node], n + 1
    depth[leaf] = n
  assert max(depth.values()) == 7 and min(depth.values()) < 7  # uneven
  with pytest.raises(ValueError, match="num_classes"):
    st.random_hierarchy(1)
  with pytest.raises(ValueError, match="branching"):
    st.random_hierarchy(10, branching=1.5)

import jax
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as hs

import spectral_targets as st
from conftest import HIERARCHIES
import reference as ref


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


# -- hierarchy ---------------------------------------------------------------

TOY = [("root", "animal"), ("animal", "cat"), ("animal", "dog"),
       ("root", "vehicle"), ("vehicle", "car"), ("vehicle", "boat"),
       ("boat", "canoe"), ("boat", "ferry")]


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


@pytest.mark.parametrize("name", [
    "cifar100.parent-child.txt", "imagenet.parent-child.mintree.txt",
    "imagenet.isa.txt", "tiered_imagenet.isa.txt", "inaturalist19.isa.txt"])
def test_from_hierarchy_real_taxonomies(name):
  path = HIERARCHIES / name
  if not path.exists():
    pytest.skip(f"{path} absent")
  edges = st.load_hierarchy(path)
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
  if (HIERARCHIES / "cifar100.parent-child.txt").exists():
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

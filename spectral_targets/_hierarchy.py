"""Class hierarchies (trees) and the label kernel they define.

The LCA-height similarity of Barz & Denzler (2019) is a non-negative sum of
rank-one blocks, one per node:

.. math::
  1 - \\frac{h(\\mathrm{lca}(a, b))}{h(\\mathrm{root})}
  = \\sum_{n \\,\\ni\\, a, b} w_n, \\qquad
  w_n = \\frac{h(\\mathrm{parent}(n)) - h(n)}{h(\\mathrm{root})},\\; w_\\mathrm{root} = 0,

where the sum runs over the common ancestors-or-selves n of a and b (it
telescopes from the LCA to the root). So ``S = M diag(w) Mᵀ`` with M the
class-to-ancestor incidence matrix: the kernel is positive semi-definite by
construction, and one factorisation serves the dense kernel here and any
matrix-free product.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Iterable, Sequence
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _operators
from spectral_targets import _validation as v


@dataclasses.dataclass(frozen=True)
class Tree:
  """A validated rooted tree and the classes (leaves) a kernel is built over.

  Attributes:
    nodes: every node id, in order of first appearance in the edges.
    parent: (num_nodes,) index of each node's parent; -1 for the root.
    height: (num_nodes,) height of each node (leaves 0; a node is 1 + the
      largest height of its children).
    classes: the class ids, in kernel order.
    class_nodes: (C,) node index of each class.
  """
  nodes: tuple[Hashable, ...]
  parent: np.ndarray
  height: np.ndarray
  classes: tuple[Hashable, ...]
  class_nodes: np.ndarray

  @property
  def root(self) -> int:
    return int(np.flatnonzero(self.parent < 0)[0])

  def weights(self) -> np.ndarray:
    """(num_nodes,) w_n = (h(parent) - h(n)) / h(root), 0 for the root."""
    h = self.height.astype(np.float64)
    H = h[self.root]
    w = np.where(self.parent >= 0, h[self.parent] - h, 0.0)
    return w / H

  def ancestors(self) -> tuple[np.ndarray, np.ndarray]:
    """Sparse incidence: (rows, cols) with class ``rows[k]`` under node
    ``cols[k]`` (ancestor-or-self), O(C · depth) entries."""
    rows, cols = [], []
    current = self.class_nodes.copy()
    index = np.arange(current.size)
    while current.size:
      rows.append(index)
      cols.append(current)
      up = self.parent[current]
      keep = up >= 0
      index, current = index[keep], up[keep]
    return np.concatenate(rows), np.concatenate(cols)


def build_tree(edges: Iterable[tuple[Hashable, Hashable]],
               classes: Sequence[Hashable] | None = None) -> Tree:
  """Validates ``(parent, child)`` edges as a rooted tree; see ``Tree``."""
  index: dict[Hashable, int] = {}
  parent_of: dict[int, int] = {}
  for k, edge in enumerate(edges):
    try:
      p, c = edge
    except (TypeError, ValueError):
      raise ValueError(
          f"edges[{k}] must be a (parent, child) pair, got {edge!r}.") from None
    if p == c:
      raise ValueError(f"edges[{k}] joins {p!r} to itself.")
    pi = index.setdefault(p, len(index))
    ci = index.setdefault(c, len(index))
    if ci in parent_of and parent_of[ci] != pi:
      nodes = list(index)
      raise ValueError(
          f"edges do not form a tree: {c!r} has two parents, "
          f"{nodes[parent_of[ci]]!r} and {p!r}.")
    parent_of[ci] = pi
  if not index:
    raise ValueError("edges is empty: a hierarchy needs at least one edge.")
  nodes = tuple(index)
  n = len(nodes)
  parent = np.full(n, -1, dtype=np.int64)
  for ci, pi in parent_of.items():
    parent[ci] = pi
  roots = np.flatnonzero(parent < 0)
  if roots.size != 1:
    shown = [nodes[r] for r in roots[:5]]
    raise ValueError(f"edges must describe one tree with a single root; "
                     f"found {roots.size} roots: {shown}"
                     f"{' ...' if roots.size > 5 else ''}.")
  # Breadth-first order from the root; nodes never reached sit on a cycle.
  children = [[] for _ in range(n)]
  for ci, pi in parent_of.items():
    children[pi].append(ci)
  order = [int(roots[0])]
  for node in order:
    order.extend(children[node])
  if len(order) != n:
    unreached = sorted(set(range(n)) - set(order))[:5]
    raise ValueError(f"edges contain a cycle through "
                     f"{[nodes[u] for u in unreached]}.")
  height = np.zeros(n, dtype=np.int64)
  for node in reversed(order):
    if parent[node] >= 0:
      height[parent[node]] = max(height[parent[node]], height[node] + 1)
  is_leaf = np.array([not ch for ch in children])
  if classes is None:
    class_nodes = np.flatnonzero(is_leaf)
  else:
    classes = list(classes)
    if len(set(classes)) != len(classes):
      raise ValueError("classes must not repeat a class.")
    missing = [c for c in classes if c not in index]
    if missing:
      raise ValueError(f"classes not in the hierarchy: {missing[:5]}.")
    class_nodes = np.array([index[c] for c in classes], dtype=np.int64)
    inner = [classes[k] for k in np.flatnonzero(~is_leaf[class_nodes])]
    if inner:
      raise ValueError(f"classes must be leaves of the hierarchy; these are "
                       f"inner nodes: {inner[:5]}.")
    if not classes:
      raise ValueError("classes must name at least one class.")
  return Tree(nodes=nodes, parent=parent, height=height,
              classes=tuple(nodes[i] for i in class_nodes),
              class_nodes=class_nodes)


def from_hierarchy(edges: Iterable[tuple[Hashable, Hashable]], *,
                   classes: Sequence[Hashable] | None = None,
                   implicit: bool = False
                   ) -> jax.Array | _operators.TreeKernel:
  r"""The LCA-height kernel of a class tree (Barz & Denzler, 2019).

  .. math::
    S_{ab} = 1 - \frac{h(\mathrm{lca}(a, b))}{h(\mathrm{root})}

  with :math:`h` = 0 at a leaf and 1 + the largest height of the children
  elsewhere. The kernel has unit diagonal, lies in [0, 1], and is positive
  semi-definite (a non-negative sum of the blocks of leaves under each node).

  With ``implicit=True`` the kernel is returned as a ``TreeKernel``: the
  product :math:`SX = M(w \odot M^\top X)` through the tree, O(N) memory
  for N nodes instead of O(C²), accepted by ``spectral_codebook``,
  ``top_eigenmodes``, ``gram_error`` and ``alignment``. Use it from a few
  thousand classes on (at C = 100,000 the dense kernel is 40 GB).

  Args:
    edges: iterable of ``(parent, child)`` pairs of hashable node ids, forming
      one rooted tree (each node one parent, no cycles).
    classes: the classes, as leaf ids, in kernel order. Default: every leaf,
      in order of first appearance in ``edges``.
    implicit: return the kernel as a product (``TreeKernel``) instead of
      a dense matrix.

  Returns:
    The (C, C) kernel, or the equivalent ``TreeKernel``.

  References:
    Barz & Denzler, "Hierarchy-based Image Embeddings for Semantic Image
    Retrieval", WACV 2019.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> edges = [("animal", "cat"), ("animal", "dog"), ("root", "animal"),
    ...          ("root", "car")]
    >>> st.from_hierarchy(edges, classes=["cat", "dog", "car"])
    Array([[1. , 0.5, 0. ],
           [0.5, 1. , 0. ],
           [0. , 0. , 1. ]], dtype=float32)
    >>> K = st.from_hierarchy(edges, classes=["cat", "dog", "car"],
    ...                       implicit=True)
    >>> K @ jnp.array([1., 0., 0.])  # the first column, without S
    Array([1. , 0.5, 0. ], dtype=float32)
  """
  tree = build_tree(edges, classes)
  w = tree.weights()
  if implicit:
    return _operators.tree_kernel(tree.parent, w, tree.class_nodes)
  rows, cols = tree.ancestors()
  C = tree.class_nodes.size
  # Only the nodes that lie above some class take part.
  used, cols = np.unique(cols, return_inverse=True)
  M = np.zeros((C, used.size))
  M[rows, cols] = 1.0
  # float64 on the host: the sums of weights are then exact to rounding,
  # so the diagonal is exactly 1 and equal heights give equal entries.
  return jnp.asarray((M * w[used]) @ M.T, dtype=float)


def load_hierarchy(path: str | os.PathLike) -> list[tuple[str, str]]:
  """Reads a tree from a text file of ``PARENT CHILD`` lines.

  Blank lines and lines starting with ``#`` are skipped; ids are the two
  whitespace-separated fields, as strings.

  Args:
    path: the file.

  Returns:
    The list of ``(parent, child)`` edges, in file order.

  Examples:
    >>> import pathlib, tempfile, spectral_targets as st
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tree.txt"
    >>> _ = path.write_text("# a tree\\nroot animal\\nanimal cat\\nanimal dog\\n")
    >>> edges = st.load_hierarchy(path)
    >>> edges
    [('root', 'animal'), ('animal', 'cat'), ('animal', 'dog')]
    >>> st.from_hierarchy(edges).tolist()
    [[1.0, 0.5], [0.5, 1.0]]
  """
  with open(path, encoding="utf-8") as f:
    return _parse_edges(f, str(path))


def _parse_edges(lines: Iterable[str], where: str) -> list[tuple[str, str]]:
  edges = []
  for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    fields = line.split()
    if len(fields) != 2:
      raise ValueError(f"{where}:{number}: expected 'PARENT CHILD', got "
                       f"{line!r}.")
    edges.append((fields[0], fields[1]))
  return edges


def _data_lines(name: str) -> list[str]:
  return (resources.files("spectral_targets") / "data" / name).read_text(
      encoding="utf-8").splitlines()


def cifar100_hierarchy(tree: str = "superclasses"
                       ) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
  """The CIFAR-100 class tree that ships with the package (no download).

  Two trees over the same 100 classes, named as in the data set and listed
  in its label order (``classes[k]`` is fine label k):

  * ``"superclasses"``: root → the 20 CIFAR-100 superclasses → 5 classes each
    (height 2: similarity 1 within a class, 0.5 within a superclass, else 0).
  * ``"wordnet"``: the deeper WordNet-derived tree of Barz & Denzler (2019),
    163 nodes, inner nodes named by their WordNet synset.

  Args:
    tree: which of the two.

  Returns:
    ``(edges, classes)``, ready for ``from_hierarchy(edges, classes=classes)``.

  Examples:
    >>> import spectral_targets as st
    >>> edges, classes = st.cifar100_hierarchy()
    >>> S = st.from_hierarchy(edges, classes=classes)
    >>> S.shape, float(S[0, 57])  # apple and pear share a superclass
    ((100, 100), 0.5)
  """
  names = dict(line.split() for line in _data_lines("cifar100.class-names.txt"))
  classes = tuple(names[str(k)] for k in range(100))
  if tree == "superclasses":
    edges = _parse_edges(_data_lines("cifar100.superclasses.txt"),
                         "cifar100.superclasses.txt")
  elif tree == "wordnet":
    raw = _parse_edges(_data_lines("cifar100.parent-child.txt"),
                       "cifar100.parent-child.txt")
    edges = [(names[p], names[c]) for p, c in raw]
  else:
    raise ValueError(f"tree must be 'superclasses' or 'wordnet', got "
                     f"{tree!r}.")
  return edges, classes


def random_hierarchy(num_classes: int, *, depth: int = 8,
                     branching: float = 4.0, unevenness: float = 1.0,
                     seed: int = 0) -> list[tuple[int, int]]:
  r"""A random taxonomy of realistic shape, for tests and benchmarks.

  Built top-down: a node with n classes below it gets
  :math:`2 + \mathrm{Poisson}(\text{branching} - 2)` children (at most n),
  and its n classes are split among them in proportions drawn from a
  symmetric Dirichlet with concentration ``1 / unevenness`` (so subtrees are
  uneven in size, as in WordNet or a biological taxonomy); a subtree with one
  class ends in a leaf, and a node at depth ``depth - 1`` takes its classes
  as leaves directly. Leaves therefore sit at uneven depths, at most
  ``depth``. Deterministic for a given seed.

  Args:
    num_classes: C, the number of leaves (>= 2).
    depth: the largest depth of a leaf (>= 1).
    branching: mean number of children of an inner node (>= 2).
    unevenness: > 0; larger makes sibling subtrees more unequal.
    seed: seed of the NumPy generator.

  Returns:
    ``(parent, child)`` edges between integer node ids (the root is 0);
    the leaves are the classes, in order of first appearance.

  Examples:
    >>> import spectral_targets as st
    >>> edges = st.random_hierarchy(1000, seed=0)
    >>> st.from_hierarchy(edges, implicit=True).num_classes
    1000
  """
  C = v.check_int(num_classes, "num_classes", minimum=2)
  depth = v.check_int(depth, "depth", minimum=1)
  v.check_positive(branching - 1, "branching - 1")
  if branching < 2:
    raise ValueError(f"branching must be >= 2, got {branching}.")
  v.check_positive(unevenness, "unevenness")
  rng = np.random.default_rng(seed)
  edges: list[tuple[int, int]] = []
  stack = [(0, C, 0)]
  next_id = 1
  while stack:
    node, n, level = stack.pop()
    if level == depth - 1:
      parts = np.ones(n, np.int64)
    else:
      b = int(min(n, 2 + rng.poisson(branching - 2)))
      p = rng.dirichlet(np.full(b, 1.0 / unevenness))
      # Every child gets one class; the rest are shared out by p.
      parts = 1 + rng.multinomial(n - b, p)
    for m in parts[::-1]:
      child, next_id = next_id, next_id + 1
      edges.append((node, child))
      if m > 1:
        stack.append((child, int(m), level + 1))
  return edges

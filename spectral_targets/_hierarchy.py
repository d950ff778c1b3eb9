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
import functools
import math
import os
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _operators
from spectral_targets import _validation as v


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class Tree:
  r"""A validated rooted tree and the classes (leaves) it is used over.

  Built by ``build_tree``. The depth of a node counts edges from the root,
  its height edges down to its deepest leaf:

  .. math::
    \mathrm{depth}(\mathrm{root}) = 0,\quad
    \mathrm{depth}(n) = 1 + \mathrm{depth}(\mathrm{parent}(n));\qquad
    h(\mathrm{leaf}) = 0,\quad h(n) = 1 + \max_{c\,\in\,\mathrm{children}(n)} h(c).

  A tree is immutable and hashable (by value), and registered as a static
  JAX pytree (no array leaves): pass it to a jitted function as a constant
  or as an ordinary argument; each distinct tree compiles once.

  Attributes:
    nodes: every node id, in order of first appearance in the edges.
    parent: (num_nodes,) index of each node's parent; -1 for the root.
    height: (num_nodes,) height of each node.
    depth: (num_nodes,) depth of each node.
    classes: the class ids, in kernel (logit) order.
    class_nodes: (C,) node index of each class.

  Examples:
    >>> import spectral_targets as st
    >>> tree = st.build_tree([("root", "animal"), ("animal", "cat"),
    ...                       ("animal", "dog"), ("root", "car")])
    >>> tree.classes, tree.num_classes
    (('cat', 'dog', 'car'), 3)
    >>> tree.depth[tree.class_nodes].tolist()
    [2, 2, 1]
  """
  nodes: tuple[Hashable, ...]
  parent: np.ndarray
  height: np.ndarray
  depth: np.ndarray
  classes: tuple[Hashable, ...]
  class_nodes: np.ndarray
  _key: tuple[object, ...] = dataclasses.field(init=False, repr=False)
  _hash: int = dataclasses.field(init=False, repr=False)

  def __post_init__(self) -> None:
    for name in ("parent", "height", "depth", "class_nodes"):
      getattr(self, name).flags.writeable = False  # hashed by value
    key = (self.nodes, self.classes, self.parent.tobytes(),
           self.class_nodes.tobytes())
    object.__setattr__(self, "_key", key)
    object.__setattr__(self, "_hash", hash(key))

  def __hash__(self) -> int:
    return self._hash

  def __eq__(self, other: object) -> bool:
    if self is other:
      return True
    if not isinstance(other, Tree):
      return NotImplemented
    return self._hash == other._hash and self._key == other._key

  def __repr__(self) -> str:
    return (f"Tree(num_nodes={len(self.nodes)}, num_classes="
            f"{self.num_classes}, height={int(self.height[self.root])})")

  @property
  def num_classes(self) -> int:
    """C, the number of classes."""
    return int(self.class_nodes.size)

  @property
  def root(self) -> int:
    """Index of the root node."""
    return int(np.flatnonzero(self.parent < 0)[0])

  def weights(self) -> np.ndarray:
    """(num_nodes,) w_n = (h(parent) - h(n)) / h(root), 0 for the root."""
    h = self.height.astype(np.float64)
    H = h[self.root]
    w = np.where(self.parent >= 0, h[self.parent] - h, 0.0)
    weights: np.ndarray = w / H
    return weights

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

  @functools.cached_property
  def operator(self) -> _operators.TreeKernel:
    """The LCA-height kernel as a ``TreeKernel`` (built once per tree): the
    nodes with a class below them, one array per depth level."""
    # Concrete even when first asked for inside a trace: it is cached.
    with jax.ensure_compile_time_eval():
      return _operators.tree_kernel(self.parent, self.weights(),
                                    self.class_nodes)


def _check_hashable(value: object, where: str) -> None:
  try:
    hash(value)
  except TypeError:
    raise TypeError(
        f"{where} is not hashable: {value!r} ({type(value).__name__}); node "
        "ids must be hashable (str, int, or tuples of those).") from None


def _cycle(parent_of: dict[int, int], start: int) -> list[int]:
  """The cycle reached by following parents from ``start``, listed in the
  edges' parent-to-child direction."""
  seen: dict[int, int] = {}
  node = start
  while node not in seen:
    seen[node] = len(seen)
    node = parent_of[node]
  upward = list(seen)[seen[node]:]
  return upward[:1] + upward[:0:-1]


def build_tree(edges: Iterable[tuple[Hashable, Hashable]]
               | Mapping[Hashable, Hashable],
               classes: Sequence[Hashable] | None = None) -> Tree:
  r"""Validates a class hierarchy as one rooted tree.

  The tree every hierarchy function uses: ``from_hierarchy`` builds its
  kernel from it, ``hierarchical_cross_entropy`` factorises the class
  probability along it. Every node has one parent except the root; depth
  and height are as defined in ``Tree``:

  .. math::
    \mathrm{depth}(n) = |\mathrm{path}(n \to \mathrm{root})|,\qquad
    h(n) = \max_{\ell\ \text{leaf below}\ n} |\mathrm{path}(\ell \to n)|.

  Args:
    edges: iterable of ``(parent, child)`` pairs of hashable node ids, or a
      mapping ``{child: parent}``.
    classes: the classes, as leaf ids, in the order of the logits and the
      kernel. Default: every leaf, in order of first appearance in
      ``edges``.

  Returns:
    A ``Tree``: immutable, hashable, a static pytree (usable inside
    ``jit`` as a constant or an argument).

  Raises:
    ValueError: a malformed edge, a node with two parents, several roots, a
      cycle (the message names its nodes), or classes that repeat, are
      missing, or are inner nodes.
    TypeError: an unhashable node or class id.

  Examples:
    >>> import spectral_targets as st
    >>> edges, classes = st.cifar100_hierarchy("wordnet")
    >>> tree = st.build_tree(edges, classes)
    >>> tree
    Tree(num_nodes=163, num_classes=100, height=8)
    >>> st.build_tree([("a", "b"), ("b", "a")])
    Traceback (most recent call last):
    ...
    ValueError: edges contain a cycle through ['a', 'b'] and no root ...

  References:
    Bertinetto et al., "Making Better Mistakes: Leveraging Class Hierarchies
    with Deep Networks", CVPR 2020.
  """
  if isinstance(edges, Mapping):
    edges = [(p, c) for c, p in edges.items()]
  elif isinstance(edges, (str, bytes)) or not isinstance(edges, Iterable):
    raise TypeError(f"edges must be an iterable of (parent, child) pairs or "
                    f"a {{child: parent}} mapping, got {type(edges).__name__}.")
  index: dict[Hashable, int] = {}
  parent_of: dict[int, int] = {}
  for k, edge in enumerate(edges):
    try:
      p, c = edge
    except (TypeError, ValueError):
      raise ValueError(
          f"edges[{k}] must be a (parent, child) pair, got {edge!r}.") from None
    _check_hashable(p, f"the parent in edges[{k}]")
    _check_hashable(c, f"the child in edges[{k}]")
    if p == c:
      raise ValueError(f"edges[{k}] joins {p!r} to itself.")
    pi = index.setdefault(p, len(index))
    ci = index.setdefault(c, len(index))
    if ci in parent_of and parent_of[ci] != pi:
      names = list(index)
      raise ValueError(
          f"edges do not form a tree: {c!r} has two parents, "
          f"{names[parent_of[ci]]!r} and {p!r}.")
    parent_of[ci] = pi
  if not index:
    raise ValueError("edges is empty: a hierarchy needs at least one edge.")
  nodes = tuple(index)
  n = len(nodes)
  parent = np.full(n, -1, dtype=np.int64)
  for ci, pi in parent_of.items():
    parent[ci] = pi
  roots = np.flatnonzero(parent < 0)
  if roots.size == 0:
    # Every node has a parent: following parents must come back round.
    cycle = [nodes[u] for u in _cycle(parent_of, 0)]
    raise ValueError(f"edges contain a cycle through {cycle[:5]}"
                     f"{' ...' if len(cycle) > 5 else ''} and no root (every "
                     "node has a parent).")
  if roots.size != 1:
    shown = [nodes[r] for r in roots[:5]]
    raise ValueError(f"edges must describe one tree with a single root; "
                     f"found {roots.size} roots: {shown}"
                     f"{' ...' if roots.size > 5 else ''}.")
  # Breadth-first order from the root; nodes never reached sit on a cycle.
  children: list[list[int]] = [[] for _ in range(n)]
  for ci, pi in parent_of.items():
    children[pi].append(ci)
  order = [int(roots[0])]
  depth = np.zeros(n, dtype=np.int64)
  for node in order:
    order.extend(children[node])
    depth[children[node]] = depth[node] + 1
  if len(order) != n:
    unreached = sorted(set(range(n)) - set(order))
    cycle = [nodes[u] for u in _cycle(parent_of, unreached[0])]
    raise ValueError(f"edges contain a cycle through {cycle[:5]}"
                     f"{' ...' if len(cycle) > 5 else ''}, detached from the "
                     f"root {nodes[roots[0]]!r}.")
  height = np.zeros(n, dtype=np.int64)
  for node in reversed(order):
    if parent[node] >= 0:
      height[parent[node]] = max(height[parent[node]], height[node] + 1)
  is_leaf = np.array([not ch for ch in children])
  if classes is None:
    class_nodes = np.flatnonzero(is_leaf)
  else:
    if isinstance(classes, (str, bytes)):
      raise TypeError(f"classes must be a sequence of class ids, not a "
                      f"string ({classes!r}).")
    classes = list(classes)
    for k, c in enumerate(classes):
      _check_hashable(c, f"classes[{k}]")
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
  return Tree(nodes=nodes, parent=parent, height=height, depth=depth,
              classes=tuple(nodes[i] for i in class_nodes),
              class_nodes=class_nodes)


@overload
def from_hierarchy(edges: Iterable[tuple[Hashable, Hashable]], *,
                   classes: Sequence[Hashable] | None = None,
                   implicit: Literal[False] = False) -> jax.Array:
  ...


@overload
def from_hierarchy(edges: Iterable[tuple[Hashable, Hashable]], *,
                   classes: Sequence[Hashable] | None = None,
                   implicit: Literal[True]) -> _operators.TreeKernel:
  ...


@overload
def from_hierarchy(edges: Iterable[tuple[Hashable, Hashable]], *,
                   classes: Sequence[Hashable] | None = None,
                   implicit: bool = False
                   ) -> jax.Array | _operators.TreeKernel:
  ...


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
  if implicit:
    return tree.operator
  w = tree.weights()
  rows, cols = tree.ancestors()
  C = tree.class_nodes.size
  # Only the nodes that lie above some class take part.
  used, cols = np.unique(cols, return_inverse=True)
  M = np.zeros((C, used.size))
  M[rows, cols] = 1.0
  # float64 on the host: the sums of weights are then exact to rounding,
  # so the diagonal is exactly 1 and equal heights give equal entries.
  return jnp.asarray((M * w[used]) @ M.T, dtype=float)


def load_hierarchy(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
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
  if not isinstance(path, (str, os.PathLike)):
    # open() would take an int as a file descriptor, read it and close the
    # caller's descriptor.
    raise TypeError(f"path must be a str or os.PathLike, got "
                    f"{type(path).__name__} {path!r}.")
  with open(path, "rb") as f:
    return _parse_edges(_decoded(f, str(path)), str(path))


def _decoded(lines: Iterable[bytes], where: str) -> Iterator[str]:
  """UTF-8 lines (a leading byte-order mark dropped); an undecodable line
  is an error naming the file, line and byte."""
  for number, raw in enumerate(lines, 1):
    try:
      yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(
          f"{where}:{number}: not valid UTF-8 (byte {raw[e.start]:#04x} at "
          f"column {e.start + 1}); save the file as UTF-8.") from None


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


def cifar100_hierarchy(tree: Literal["superclasses", "wordnet"] = "superclasses"
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
    seed: seed of the NumPy generator, an int >= 0.

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
  b = v.real_scalar(branching, "branching")
  if b is None or not (math.isfinite(b) and b >= 2):
    raise ValueError(f"branching must be a finite number >= 2, got "
                     f"{branching}.")
  branching = b
  v.check_positive(unevenness, "unevenness")
  seed = v.check_seed(seed)
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

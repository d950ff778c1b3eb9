"""Class taxonomies to build trees from: a file reader (``load_hierarchy``),
the CIFAR-100 trees that ship with the package (``cifar100_hierarchy``) and
a generator of random ones (``random_hierarchy``).

Each returns ``(parent, child)`` edges for ``build_tree`` and
``from_hierarchy``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Literal

import numpy as np

from spectral_targets import _validation as v


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

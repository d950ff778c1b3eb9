"""The exact part of a tree kernel's spectrum: sibling leaves deflate.

Two leaves a, b under one parent p with one weight w differ only in the
nodes a and b themselves (every other node holds both or neither), so

.. math::
  S (e_a - e_b) = w\\,(e_a - e_b).

A group G of g such siblings thus gives the eigenvalue w, g - 1 times, with
the contrasts on G (vectors on G that sum to zero; here the Helmert basis)
as eigenvectors. The rest of the spectrum lives on the vectors constant on
every group: in their orthonormal basis :math:`1_G / \\sqrt{g}` the kernel is

.. math::
  S_\\mathrm{red} = D^{1/2}\\,T\\,D^{1/2} + \\mathrm{diag}(w_G),
  \\qquad D = \\mathrm{diag}(g_G),

with T the tree kernel in which each group is one leaf of weight 0 under
its parent (:math:`T_{GH} = f(\\mathrm{lca}(p_G, p_H))`, f the similarity of
two classes whose LCA is that node). A taxonomy has far fewer parents of
leaves than leaves: ``random_hierarchy(1_000_000)`` has 1,000,000 classes in
about 10,000 groups, 990,000 of its eigenvalues are these sibling
eigenvalues (at most 8 distinct values, each of them at most 1), and the
rest is a 10,000-class problem. The top eigenpairs of S are the top ones of
``S_red``, lifted (:math:`u = \\alpha_G / \\sqrt{g}` on each class of G),
merged with the sibling ones. The lift is an isometry onto an invariant
subspace (:math:`S P = P S_\\mathrm{red}`), so a lifted pair's residual is
the reduced pair's.

Everything here is host-side preparation (NumPy on a concrete
``TreeKernel``); the reduced kernel is a ``KernelOperator`` that the
iterative solvers use as they use any other.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _operators


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ReducedTreeKernel(_operators._Derived):
  r"""A tree kernel on the vectors constant on each sibling group:
  :math:`S_\mathrm{red}\,x = s \odot T(s \odot x) + w \odot x`, s the
  square roots of the group sizes, w the groups' leaf weights (for c S:
  s √c and c w)."""
  inner: _operators.TreeKernel   # T: one leaf of weight 0 per group
  scale: jax.Array               # (G,) sqrt(g)
  leaf_weight: jax.Array         # (G,) w of the group's leaves

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._block(x)
    s, w = ((self.scale, self.leaf_weight) if x.ndim == 1
            else (self.scale[:, None], self.leaf_weight[:, None]))
    return s * self.inner.matmul(s * x) + w * x


class SiblingDeflation(NamedTuple):
  """A ``TreeKernel`` split into its sibling eigenpairs and the rest."""
  reduced: ReducedTreeKernel   # (G, G) S_red
  group: np.ndarray            # (C,) group of each class
  members: np.ndarray          # (C,) the classes, group by group, each
                               # group's in class order
  start: np.ndarray            # (G + 1,) group G is members[start[G]:
                               # start[G + 1]]
  sizes: np.ndarray            # (G,) g
  leaf_weight: np.ndarray      # (G,) w, float64 (the kernel's values)

  def _picks(self, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The groups with sibling eigenvalues (g >= 2), largest w first (ties
    in group order), and how many of each group's g - 1 the ``count``
    largest sibling eigenvalues take."""
    groups = np.flatnonzero(self.sizes >= 2)
    order = groups[np.argsort(-self.leaf_weight[groups], kind="stable")]
    counts = self.sizes[order] - 1
    return order, np.clip(count - _starts(counts), 0, counts)

  def sibling_eigenvalues(self, count: int) -> np.ndarray:
    """The ``count`` largest sibling eigenvalues, descending (float64)."""
    order, taken = self._picks(count)
    values: np.ndarray = np.repeat(self.leaf_weight[order], taken)
    return values

  def sibling_vectors(self, count: int, dtype: jax.typing.DTypeLike
                      ) -> np.ndarray:
    """(C, count) orthonormal eigenvectors of the ``count`` largest sibling
    eigenvalues, in their order: Helmert contrasts inside each group, the
    i-th (i = 1 .. g - 1) :math:`(1, \\dots, 1, -i, 0, \\dots) /
    \\sqrt{i (i + 1)}` over its first i + 1 classes."""
    order, taken = self._picks(count)
    group = np.repeat(order, taken)                          # (count,)
    i = 1 + np.arange(group.size) - np.repeat(_starts(taken), taken)  # 1..g-1
    # Column j has i_j + 1 entries: i_j of 1 / sqrt(i (i+1)), one of -i / ..
    length = i + 1
    col = np.repeat(np.arange(group.size), length)
    offset = np.arange(col.size) - np.repeat(_starts(length), length)
    rows = self.members[self.start[group[col]] + offset]
    norm = np.sqrt(i * (i + 1.0))[col]
    values = np.where(offset < i[col], 1.0, -i[col].astype(float)) / norm
    U = np.zeros((self.group.size, group.size), dtype)
    U[rows, col] = values
    return U

  def lift(self, alpha: jax.Array) -> jax.Array:
    """(C, k) eigenvectors of S from (G, k) ones of ``reduced``."""
    inverse = jnp.asarray(1 / np.sqrt(self.sizes), alpha.dtype)[:, None]
    return jnp.take(alpha * inverse, jnp.asarray(self.group), axis=0)


def _starts(lengths: np.ndarray) -> np.ndarray:
  """Where each of consecutive runs of these lengths starts."""
  starts: np.ndarray = np.cumsum(lengths) - lengths
  return starts


def deflate(K: _operators.TreeKernel, factor: float = 1.0
            ) -> SiblingDeflation:
  """Groups the classes of a ``TreeKernel`` into siblings (one parent, one
  weight) and builds the reduced kernel of the groups, of ``factor * K``
  (c S_red as the same kind of operator: s √c and w c, so a scaled kernel
  compiles the solver once with an unscaled one)."""
  sizes = [w.shape[0] for w in K.weights]
  offsets = np.cumsum([0] + sizes)
  n = int(offsets[-1])
  # The flat node order of the kernel: level by level.
  parent = np.full(n, -1, np.int64)
  for t in range(1, len(sizes)):
    parent[offsets[t]:offsets[t + 1]] = (offsets[t - 1]
                                         + np.asarray(K.parents[t - 1]))
  weight = np.concatenate([np.asarray(w, np.float64) for w in K.weights])
  nodes = np.asarray(K.class_index, np.int64)
  is_class = np.zeros(n, bool)
  is_class[nodes] = True
  if np.any(is_class[parent[parent >= 0]]):
    raise ValueError("the tree kernel has a class above another class; "
                     "sibling deflation needs every class to be a leaf.")
  class_parent, class_weight = parent[nodes], weight[nodes]
  members = np.lexsort((class_weight, class_parent))  # stable: class order
  new = np.ones(members.size, bool)
  new[1:] = ((np.diff(class_parent[members]) != 0)
             | (np.diff(class_weight[members]) != 0))
  start = np.append(np.flatnonzero(new), members.size)
  group = np.empty(members.size, np.int64)
  group[members] = np.cumsum(new) - 1
  group_sizes = np.diff(start)
  heads = members[start[:-1]]
  # T: the inner nodes, renumbered, and one leaf of weight 0 per group.
  inner = np.flatnonzero(~is_class)
  renumber = np.full(n, -1, np.int64)
  renumber[inner] = np.arange(inner.size)
  up = parent[inner]
  tree_parent = np.concatenate([np.where(up >= 0, renumber[up], -1),
                                renumber[class_parent[heads]]])
  tree_weight = np.concatenate([weight[inner], np.zeros(heads.size)])
  T = _operators.tree_kernel(tree_parent, tree_weight,
                             inner.size + np.arange(heads.size))
  reduced = ReducedTreeKernel(
      inner=T, scale=jnp.asarray(np.sqrt(factor * group_sizes), K.dtype),
      leaf_weight=jnp.asarray(factor * class_weight[heads], K.dtype))
  return SiblingDeflation(reduced=reduced, group=group, members=members,
                          start=start, sizes=group_sizes,
                          leaf_weight=class_weight[heads])

"""Label kernels known through their products: S @ X without forming S.

A dense kernel costs O(C²) memory; at C = 100,000 that is 40 GB. The kernels
here are structured (a tree, a low-rank factor plus a diagonal) or supplied by
the user as anything with a ``shape`` and a ``@``. Each exposes what the
spectral functions need: the product with a block, and, where the structure
gives them cheaply, the diagonal and the squared Frobenius norm.

Operators are JAX pytrees, so they pass through ``jit`` like arrays.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Protocol, TypeAlias, TypeGuard, overload

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _validation as v
from spectral_targets._jit import jit


class KernelOperator(abc.ABC):
  r"""A symmetric (C, C) label kernel given by its product with a block.

  Subclass it to pass your own structured kernel to ``spectral_codebook``,
  ``top_eigenmodes``, ``gram_error`` and ``alignment``: implement
  ``num_classes``, ``dtype`` and ``matmul`` in ``jax.numpy`` (so it traces),
  register the subclass as a pytree, and implement ``diagonal`` and
  ``squared_norm`` if your structure gives them cheaply (``gram_error`` needs
  the norm; ``alignment`` needs the diagonal against a kernel with one).
  ``kernel @ X`` is ``kernel.matmul(X)``. A method left out raises
  ``NotImplementedError``, which the callers turn into a ``ValueError``
  naming what they need.

  Examples:
    >>> import jax, jax.numpy as jnp, spectral_targets as st
    >>> @jax.tree_util.register_static
    ... class Identity(st.KernelOperator):
    ...   num_classes, dtype = 3, jnp.float32
    ...   def matmul(self, x):
    ...     return jnp.asarray(x, self.dtype)
    >>> st.top_eigenmodes(Identity(), 2).eigenvalues
    Array([1., 1.], dtype=float32)
  """

  @property
  @abc.abstractmethod
  def num_classes(self) -> int:
    """C."""

  @property
  @abc.abstractmethod
  def dtype(self) -> np.dtype[Any]:
    """The floating dtype of the products."""

  @abc.abstractmethod
  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    """S @ x for x of shape (C,) or (C, k)."""

  def diagonal(self) -> jax.Array:
    """(C,) diagonal of S."""
    raise NotImplementedError(
        f"{type(self).__name__} does not provide its diagonal; implement "
        "diagonal() or pass the dense kernel.")

  def squared_norm(self) -> float:
    """The squared Frobenius norm, sum_ij S_ij² = sum_i λ_i²."""
    raise NotImplementedError(
        f"{type(self).__name__} does not provide its squared Frobenius norm; "
        "implement squared_norm() or pass the dense kernel.")

  @property
  def shape(self) -> tuple[int, int]:
    return (self.num_classes, self.num_classes)

  def __matmul__(self, x: jax.typing.ArrayLike) -> jax.Array:
    return self.matmul(x)

  def _block(self, x: jax.typing.ArrayLike) -> jax.Array:
    """x as this kernel's dtype, checked to be (C,) or (C, k)."""
    x = jnp.asarray(x, self.dtype)
    if x.ndim not in (1, 2) or x.shape[0] != self.num_classes:
      raise ValueError(f"x must be ({self.num_classes},) or "
                       f"({self.num_classes}, k), got shape {x.shape}.")
    return x

  def to_dense(self) -> jax.Array:
    """The (C, C) matrix, S @ I: O(C²) memory, for small C and tests."""
    return self.matmul(jnp.eye(self.num_classes, dtype=self.dtype))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TreeKernel(KernelOperator):
  r"""The LCA-height kernel of a class tree, as a product (no C × C matrix).

  .. math::
    S = M\,\mathrm{diag}(w)\,M^\top, \qquad
    S X = M\,\big(w \odot (M^\top X)\big)

  with M the class-to-ancestor incidence matrix and w the node weights of
  ``from_hierarchy``. :math:`M^\top X` (the sum of X over the classes below
  every node) is accumulated leaves-to-root one depth level at a time; then
  :math:`M(w\odot\cdot)` accumulates root-to-leaves. A product with a
  (C, k) block costs O(N k) time and memory for a tree of N nodes, and the
  tree itself O(N). Build it with ``from_hierarchy(..., implicit=True)``.

  The diagonal is 1 and the squared Frobenius norm is exact:
  :math:`\sum_n f_n^2\,(|L_n|^2 - \sum_{c\,\in\,\mathrm{children}(n)}|L_c|^2)`,
  where :math:`f_n` is the similarity of two classes whose LCA is n and
  :math:`L_n` the classes below n.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> edges = [("root", "a"), ("a", "x"), ("a", "y"), ("root", "z")]
    >>> K = st.from_hierarchy(edges, implicit=True)
    >>> K @ jnp.ones(3), K.squared_norm()
    (Array([1.5, 1.5, 1. ], dtype=float32), 3.5)
  """
  parents: tuple[jax.Array, ...]   # per depth level >= 1: parent's position
  sources: tuple[jax.Array, ...]   # per level: row of X (C means none)
  weights: tuple[jax.Array, ...]   # per level: w of each node
  class_index: jax.Array           # (C,) position of each class, all levels
  norm2: float = dataclasses.field(metadata=dict(static=True))

  @property
  def num_classes(self) -> int:
    return self.class_index.shape[0]

  @property
  def dtype(self) -> np.dtype[Any]:
    return self.weights[0].dtype

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._block(x)
    block = x if x.ndim == 2 else x[:, None]
    result = _tree_matmul(self, block)
    return result if x.ndim == 2 else result[:, 0]

  def diagonal(self) -> jax.Array:
    # The ancestor weights of a leaf telescope to 1 - h(leaf)/h(root) = 1.
    return jnp.ones(self.num_classes, self.dtype)

  def squared_norm(self) -> float:
    return self.norm2


@jit
def _tree_matmul(K: TreeKernel, block: jax.Array) -> jax.Array:
  padded = jnp.concatenate([block, jnp.zeros_like(block[:1])])
  below = [padded[s] for s in K.sources]
  for t in range(len(below) - 1, 0, -1):
    below[t - 1] = below[t - 1] + jax.ops.segment_sum(
        below[t], K.parents[t - 1], num_segments=below[t - 1].shape[0],
        indices_are_sorted=True)
  out = [K.weights[0][:, None] * below[0]]
  for t in range(1, len(below)):
    out.append(out[t - 1][K.parents[t - 1]] + K.weights[t][:, None] * below[t])
  return jnp.concatenate(out)[K.class_index]


def tree_kernel(parent: np.ndarray, weights: np.ndarray,
                class_nodes: np.ndarray) -> TreeKernel:
  """A ``TreeKernel`` from a validated tree's arrays (see ``_tree``)."""
  n = parent.size
  children: list[list[int]] = [[] for _ in range(n)]
  for node, p in enumerate(parent):
    if p >= 0:
      children[p].append(node)
  # Keep only nodes with a class below them; order them breadth-first, so
  # each level is contiguous and sorted by parent.
  has_class = np.zeros(n, bool)
  for node in class_nodes:
    while node >= 0 and not has_class[node]:
      has_class[node] = True
      node = parent[node]
  root = int(np.flatnonzero(parent < 0)[0])
  levels = [[root]]
  while True:
    nxt = [c for p in levels[-1] for c in children[p] if has_class[c]]
    if not nxt:
      break
    levels.append(nxt)
  position: dict[int, int] = {}
  for nodes in levels:
    for i, node in enumerate(nodes):
      position[node] = i
  C = class_nodes.size
  source_of = np.full(n, C, np.int64)
  source_of[class_nodes] = np.arange(C)
  flat = np.concatenate([np.asarray(nodes) for nodes in levels])
  index_of = np.empty(n, np.int64)
  index_of[flat] = np.arange(flat.size)

  # Exact squared norm in float64: f at each node, pairs whose LCA it is.
  f = np.zeros(n)
  for node in flat:  # breadth-first: parents first
    f[node] = (f[parent[node]] if parent[node] >= 0 else 0.0) + weights[node]
  count = np.zeros(n)
  count[class_nodes] = 1.0
  for node in flat[::-1]:
    if parent[node] >= 0:
      count[parent[node]] += count[node]
  child_sq = np.zeros(n)
  for node in flat:
    if parent[node] >= 0:
      child_sq[parent[node]] += count[node] ** 2
  pairs = count**2 - child_sq
  norm2 = float(np.sum(f[flat] ** 2 * pairs[flat]))

  dtype = jnp.result_type(float)
  def as_int(a: np.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(a, jnp.int32)

  return TreeKernel(
      parents=tuple(as_int([position[parent[c]] for c in nodes])
                    for nodes in levels[1:]),
      sources=tuple(as_int(source_of[nodes]) for nodes in levels),
      weights=tuple(jnp.asarray(weights[nodes], dtype) for nodes in levels),
      class_index=as_int(index_of[class_nodes]),
      norm2=norm2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LowRankKernel(KernelOperator):
  r"""A kernel :math:`S = F F^\top + \mathrm{diag}(\delta)`; see
  ``low_rank_kernel``.

  Examples:
    >>> import spectral_targets as st
    >>> K = st.low_rank_kernel([[1., 1.], [1., -1.]])
    >>> K.diagonal(), K.squared_norm()
    (Array([2., 2.], dtype=float32), 8.0)
  """
  factor: jax.Array      # (C, r)
  diag: jax.Array        # (C,)

  @property
  def num_classes(self) -> int:
    return self.factor.shape[0]

  @property
  def dtype(self) -> np.dtype[Any]:
    return self.factor.dtype

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    x = self._block(x)
    d = self.diag if x.ndim == 1 else self.diag[:, None]
    return self.factor @ (self.factor.T @ x) + d * x

  def diagonal(self) -> jax.Array:
    return jnp.sum(self.factor**2, axis=1) + self.diag

  def squared_norm(self) -> float:
    F = np.asarray(self.factor, np.float64)
    d = np.asarray(self.diag, np.float64)
    return float(np.sum((F.T @ F) ** 2) + 2 * np.sum(d * np.sum(F**2, 1))
                 + np.sum(d**2))


def low_rank_kernel(factor: jax.typing.ArrayLike,
                    diagonal: jax.typing.ArrayLike | None = None
                    ) -> LowRankKernel:
  r"""A kernel from class embeddings, as a product: low rank plus diagonal.

  .. math::
    S = F F^\top + \mathrm{diag}(\delta), \qquad
    S X = F (F^\top X) + \delta \odot X

  O(C r) memory and O(C r k) per product with a (C, k) block. With unit rows
  in F and :math:`\delta = 0` it is the cosine kernel of the embeddings; the
  Gram matrix of a codebook is ``low_rank_kernel(codes)``, which is how
  ``alignment`` compares a codebook to an implicit kernel.

  Args:
    factor: (C, r) class embeddings F.
    diagonal: (C,) or scalar δ added to the diagonal; default 0.

  Returns:
    A ``LowRankKernel``, accepted wherever a kernel is.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> K = st.low_rank_kernel(jnp.array([[1., 0.], [0., 2.]]), 0.5)
    >>> K @ jnp.ones(2)
    Array([1.5, 4.5], dtype=float32)
    >>> K.to_dense()
    Array([[1.5, 0. ],
           [0. , 4.5]], dtype=float32)
  """
  F = v.as_float_array(factor, "factor")
  F = F.astype(v.compute_dtype(F.dtype))
  v.check_rank(F, 2, "factor")
  if F.shape[0] == 0:
    raise ValueError("factor must have at least one row (class).")
  v.check_finite(F, "factor")
  if diagonal is None:
    d = jnp.zeros(F.shape[0], F.dtype)
  else:
    d = v.as_float_array(diagonal, "diagonal").astype(F.dtype)
    if d.ndim > 1 or (d.ndim == 1 and d.shape[0] != F.shape[0]):
      raise ValueError(f"diagonal must be a scalar or ({F.shape[0]},), got "
                       f"shape {d.shape}.")
    v.check_finite(d, "diagonal")
    d = jnp.broadcast_to(d, (F.shape[0],))
  return LowRankKernel(factor=F, diag=d)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DenseKernel(KernelOperator):
  """A (C, C) array seen as an operator, so one code path serves both."""
  matrix: jax.Array

  @property
  def num_classes(self) -> int:
    return self.matrix.shape[0]

  @property
  def dtype(self) -> np.dtype[Any]:
    return self.matrix.dtype

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    return self.matrix @ jnp.asarray(x, self.dtype)

  def diagonal(self) -> jax.Array:
    return self.matrix.diagonal()  # jnp.diagonal is typed as Any

  def squared_norm(self) -> float:
    return float(np.sum(np.asarray(self.matrix, np.float64) ** 2))

  def to_dense(self) -> jax.Array:
    return self.matrix


class _Derived(KernelOperator):
  """A kernel computed from another operator, ``inner``: same classes, same
  dtype."""
  inner: KernelOperator

  @property
  def num_classes(self) -> int:
    return self.inner.num_classes

  @property
  def dtype(self) -> np.dtype[Any]:
    return self.inner.dtype


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CenteredKernel(_Derived):
  r"""The double-centred kernel :math:`JSJ`, :math:`J = I - \tfrac1C 11^\top`,
  of another operator, by products only."""
  inner: KernelOperator

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    def center(y: jax.Array) -> jax.Array:
      return y - jnp.mean(y, axis=0, keepdims=True)

    return center(self.inner.matmul(center(jnp.asarray(x, self.dtype))))

  def _row_sums(self) -> jax.Array:
    return self.inner.matmul(jnp.ones(self.num_classes, self.dtype))

  def diagonal(self) -> jax.Array:
    r = self._row_sums()
    C = self.num_classes
    return self.inner.diagonal() - 2 * r / C + jnp.sum(r) / C**2

  def squared_norm(self) -> float:
    # ||JSJ||² = ||S||² - (2/C)||S1||² + (1ᵀS1)²/C².
    r = np.asarray(self._row_sums(), np.float64)
    C = self.num_classes
    return max(self.inner.squared_norm() - 2 * np.sum(r**2) / C
               + np.sum(r) ** 2 / C**2, 0.0)


class SupportsMatmul(Protocol):
  """What ``is_operator`` accepts besides a ``KernelOperator``."""

  @property
  def shape(self) -> tuple[int, ...]: ...

  @property
  def dtype(self) -> jax.typing.DTypeLike: ...

  def __matmul__(self, x: jax.Array, /) -> jax.typing.ArrayLike: ...


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _ProductKernel(KernelOperator):
  """Wraps any object with a square ``shape`` and a ``@`` (e.g. a
  ``jax.experimental.sparse.BCOO`` matrix)."""
  matrix: SupportsMatmul

  @property
  def num_classes(self) -> int:
    return int(self.matrix.shape[0])

  @property
  def dtype(self) -> np.dtype[Any]:
    return v.compute_dtype(v.float_dtype(jnp.zeros((), self.matrix.dtype),
                                         "kernel"))

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(self.matrix @ jnp.asarray(x, self.dtype), self.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _ScaledKernel(_Derived):
  """c·S for another operator S; the block is scaled before the product, so
  a kernel of entries near 1e30 times a block of size 1e-30 stays in
  range."""
  inner: KernelOperator
  factor: jax.Array  # scalar: data, so a new factor does not recompile

  def matmul(self, x: jax.typing.ArrayLike) -> jax.Array:
    return self.inner.matmul(self.factor * jnp.asarray(x, self.dtype))

  def diagonal(self) -> jax.Array:
    return self.factor * self.inner.diagonal()

  def squared_norm(self) -> float:
    return float(self.factor) ** 2 * self.inner.squared_norm()


@overload
def scaled(op: DenseKernel | LowRankKernel, factor: float
           ) -> DenseKernel | LowRankKernel:
  ...


@overload
def scaled(op: KernelOperator, factor: float) -> KernelOperator:
  ...


def scaled(op: KernelOperator, factor: float) -> KernelOperator:
  """The kernel ``factor * op`` (factor > 0) as an operator of the same
  kind where there is one: dense and low-rank kernels scale their arrays
  (so ``alignment``'s special cases still apply), others are wrapped."""
  if isinstance(op, DenseKernel):
    return DenseKernel(op.matrix * jnp.asarray(factor, op.dtype))
  if isinstance(op, LowRankKernel):
    root = jnp.asarray(factor**0.5, op.dtype)
    return LowRankKernel(factor=op.factor * root,
                         diag=op.diag * root * root)
  return _ScaledKernel(op, jnp.asarray(factor, op.dtype))


# What a kernel argument accepts: a (C, C) array, a ``KernelOperator``, or
# any object with a square ``shape`` and a ``@`` (e.g. a BCOO matrix).
KernelLike: TypeAlias = (
    "jax.typing.ArrayLike | KernelOperator | SupportsMatmul")


def is_operator(kernel: object
                ) -> TypeGuard[KernelOperator | SupportsMatmul]:
  """True for a kernel given as a product rather than as an array."""
  if isinstance(kernel, KernelOperator):
    return True
  if isinstance(kernel, (np.ndarray, jax.Array, list, tuple)) or not hasattr(
      kernel, "__matmul__"):
    return False
  return hasattr(kernel, "shape")


def densified(op: KernelOperator, name: str = "kernel"
              ) -> tuple[jax.Array, float]:
  """``(S / c, c)``: the dense matrix of an operator, divided by a power of
  four c near its Frobenius norm, for every dense eigensolver and
  scale-free quantity. The one rescaling rule for densification.

  A low-rank kernel ``low_rank_kernel(1e20 * F)`` would overflow float32
  when formed (and 1e-30 * F underflow to 0); its norm, computed on the
  host in float64, does not, and the scaled operator forms S / c in range
  (c is a power of four, so a factor's square root is exact too). A dense
  kernel is used as it is (c = 1: its entries are already in range), and
  so is an operator without ``squared_norm`` or with traced data. A matrix
  formed from an operator that is not structurally symmetric (a wrapped
  BCOO or any other object with a ``@``, or a custom ``KernelOperator``) is
  checked as a dense kernel is, when concrete: finite and symmetric, with
  an error naming ``name`` (LAPACK would otherwise report "Eigenvalues did
  not converge").
  """
  c = 1.0
  concrete = all(v.is_concrete(x) for x in jax.tree_util.tree_leaves(op))
  if concrete and not isinstance(op, DenseKernel):
    try:
      n2 = op.squared_norm()
    except NotImplementedError:
      n2 = 0.0
    if math.isfinite(n2) and n2 > 0:
      c = 4.0 ** round(math.log(n2, 16))  # ≈ ‖S‖_F, a power of four
      op = scaled(op, 1 / c)
  S = op.to_dense()
  checked = (DenseKernel, LowRankKernel, TreeKernel, CenteredKernel)
  if concrete and not isinstance(op, checked) and not (
      isinstance(op, _ScaledKernel) and isinstance(op.inner, checked)):
    S = v.as_kernel(S, name)
  return S, c


def _check_sparse_symmetric(matrix: object, name: str) -> None:
  """A concrete BCOO-like matrix (``indices`` (nnz, 2), ``data`` (nnz,)) is
  symmetric, to the tolerance of ``as_kernel``, compared entry by entry on
  the host (duplicates summed): no dense C × C matrix."""
  indices, data = getattr(matrix, "indices", None), getattr(matrix, "data",
                                                            None)
  if not (isinstance(indices, jax.Array) and isinstance(data, jax.Array)
          and v.is_concrete(indices) and v.is_concrete(data)
          and indices.ndim == 2 and indices.shape[1] == 2
          and data.ndim == 1):
    return
  n = int(matrix.shape[0])  # type: ignore[attr-defined]
  ij = np.asarray(indices, np.int64)
  vals = np.asarray(data, np.float64)
  keys, inverse = np.unique(ij[:, 0] * n + ij[:, 1], return_inverse=True)
  sums = np.zeros(keys.size)
  np.add.at(sums, inverse.reshape(-1), vals)
  mirror = (keys % n) * n + keys // n
  at = np.minimum(np.searchsorted(keys, mirror), max(keys.size - 1, 0))
  found = keys.size > 0
  other = np.where(found & (keys[at] == mirror), sums[at], 0.0) if found \
      else sums
  if not np.isfinite(sums).all():
    k = int(np.flatnonzero(~np.isfinite(sums))[0])
    raise ValueError(f"{name} must be finite; found {sums[k]} at index "
                     f"{divmod(int(keys[k]), n)}.")
  diff = np.abs(sums - other)
  largest = float(np.abs(sums).max()) if sums.size else 0.0
  tol = (1e-5 + 8 * float(jnp.finfo(data.dtype).eps)) * max(
      largest, np.finfo(np.float64).tiny) if jnp.issubdtype(
          data.dtype, jnp.floating) else 0.0
  if diff.size and float(diff.max()) > tol:
    k = int(np.argmax(diff))
    i, j = divmod(int(keys[k]), n)
    raise ValueError(
        f"{name} must be symmetric; largest asymmetry |S[{i}, {j}] - "
        f"S[{j}, {i}]| = {float(diff[k]):.3g} exceeds the tolerance "
        f"{tol:.3g}.")


def as_operator(kernel: object, name: str = "kernel") -> KernelOperator:
  """Any kernel as a ``KernelOperator``: operators as they are, objects with
  a ``shape`` and a ``@`` wrapped, arrays validated (``as_kernel``) and
  wrapped in ``DenseKernel``."""
  if not is_operator(kernel):
    return DenseKernel(v.as_kernel(kernel, name))
  if not isinstance(kernel, KernelOperator):
    shape = tuple(kernel.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
      raise ValueError(f"{name} must be a square operator, got shape {shape}.")
    _check_sparse_symmetric(kernel, name)
    kernel = _ProductKernel(kernel)
  if kernel.num_classes == 0:
    raise ValueError(f"{name} must have at least one class.")
  return kernel

"""Per-class statistics of features: means, between- and within-class
covariances, in one pass, in chunks, or across devices and processes.

Nothing here materialises N x D x D outer products or loops over classes in
Python: class sums are segment sums, the within-class scatter is a D x D
matmul of class-centred features, taken over cache-sized blocks of rows so
that no centred N x D copy is ever written to memory.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _sharding
from spectral_targets import _validation as v
from spectral_targets._jit import jit

#: Bytes of features per block of the within-class product: small enough
#: that a centred block is still in cache when its matmul reads it.
BLOCK_BYTES = 4 * 2**20


def _check_inputs(features: object, labels: object, num_classes: object
                  ) -> tuple[jax.Array, jax.Array, int]:
  C = v.check_int(num_classes, "num_classes", minimum=1)
  Z = num.as_compute(features, "features")
  v.check_rank(Z, 2, "features")
  y = v.check_labels(labels, C, shape=Z.shape[:1],
                     context=f" to match features {Z.shape}")
  return Z, y, C


_Moments = tuple[jax.Array, jax.Array, jax.Array]


def _moments(Z: jax.Array, y: jax.Array, C: int) -> _Moments:
  """Counts, class means and pooled centred scatter of one batch.

  Rows that may be split across devices go through one partitionable
  product (XLA then reduces the per-device sums); otherwise the product is
  blocked.
  """
  rows = None
  if not _sharding.may_split_rows(Z):
    rows = max(1, BLOCK_BYTES // (Z.shape[1] * Z.dtype.itemsize))
  return _batch_moments(Z, y, C, rows)


@jit(static_argnums=(2, 3))
def _batch_moments(Z: jax.Array, y: jax.Array, C: int, block_rows: int | None
                   ) -> _Moments:
  def moments(Z: jax.Array, y: jax.Array) -> _Moments:
    counts = jax.ops.segment_sum(jnp.ones_like(y), y, num_segments=C)
    sums = jax.ops.segment_sum(Z, y, num_segments=C)
    means = sums / jnp.maximum(counts, 1)[:, None].astype(Z.dtype)
    return (counts.astype(jnp.int32), means,
            _centred_scatter(Z, y, means, block_rows))

  return _sharding.replicated_outputs(moments, 3)(Z, y)


def _centred_scatter(Z: jax.Array, y: jax.Array, means: jax.Array,
                     block_rows: int | None) -> jax.Array:
  """Σ_i (z_i − μ_{y_i})(z_i − μ_{y_i})ᵀ, in blocks of ``block_rows`` rows.

  Centring by the class means before the product keeps float32 accurate
  when the means are large against the spread (``ZᵀZ − Σ n_c μ_c μ_cᵀ``
  cancels), and an error in a mean enters only to second order. Centring
  all N rows at once writes a fresh N × D buffer, which costs up to half
  as much as the matmul; a block is centred in cache and multiplied at
  once. ``block_rows=None``: one product, which XLA can partition.
  """

  def product(z: jax.Array, labels: jax.Array) -> jax.Array:
    centred = z - means[labels]
    return centred.T @ centred

  N = Z.shape[0]
  if block_rows is None or N <= block_rows:
    return product(Z, y)
  blocks = N // block_rows
  tail = blocks * block_rows

  def add_block(total: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
    start = k * block_rows
    z = jax.lax.dynamic_slice_in_dim(Z, start, block_rows)
    labels = jax.lax.dynamic_slice_in_dim(y, start, block_rows)
    return total + product(z, labels), None

  total: jax.Array
  total, _ = jax.lax.scan(add_block, product(Z[tail:], y[tail:]),
                          jnp.arange(blocks))
  return total


def _covariances(counts: jax.Array, means: jax.Array, scatter: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """(Σ_B, Σ_W) from counts, class means and the pooled within scatter."""
  n = counts.astype(means.dtype)
  N = jnp.maximum(n.sum(), 1)
  w = n / N
  mu = w @ means
  d = means - mu
  return (d * w[:, None]).T @ d, scatter / N


def class_covariances(features: jax.typing.ArrayLike,
                      labels: jax.typing.ArrayLike,
                      num_classes: int) -> tuple[jax.Array, jax.Array]:
  r"""Between- and within-class covariance of features.

  .. math::
    \Sigma_B = \sum_c \frac{n_c}{N} (\mu_c - \mu)(\mu_c - \mu)^\top, \qquad
    \Sigma_W = \frac{1}{N} \sum_i (z_i - \mu_{y_i})(z_i - \mu_{y_i})^\top

  Vectorised: a segment sum for the class means and a D × D matmul of the
  class-centred features (O(N·D²) time; nothing of size N × D × D, no loop
  over classes). Unless the rows may be split across devices, they are
  centred and multiplied in cache-sized blocks (4 MB of features), so the
  extra memory is O(C·D + D²) plus one block, and the time about 1.1× one
  ``features.T @ features``.
  Centring before the product keeps float32 accurate at large offsets and
  class-mean spreads. :math:`\Sigma_B` has rank at most C − 1; a class with
  no samples has weight 0 in it. Works under ``jit`` with ``num_classes``
  static, with ``features`` sharded along the batch axis (XLA partitions
  the sums), and on global arrays that span several processes.

  Args:
    features: (N, D) features.
    labels: (N,) integer labels in [0, num_classes).
    num_classes: C.

  Returns:
    ``(between, within)``, each (D, D), float32 or wider.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> z = jnp.array([[0., 0.], [2., 0.], [0., 4.], [2., 4.]])
    >>> between, within = st.class_covariances(z, jnp.array([0, 0, 1, 1]), 2)
    >>> between
    Array([[0., 0.],
           [0., 4.]], dtype=float32)
    >>> within
    Array([[1., 0.],
           [0., 0.]], dtype=float32)
  """
  Z, y, C = _check_inputs(features, labels, num_classes)
  return _covariances(*_moments(Z, y, C))


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["counts", "means", "scatter"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class ClassStatistics:
  r"""A mergeable accumulator of per-class feature statistics (a pytree).

  State (the pytree leaves): ``counts``, per-class counts :math:`n_c`
  (int32); ``means``, per-class means :math:`\mu_c` (C × D; 0 for a class
  with no samples); ``scatter``, the
  pooled within-class scatter :math:`M_2 = \sum_i (z_i - \mu_{y_i})(z_i - \mu_{y_i})^\top` (D × D):
  O(C·D + D²) memory, with no per-class D × D blocks (C = 1,000, D = 2,048
  is 24 MB). Means and centred scatter, not raw sums of squares, are kept
  because ``ZᵀZ − N μμᵀ`` cancels catastrophically in float32 when the
  means are large against the spread. Two states merge with the
  parallel-variance formula of Chan, Golub & LeVeque (1979), per class:

  .. math::
    n = n_a + n_b,\quad \delta_c = \mu_{b,c} - \mu_{a,c},\quad
    \mu_c = \mu_{a,c} + \tfrac{n_{b,c}}{n_c}\delta_c,\quad
    M_2 = M_{2,a} + M_{2,b} + \sum_c \tfrac{n_{a,c} n_{b,c}}{n_c}
      \delta_c \delta_c^\top

  (the sum over classes is one matmul). Chunked updates equal the one-shot
  result up to rounding; ``all_reduce`` does the same across devices inside
  ``shard_map``, also when the mesh spans several processes (hosts). Every
  method rejects an argument of the wrong type with a ``TypeError`` naming
  it.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> stats = st.ClassStatistics.zeros(2, 2)
    >>> z = jnp.array([[0., 0.], [2., 0.], [0., 4.], [2., 4.]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> stats = stats.update(z[:2], y[:2]).update(z[2:], y[2:])
    >>> stats.covariances()[1]
    Array([[1., 0.],
           [0., 0.]], dtype=float32)

  References:
    Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for
    computing sample variances", 1979.
  """
  counts: jax.Array
  means: jax.Array
  scatter: jax.Array

  @classmethod
  def zeros(cls, num_classes: int, dim: int,
            dtype: jax.typing.DTypeLike = jnp.float32) -> ClassStatistics:
    """An empty accumulator for C classes of D-dimensional features.

    ``dtype`` is the floating dtype of the statistics; bf16 and f16 are
    raised to float32 (as kernels and ``OnlineKernel`` are): long sums of
    squares in half precision overflow or lose the spread to the mean.
    """
    C = v.check_int(num_classes, "num_classes", minimum=1)
    D = v.check_int(dim, "dim", minimum=1)
    dt = v.compute_dtype(v.floating_dtype(dtype, "dtype"))
    v.check_extent((max(C, D), D), dt, "num_classes and dim")
    return cls(jnp.zeros((C,), jnp.int32), jnp.zeros((C, D), dt),
               jnp.zeros((D, D), dt))

  @property
  def num_classes(self) -> int:
    return self.means.shape[0]

  @property
  def dim(self) -> int:
    return self.means.shape[1]

  def update(self, features: jax.typing.ArrayLike,
             labels: jax.typing.ArrayLike) -> ClassStatistics:
    """A new accumulator with a batch of (N, D) features added."""
    Z, y, _ = _check_inputs(features, labels, self.num_classes)
    if Z.shape[1] != self.dim:
      raise ValueError(f"features must have {self.dim} columns, got shape "
                       f"{Z.shape}.")
    dt = v.compute_dtype(self.means.dtype)
    batch = ClassStatistics(*_moments(Z.astype(dt), y, self.num_classes))
    return self.merge(batch)

  def merge(self, other: ClassStatistics) -> ClassStatistics:
    """The statistics of the union of both data sets (Chan et al.)."""
    if not isinstance(other, ClassStatistics):
      raise TypeError(f"other must be a ClassStatistics, got "
                      f"{type(other).__name__}.")
    if (other.num_classes, other.dim) != (self.num_classes, self.dim):
      raise ValueError(
          f"cannot merge statistics of shape (C={other.num_classes}, "
          f"D={other.dim}) into (C={self.num_classes}, D={self.dim}).")
    return _merge(self, other)

  def all_reduce(self, axis_name: str | tuple[str, ...]) -> ClassStatistics:
    """Merges the statistics of every device along ``axis_name``.

    For use inside ``shard_map``/``pmap`` (also across processes: the mesh
    may span hosts): two ``psum`` calls, one for counts and weighted means, one
    for the scatter about the global class means.
    """
    v.check_axis_name(axis_name)
    n = self.counts.astype(self.means.dtype)
    counts = jax.lax.psum(self.counts, axis_name)
    total = counts.astype(self.means.dtype)
    means = jax.lax.psum(self.means * n[:, None], axis_name) / jnp.maximum(
        total, 1)[:, None]
    d = self.means - means
    scatter = jax.lax.psum(self.scatter + (d * n[:, None]).T @ d, axis_name)
    return ClassStatistics(counts, means, scatter)

  def covariances(self) -> tuple[jax.Array, jax.Array]:
    """``(between, within)`` as in ``class_covariances``."""
    return _covariances(self.counts, self.means, self.scatter)


@jit
def _merge(a: ClassStatistics, b: ClassStatistics) -> ClassStatistics:
  na = a.counts.astype(a.means.dtype)
  nb = b.counts.astype(a.means.dtype)
  n = na + nb
  delta = b.means - a.means
  frac = jnp.where(n > 0, nb / jnp.maximum(n, 1), 0)
  means = a.means + frac[:, None] * delta
  w = jnp.where(n > 0, na * nb / jnp.maximum(n, 1), 0)
  scatter = a.scatter + b.scatter + (delta * w[:, None]).T @ delta
  return ClassStatistics(a.counts + b.counts, means, scatter)

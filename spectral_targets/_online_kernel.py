"""A label kernel learned during training from the model's own predictions
(online label smoothing, Zhang et al. 2021)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _sharding
from spectral_targets import _validation as v
from spectral_targets._jit import jit


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["sums", "counts"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class OnlineKernel:
  r"""Per-class average predicted distributions, accumulated online (a pytree).

  The state of online label smoothing (OLS; Zhang et al., 2021): for each
  class c, the sum :math:`s_c` of the predicted distributions of its
  examples (by default only those the model classifies correctly, as in the
  paper) and their number :math:`n_c`. Over an epoch it gives the per-class
  mean prediction and, symmetrised, a label kernel:

  .. math::
    P_{c\cdot} = \frac{s_c}{\sum_j s_{cj}}
      \;\Big(= \frac{1}{n_c}\sum_{i:\,y_i = c,\ \hat y_i = c} p_i\Big),
    \qquad P_{c\cdot} = e_c \ \text{if}\ n_c = 0, \qquad
    S = \tfrac12\,(P + P^\top).

  ``distributions`` returns P (row-stochastic; row c is OLS's soft label of
  class c), ``kernel`` returns S: symmetric, non-negative, unit row sums
  for P, the same construction as ``from_confusion`` applied to the soft
  confusion counts :math:`s`. A class with no counted example has the
  one-hot row :math:`e_c` (its soft label is its hard label; never NaN).
  The paper's code uses the uniform row instead; pass
  ``correct_only=False`` or a longer window if classes stay empty.

  Functional, like an Optax state: ``init``, ``update`` (inside the jitted
  step), ``merge`` (two partial states), ``all_reduce`` (across devices,
  inside ``shard_map``/``pmap``), ``reset`` (at an epoch boundary). O(C²)
  memory, updated by one segment sum per batch.

  **Online label smoothing** trains epoch t on targets mixing the hard label
  with epoch t − 1's P:

  .. math::
    q_i = (1 - \lambda)\,e_{y_i} + \lambda\,P^{(t-1)}_{y_i\cdot},
    \qquad L_i = -\textstyle\sum_c q_{ic} \log \operatorname{softmax}(z_i)_c,

  λ = 0.5 in the paper; in JAX, ``optax.softmax_cross_entropy(z, (1 - λ) *
  jax.nn.one_hot(y, C) + λ * P[y])``. (``kernel_soft_labels`` builds its
  targets as a softmax of a *symmetric* kernel's rows, which cannot equal
  the rows of a non-symmetric P; ``kernel_soft_labels(y, state.kernel(),
  temperature=τ, alpha=λ)`` is the kernel variant, and ``refresh_codebook``
  turns ``state.kernel()`` into a codebook.) The paper's first epoch has no
  P and trains on λ times the hard loss; an empty state's P = I trains on
  the full hard loss.

  Attributes:
    sums: (C, C) float; row c sums the predicted distributions counted
      for class c.
    counts: (C,) int32; the number of examples counted per class.

  Examples:
    >>> import jax, jax.numpy as jnp, spectral_targets as st
    >>> state = st.OnlineKernel.init(3)
    >>> probs = jnp.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1],
    ...                    [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    >>> labels = jnp.array([0, 0, 1, 1])      # the last one is wrong
    >>> state = jax.jit(st.OnlineKernel.update)(state, probs, labels)
    >>> state.counts
    Array([2, 1, 0], dtype=int32)
    >>> P = state.distributions()             # class 2 unseen: one-hot
    >>> P.tolist()
    [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]]
    >>> state.kernel().tolist()
    [[0.7, 0.2, 0.05], [0.2, 0.7, 0.05], [0.05, 0.05, 1.0]]
    >>> y = jnp.array([1])                    # next epoch's OLS targets
    >>> (0.5 * jax.nn.one_hot(y, 3) + 0.5 * P[y]).tolist()
    [[0.1, 0.85, 0.05]]
    >>> state.reset().counts
    Array([0, 0, 0], dtype=int32)

  References:
    Zhang, Jiang, Hou, Cheng, Cheng & Liu, "Delving Deep into Label
    Smoothing", IEEE Transactions on Image Processing 30, 2021.
  """
  sums: jax.Array
  counts: jax.Array

  @classmethod
  def init(cls, num_classes: int,
           dtype: jax.typing.DTypeLike = jnp.float32) -> OnlineKernel:
    """An empty state for C classes (every row falls back to one-hot)."""
    C = v.check_int(num_classes, "num_classes", minimum=1)
    dt = v.compute_dtype(v.floating_dtype(dtype, "dtype"))
    v.check_extent((C, C), dt, "num_classes")
    return cls(jnp.zeros((C, C), dt), jnp.zeros((C,), jnp.int32))

  @property
  def num_classes(self) -> int:
    return self.sums.shape[0]

  def update(self, probs: jax.typing.ArrayLike,
             labels: jax.typing.ArrayLike, *,
             where: jax.typing.ArrayLike | None = None,
             correct_only: bool | jax.typing.ArrayLike = True
             ) -> OnlineKernel:
    r"""A new state with a batch of predictions added.

    .. math::
      s_c \mathrel{+}= \sum_{i:\,y_i = c,\ m_i} p_i, \qquad
      n_c \mathrel{+}= |\{i: y_i = c,\ m_i\}|,

    where :math:`m_i` is ``where[i]`` and, with ``correct_only``, also
    :math:`\arg\max_c p_{ic} = y_i` (the first maximum on ties). No gradient
    flows into the state. A row of ``probs`` that is not finite is counted
    whatever its argmax, so NaN reaches the state rather than vanishing.

    Args:
      probs: (N, C) predicted distributions (e.g. ``jax.nn.softmax(logits)``);
        bf16/f16 are accumulated in the state's float32. When concrete, must
        be finite and non-negative, with rows summing to 1 (within 1e-2 plus
        4 ulps of the input's dtype).
      labels: (N,) integer labels in [0, C).
      where: (N,) boolean mask of the examples to count (e.g. padding out).
      correct_only: count only correctly classified examples, as OLS does; a
        bool, or a traced boolean scalar.

    Returns:
      The updated state.
    """
    C = self.num_classes
    p = num.as_compute(probs, "probs")
    v.check_shape(p, (None, C), "probs")
    y = v.check_labels(labels, C, shape=p.shape[:1],
                       context=f" to match probs {p.shape}")
    if where is None:
      keep = jnp.ones(y.shape, bool)
    else:
      keep = v.as_array(where, "where")
      if keep.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask, got {keep.dtype}.")
      v.check_shape(keep, y.shape, "where", " (one entry per example)")
    only = v.check_bool(correct_only, "correct_only", traced=True)
    v.check_distributions(p, "probs", jnp.result_type(probs))
    sums, counts = _accumulate(p.astype(self.sums.dtype), y, keep,
                               jnp.asarray(only), C)
    return OnlineKernel(self.sums + sums, self.counts + counts)

  def merge(self, other: OnlineKernel) -> OnlineKernel:
    """The state of both streams together (sums and counts add)."""
    if not isinstance(other, OnlineKernel):
      raise TypeError(f"other must be an OnlineKernel, got "
                      f"{type(other).__name__}.")
    if other.num_classes != self.num_classes:
      raise ValueError(f"cannot merge a state of {other.num_classes} classes "
                       f"into one of {self.num_classes}.")
    return OnlineKernel(self.sums + other.sums.astype(self.sums.dtype),
                        self.counts + other.counts)

  def all_reduce(self, axis_name: str | tuple[str, ...]) -> OnlineKernel:
    """Merges the states of every device along ``axis_name`` (two ``psum``s;
    inside ``shard_map``/``pmap``)."""
    v.check_axis_name(axis_name)
    return OnlineKernel(jax.lax.psum(self.sums, axis_name),
                        jax.lax.psum(self.counts, axis_name))

  def reset(self) -> OnlineKernel:
    """An empty state of the same shape, for the next epoch."""
    return OnlineKernel(jnp.zeros_like(self.sums), jnp.zeros_like(self.counts))

  def distributions(self) -> jax.Array:
    """(C, C) row-stochastic P: row c the mean counted prediction of class c
    (OLS's soft label), or e_c for a class with no counted example."""
    return _distributions(self.sums, self.counts)

  def kernel(self) -> jax.Array:
    """(C, C) symmetric label kernel S = (P + Pᵀ)/2."""
    P = self.distributions()
    return (P + P.T) / 2


@jit(static_argnums=4)
def _accumulate(p: jax.Array, y: jax.Array, keep: jax.Array,
                correct_only: jax.Array, C: int
                ) -> tuple[jax.Array, jax.Array]:
  p = jax.lax.stop_gradient(p)
  counted = jnp.argmax(p, axis=1) == y
  not_finite = ~jnp.all(jnp.isfinite(p), axis=1)
  keep = keep & (counted | ~correct_only | not_finite)

  def sums(p: jax.Array, y: jax.Array, keep: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    s = jax.ops.segment_sum(jnp.where(keep[:, None], p, 0), y,
                            num_segments=C)
    n = jax.ops.segment_sum(keep.astype(jnp.int32), y, num_segments=C)
    return s, n

  return _sharding.replicated_outputs(sums, 2)(p, y, keep)


@jit
def _distributions(sums: jax.Array, counts: jax.Array) -> jax.Array:
  empty = counts == 0
  total = jnp.sum(sums, axis=1, keepdims=True)
  P = sums / jnp.where(empty[:, None], 1, total)
  return jnp.where(empty[:, None], jnp.eye(sums.shape[0], dtype=sums.dtype),
                   P)

"""Soft training targets from the rows of a label kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v


def kernel_soft_labels(labels: jax.typing.ArrayLike,
                       kernel: jax.typing.ArrayLike, *,
                       temperature: jax.typing.ArrayLike = 1.0,
                       alpha: jax.typing.ArrayLike = 1.0,
                       axis: int = -1,
                       where: jax.typing.ArrayLike | None = None
                       ) -> jax.Array:
  r"""Target distributions from the kernel row of each label.

  .. math::
    q = (1 - \alpha)\,e_y + \alpha\,\operatorname{softmax}(S_{y\cdot} / \tau)

  A drop-in generalisation of ``optax.smooth_labels``: feed ``q`` to
  ``optax.softmax_cross_entropy``. Special cases:

  * a constant kernel (e.g. ``jnp.zeros((C, C))``) gives uniform rows, so
    ``alpha`` reproduces ``optax.smooth_labels(one_hot, alpha)``;
  * the hierarchy soft labels of Bertinetto et al. (2020),
    softmax(−β·h(lca)/h(root)), are ``kernel_soft_labels(y,
    from_hierarchy(...), temperature=1/β)`` (the kernel is 1 − h/h(root); the
    constant cancels in the softmax);
  * τ → 0 gives one-hot targets when S has its row maximum on the diagonal.

  Args:
    labels: (...) integer labels in [0, C).
    kernel: (C, C) label kernel (any real symmetric matrix).
    temperature: τ > 0.
    alpha: weight of the kernel part, in [0, 1].
    axis: the class axis of the output.
    where: (..., C) boolean mask of the classes to include; masked classes
      get probability 0 (a fully masked row is all zeros).

  Returns:
    (..., C) distributions (with the class axis at ``axis``).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> q = st.kernel_soft_labels(jnp.array([0]), st.graded(3, 1.0),
    ...                           temperature=0.5)
    >>> q.round(2).tolist()
    [[0.7..., 0.2..., 0.1...]]

  References:
    Bertinetto et al., "Making Better Mistakes: Leveraging Class Hierarchies
    with Deep Networks", CVPR 2020.
  """
  S = num.as_compute(v.as_float_array(kernel, "kernel"), "kernel")
  if S.ndim != 2 or S.shape[0] != S.shape[1]:
    raise ValueError(f"kernel must be a square matrix, got shape {S.shape}.")
  C = S.shape[0]
  y = v.check_labels(labels, C)
  num.check_temperature(temperature)
  if v.is_concrete(alpha) and not 0 <= float(alpha) <= 1:
    raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
  rows = S[y] / temperature
  mask = None
  if where is not None:
    where = jnp.asarray(where)
    if where.ndim == rows.ndim:
      where = jnp.moveaxis(where, axis, -1)
    mask = num.class_mask(where, rows.shape, -1)
  soft = jnp.exp(num.log_softmax(rows, -1, mask))
  if mask is not None:
    soft = jnp.where(mask, soft, 0)
  hard = jax.nn.one_hot(y, C, dtype=soft.dtype)
  if mask is not None:
    hard = jnp.where(mask, hard, 0)
  q = (1 - alpha) * hard + alpha * soft
  return jnp.moveaxis(q, -1, axis)

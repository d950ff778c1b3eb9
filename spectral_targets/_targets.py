"""Soft training targets from the rows of a label kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v


def kernel_soft_labels(labels: jax.typing.ArrayLike,
                       kernel: jax.typing.ArrayLike, *,
                       alpha: jax.typing.ArrayLike,
                       temperature: jax.typing.ArrayLike = 1.0,
                       axis: int = -1,
                       where: jax.typing.ArrayLike | None = None
                       ) -> jax.Array:
  r"""Target distributions from the kernel row of each label.

  .. math::
    q = (1 - \alpha)\,e_y + \alpha\,\operatorname{softmax}(S_{y\cdot} / \tau)

  A drop-in generalisation of ``optax.smooth_labels``, with ``alpha``
  meaning the same: the mass moved off the one-hot target (required, as it
  is there; a small α gives mostly one-hot targets). Feed ``q`` to
  ``optax.softmax_cross_entropy``. Special cases:

  * a constant kernel (e.g. ``jnp.zeros((C, C))``) gives uniform rows, so
    ``alpha`` reproduces ``optax.smooth_labels(one_hot, alpha)``;
  * the hierarchy soft labels of Bertinetto et al. (2020),
    softmax(−β·h(lca)/h(root)), are ``kernel_soft_labels(y,
    from_hierarchy(...), alpha=1, temperature=1/β)`` (the kernel is
    1 − h/h(root); the constant cancels in the softmax);
  * the soft ordinal labels of SORD (Díaz & Marathe, 2019),
    softmax(−φ(i, y)) with φ a distance between ranks, are
    ``kernel_soft_labels(y, -phi, alpha=1)`` with ``phi`` the (C, C) matrix
    φ(i, j), e.g. ``abs(i[:, None] - i[None, :])`` for ``i = arange(C)``
    (``temperature`` τ divides φ; a squared distance is
    ``phi ** 2``);
  * τ → 0 gives one-hot targets when S has its row maximum on the diagonal.

  **Masks.** Masked classes get probability 0 and the kernel part is
  renormalised over the included ones (a fully masked row is all zeros).
  If ``where`` masks out the label's own class, the one-hot part has no
  class to sit on; the row is then the kernel part alone,
  softmax(S_y/τ) over the included classes (a distribution, as every row
  with an included class is). This is the distribution over the other
  classes that NCKD and dark-knowledge targets use, and unlike an error it
  means the same under ``jit``.

  Args:
    labels: (...) integer labels in [0, C), one per example: a trailing
      axis of size 1 (a column of labels, which would broadcast against
      (N, C) logits into an (N, N) loss) raises ``ValueError``.
    kernel: (C, C) label kernel (real, finite, symmetric; checked when
      concrete; bf16/f16 computed in float32).
    alpha: weight of the kernel part, in [0, 1].
    temperature: τ > 0. A bad number raises ``ValueError``; a traced τ
      cannot raise, and one that is not positive and finite gives NaN: to
      have it checked under ``jit``, pass a Python number (closed over, or
      ``jax.jit(f, static_argnames="temperature")``).
    axis: the class axis of the output.
    where: boolean mask of the classes to include, read as in
      ``distillation_loss``: the output's shape (class axis at ``axis``),
      the batch shape (...), or (C,).

  Returns:
    (..., C) distributions (with the class axis at ``axis``).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> q = st.kernel_soft_labels(jnp.array([0]), st.graded(3, 1.0),
    ...                           alpha=1.0, temperature=0.5)
    >>> q.round(2).tolist()
    [[0.7..., 0.2..., 0.1...]]
    >>> st.kernel_soft_labels(jnp.array([0]), st.graded(3, 1.0),
    ...                       alpha=0.1).round(3)  # mostly one-hot
    Array([[0.952, 0.028, 0.02 ]], dtype=float32)

  References:
    Bertinetto et al., "Making Better Mistakes: Leveraging Class Hierarchies
    with Deep Networks", CVPR 2020.

    Díaz & Marathe, "Soft Labels for Ordinal Regression", CVPR 2019.
  """
  S = v.as_kernel(kernel)
  C = S.shape[0]
  y = v.check_labels(labels, C)  # shape (...): no trailing axis of size 1
  temperature = num.temperature(temperature)
  a = v.real_scalar(alpha, "alpha")
  if a is not None and not 0 <= a <= 1:
    raise ValueError(f"alpha must be a scalar in [0, 1], got {alpha}.")
  alpha = v.scalar_option(alpha, "alpha")
  rows = num.tempered(S[y], temperature, -1)
  mask = num.class_mask(where, jnp.moveaxis(rows, -1, axis).shape, axis)
  if mask is not None:
    mask = jnp.moveaxis(mask, axis, -1)
  soft = jnp.exp(num.log_softmax(rows, -1, mask))
  hard = jax.nn.one_hot(y, C, dtype=soft.dtype)
  if mask is not None:
    soft = jnp.where(mask, soft, 0)
    # A masked label leaves only the kernel part (renormalised: weight 1).
    kept = jnp.any(mask & (hard > 0), axis=-1, keepdims=True)
    alpha = jnp.where(kept, alpha, 1)
    hard = jnp.where(mask, hard, 0)
  q = (1 - alpha) * hard + alpha * soft
  return jnp.moveaxis(q, -1, axis)

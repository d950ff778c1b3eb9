"""Label kernels: C x C symmetric matrices of how similar class i is to class j.

Every function here builds a kernel; nothing here diagonalises one (that is
``_spectral``) or trains with one (the losses).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v


def flat(num_classes: int) -> jax.Array:
  r"""The flat kernel: every class equally unlike every other.

  .. math::
    S = I - \tfrac{1}{C} \mathbf{1}\mathbf{1}^\top

  Its eigenvalue 1 has multiplicity :math:`C - 1` (and 0 once, on
  :math:`\mathbf{1}`), so ``spectral_codebook(flat(C), C - 1)`` is the regular
  simplex.

  Args:
    num_classes: C, the number of classes (>= 1).

  Returns:
    The (C, C) kernel, float32 (float64 under ``jax_enable_x64``).

  Examples:
    >>> import numpy as np, spectral_targets as st
    >>> np.asarray(st.flat(3)).round(3)
    array([[ 0.667, -0.333, -0.333],
           [-0.333,  0.667, -0.333],
           [-0.333, -0.333,  0.667]], dtype=float32)
  """
  C = v.check_int(num_classes, "num_classes", minimum=1)
  return jnp.asarray(np.eye(C) - 1.0 / C, dtype=float)


def blocks(groups: Sequence[Hashable] | jax.typing.ArrayLike) -> jax.Array:
  r"""Superclass blocks: 1 where two classes share a group, 0 elsewhere.

  .. math::
    S_{ij} = [g_i = g_j]

  Args:
    groups: length-C sequence (list, tuple, range or 1-D array) of group
      ids, any hashable values, one per class. A string is not taken for a
      sequence of one-character ids (pass ``list("aab")`` for that), nor is
      a number for a count of classes: both raise ``TypeError``.

  Returns:
    The (C, C) kernel.

  Examples:
    >>> import spectral_targets as st
    >>> st.blocks([0, 0, 1])
    Array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 0., 1.]], dtype=float32)
  """
  ids_given = _group_ids(groups)
  if not ids_given:
    raise ValueError("groups must name the group of at least one class.")
  ids = {g: k for k, g in enumerate(dict.fromkeys(ids_given))}
  codes = np.array([ids[g] for g in ids_given])
  return jnp.asarray(codes[:, None] == codes[None, :], dtype=float)


def _group_ids(groups: object) -> list[Hashable]:
  if isinstance(groups, (str, bytes)):
    raise TypeError(
        f"groups must be a sequence of group ids, one per class, got the "
        f"string {groups!r}; pass list({groups!r}) for one class per "
        "character.")
  if isinstance(groups, (np.ndarray, jax.Array)):
    if groups.ndim != 1:
      raise ValueError(f"groups must be one-dimensional (one id per class), "
                       f"got shape {groups.shape}.")
    ids: list[Hashable] = np.asarray(groups).tolist()
    return ids
  if not isinstance(groups, (Sequence, range)) or groups is None:
    raise TypeError(f"groups must be a sequence of group ids, one per "
                    f"class, got {type(groups).__name__} {groups!r}.")
  listed = list(groups)
  for i, g in enumerate(listed):
    try:
      hash(g)
    except TypeError:
      raise TypeError(f"groups must hold hashable group ids, one per class; "
                      f"groups[{i}] is {g!r} ({type(g).__name__}).") from None
  return listed


def graded(num_classes: int, width: float) -> jax.Array:
  r"""Ordinal similarity that falls off with the distance between classes.

  .. math::
    S_{ij} = \exp\!\big(-((i - j)/w)^2\big)

  Its codebook at small d is the "horseshoe" of classical MDS.

  Args:
    num_classes: C (>= 1).
    width: w > 0, in class steps.

  Returns:
    The (C, C) kernel.

  Examples:
    >>> import numpy as np, spectral_targets as st
    >>> np.asarray(st.graded(3, 1.0)).round(3)
    array([[1.   , 0.368, 0.018],
           [0.368, 1.   , 0.368],
           [0.018, 0.368, 1.   ]], dtype=float32)
  """
  C = v.check_int(num_classes, "num_classes", minimum=1)
  v.check_positive(width, "width")
  i = np.arange(C, dtype=np.float64)
  return jnp.asarray(np.exp(-(((i[:, None] - i[None, :]) / width) ** 2)),
                     dtype=float)


def double_center(kernel: jax.typing.ArrayLike) -> jax.Array:
  r"""Double-centres a kernel, as classical MDS does.

  .. math::
    B = J S J, \qquad J = I - \tfrac{1}{C}\mathbf{1}\mathbf{1}^\top

  This is not ``S - mean(S)`` (which the source blog uses): subtracting the
  grand mean does not remove the row and column means and can leave a
  negative eigenvalue that :math:`JSJ` does not have.

  Args:
    kernel: (C, C) symmetric kernel.

  Returns:
    The (C, C) centred kernel; its rows and columns sum to 0.

  Examples:
    >>> import spectral_targets as st
    >>> B = st.double_center(st.graded(5, 2.0))
    >>> bool(abs(B.sum(axis=0)).max() < 1e-6)
    True
  """
  return double_centered(v.as_kernel(kernel))


def double_centered(S: jax.Array) -> jax.Array:
  """J S J without validation (for callers that validated already)."""
  return (S - S.mean(axis=0, keepdims=True) - S.mean(axis=1, keepdims=True)
          + S.mean())


def from_distances(distances: jax.typing.ArrayLike, *,
                   scale: float | None = None) -> jax.Array:
  r"""Similarity from a class distance matrix, by an exponential fall-off.

  .. math::
    S_{ij} = \exp(-D_{ij} / s)

  ``s`` defaults to the mean off-diagonal distance, so the kernel does not
  depend on the units of D. (For the linear map 1 − D/max D, build it
  directly: it need not be positive semi-definite.)

  Args:
    distances: (C, C) symmetric, finite, non-negative, zero diagonal.
    scale: s > 0.

  Returns:
    The (C, C) kernel, with unit diagonal.

  Examples:
    >>> import spectral_targets as st
    >>> st.from_distances([[0., 2.], [2., 0.]], scale=2.0).round(3)
    Array([[1.   , 0.368],
           [0.368, 1.   ]], dtype=float32)
  """
  D = v.as_kernel(distances, "distances")
  if v.is_concrete(D):
    if bool(jnp.any(D < 0)):
      raise ValueError("distances must be non-negative.")
    if bool(jnp.any(jnp.diag(D) != 0)):
      raise ValueError("distances must have a zero diagonal.")
  s: jax.typing.ArrayLike
  if scale is None:
    C = D.shape[0]
    s = D.sum() / max(C * (C - 1), 1)
    if v.is_concrete(s) and not float(s) > 0:
      raise ValueError("distances are all zero; pass scale explicitly.")
  else:
    v.check_positive(scale, "scale")
    s = scale
  return jnp.exp(-D / s)


def from_confusion(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Similarity from confusion counts: row-normalised, then symmetrised.

  .. math::
    P_{ij} = M_{ij} / \textstyle\sum_k M_{ik}, \qquad S = (P + P^\top)/2

  Args:
    confusion: (C, C) non-negative counts; ``M[i, j]`` is how often true
      class i was predicted as j. Need not be symmetric.

  Returns:
    The (C, C) symmetric kernel.

  Examples:
    >>> import spectral_targets as st
    >>> st.from_confusion([[8, 2], [0, 10]])
    Array([[0.8, 0.1],
           [0.1, 1. ]], dtype=float32)
  """
  M = v.as_float_array(confusion, "confusion")
  if M.ndim != 2 or M.shape[0] != M.shape[1]:
    raise ValueError(f"confusion must be a square matrix, got shape "
                     f"{M.shape}.")
  if M.shape[0] == 0:
    raise ValueError(f"confusion must have at least one class, got shape "
                     f"{M.shape}.")
  v.check_finite(M, "confusion")
  rows = M.sum(axis=1, keepdims=True)
  if v.is_concrete(M):
    if bool(jnp.any(M < 0)):
      raise ValueError("confusion must hold non-negative counts.")
    empty = np.flatnonzero(np.asarray(rows)[:, 0] == 0)
    if empty.size:
      raise ValueError(f"confusion has no counts for class(es) "
                       f"{empty.tolist()}: their rows cannot be normalised.")
  P = M / rows
  return (P + P.T) / 2


def from_class_means(features: jax.typing.ArrayLike,
                     labels: jax.typing.ArrayLike,
                     num_classes: int) -> jax.Array:
  r"""Cosine similarity of class means.

  .. math::
    \mu_c = \tfrac{1}{n_c}\textstyle\sum_{i: y_i = c} z_i, \qquad
    S_{cd} = \frac{\mu_c^\top \mu_d}{\lVert\mu_c\rVert\,\lVert\mu_d\rVert}

  Works under ``jit`` with ``num_classes`` static. A class with no samples
  (or a zero mean) raises ``ValueError`` when the inputs are concrete, and
  so does a class whose features hold NaN or inf (the error names the
  classes); under tracing such rows are 0 and NaN respectively. The
  cosines are scale-free in practice too: features are rescaled by their
  largest magnitude before anything is summed or squared, so features of
  size 1e-30 or 1e30 give the same kernel as features of size 1.

  Args:
    features: (N, D) features.
    labels: (N,) integer labels in [0, num_classes).
    num_classes: C.

  Returns:
    The (C, C) kernel, unit diagonal.

  Examples:
    >>> import spectral_targets as st
    >>> z = [[1., 0.], [1., 0.2], [0., 1.]]
    >>> st.from_class_means(z, [0, 0, 1], 2).round(3)
    Array([[1. , 0.1],
           [0.1, 1. ]], dtype=float32)
  """
  C = v.check_int(num_classes, "num_classes", minimum=1)
  Z = v.as_float_array(features, "features")
  Z = Z.astype(v.compute_dtype(Z.dtype))
  v.check_rank(Z, 2, "features")
  y = v.check_labels(labels, C, shape=Z.shape[:1],
                     context=f" to match features {Z.shape}")
  Z = num.rescale(Z)  # the cosines do not see the scale; sums cannot overflow
  sums = jax.ops.segment_sum(Z, y, num_segments=C)
  if v.is_concrete(sums):
    host = np.asarray(sums)
    bad = np.flatnonzero(~np.isfinite(host).all(axis=1))
    if bad.size:
      raise ValueError(f"features of class(es) {bad.tolist()} are not "
                       "finite (NaN or inf); their means are undefined.")
    bad = np.flatnonzero(~host.any(axis=1))
    if bad.size:
      raise ValueError(f"class(es) {bad.tolist()} have no samples or a zero "
                       "mean; their cosine similarity is undefined.")
  unit = num.unit_rows(sums)  # the mean's direction: counts cancel
  return unit @ unit.T

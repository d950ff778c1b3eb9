"""Refreshing a fixed head's codebook from a new kernel without a jump."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax

from spectral_targets import _blas
from spectral_targets import _codebook
from spectral_targets import _operators
from spectral_targets import _spectral
from spectral_targets import _validation as v

if TYPE_CHECKING:  # typing.Unpack is new in Python 3.11
  from typing_extensions import Unpack


def refresh_codebook(old_codes: jax.typing.ArrayLike,
                     kernel: _operators.KernelLike,
                     **options: Unpack[_codebook.CodebookOptions]
                     ) -> jax.Array:
  r"""The codebook of a new kernel, rotated onto the codes in use.

  .. math::
    X = \mathrm{spectral\_codebook}(S, d), \qquad
    R = \arg\min_{R^\top R = I}\lVert X R - X_\mathrm{old}\rVert_F
      = U V^\top \ \ (X^\top X_\mathrm{old} = U \Sigma V^\top), \qquad
    X_\mathrm{new} = X R.

  A codebook is defined only up to an orthogonal map (its Gram matrix
  :math:`XX^\top` is what the kernel fixes), so between epochs a codebook
  head can follow a changing kernel (e.g. ``OnlineKernel.kernel()``) by
  taking, among all the new kernel's codebooks, the one closest to the old
  codes: the orthogonal Procrustes solution over rotations and reflections
  (sign flips included, no permutation of classes). The Gram matrix is the
  new kernel's exactly, and a feature's logits
  :math:`s\,\cos(z, x_c)` move only as much as the kernel itself moved; with
  an unchanged kernel the old codes come back (up to rounding).

  Runs eagerly, like ``spectral_codebook``: refresh between epochs, outside
  ``jit``, then hand the new codes to the head (e.g. assign them to the
  ``nnx.CodebookHead``'s codebook variable).

  Args:
    old_codes: (C, d) the codes the head uses now; d is kept.
    kernel: (C, C) symmetric kernel or ``KernelOperator``, the new kernel.
    **options: keyword options of ``spectral_codebook`` (``normalize``,
      ``method``, ``seed``, ...), applied to the new codebook.

  Returns:
    (C, d) new codes, in the frame of the old ones.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> S0 = st.double_center(st.graded(6, 1.0))
    >>> old = st.spectral_codebook(S0, 3)
    >>> S1 = st.double_center(st.graded(6, 1.3))   # the kernel moved a bit
    >>> new = st.refresh_codebook(old, S1)
    >>> float(jnp.abs(new @ new.T - st.spectral_codebook(S1, 3) @
    ...               st.spectral_codebook(S1, 3).T).max()) < 1e-5
    True
    >>> as_is = st.spectral_codebook(S1, 3)           # eigh's own frame
    >>> bool(jnp.linalg.norm(new - old) <= jnp.linalg.norm(as_is - old))
    True

  References:
    Schönemann, "A generalized solution of the orthogonal Procrustes
    problem", Psychometrika 31, 1966.
  """
  if "d" in options:
    raise TypeError("refresh_codebook takes no d: the code dimension is "
                    "old_codes.shape[1], which a fixed head cannot change.")
  old = v.as_float_array(old_codes, "old_codes")
  v.check_rank(old, 2, "old_codes")
  if not v.is_concrete(old):
    raise TypeError("refresh_codebook runs eagerly (it builds a codebook); "
                    "call it outside jit, between epochs.")
  v.check_finite(old, "old_codes")
  C, d = old.shape
  op = _operators.as_operator(kernel)
  if op.num_classes != C:
    raise ValueError(f"kernel has {op.num_classes} classes but old_codes has "
                     f"{C} rows (shape {old.shape}).")
  if not 1 <= d <= C:
    raise ValueError(f"old_codes must have 1 <= d <= C columns, got shape "
                     f"{old.shape}.")
  codes = _codebook.spectral_codebook(op, d, **options)
  # JAX's SVD calls OpenBLAS, whose threads fight XLA's on a small machine
  # (a 99 x 99 Procrustes: 0.5 s on 2 busy cores, ~5 ms on one thread):
  # one BLAS thread, as for the codebook, and the result awaited inside.
  with _blas.one_blas_thread():
    rotation = _spectral.procrustes(codes, old.astype(codes.dtype))
    rotation.block_until_ready()
  return codes @ rotation

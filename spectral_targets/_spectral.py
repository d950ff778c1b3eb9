"""The spectrum of a label kernel and the identities built on it."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _validation as v
from spectral_targets._kernels import centered as double_centered


def eigenmodes(kernel: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""Eigenvalues (descending) and eigenvectors of a symmetric kernel.

  .. math::
    S = U \Lambda U^\top, \qquad \lambda_1 \ge \dots \ge \lambda_C

  Args:
    kernel: (C, C) symmetric kernel.

  Returns:
    ``(eigenvalues, eigenvectors)``: shapes (C,) and (C, C); column k of
    ``eigenvectors`` belongs to ``eigenvalues[k]``.

  Examples:
    >>> import spectral_targets as st
    >>> lam, U = st.eigenmodes(st.flat(3))
    >>> lam.round(4)
    Array([1., 1., 0.], dtype=float32)
  """
  return _eigenmodes(v.as_kernel(kernel))


@jax.jit
def _eigenmodes(S):
  lam, U = jnp.linalg.eigh(S)
  return lam[::-1], U[:, ::-1]


def spectrum(kernel: jax.typing.ArrayLike) -> jax.Array:
  r"""Eigenvalues of a symmetric kernel, in descending order.

  Use ``eigenmodes`` for the eigenvectors too.

  Args:
    kernel: (C, C) symmetric kernel.

  Returns:
    (C,) eigenvalues, :math:`\lambda_1 \ge \dots \ge \lambda_C`.

  Examples:
    >>> import spectral_targets as st
    >>> st.spectrum(st.blocks([0, 0, 1])).round(4)
    Array([2., 1., 0.], dtype=float32)
  """
  return _spectrum(v.as_kernel(kernel))


@jax.jit
def _spectrum(S):
  return jnp.linalg.eigvalsh(S)[::-1]


def gram_error(kernel: jax.typing.ArrayLike, d: int) -> jax.Array:
  r"""Relative Frobenius error of the best rank-d PSD approximation.

  With :math:`\hat S_d = U_d \max(\Lambda_d, 0) U_d^\top` (the Gram matrix of
  the unnormalised ``spectral_codebook(S, d)``),

  .. math::
    \frac{\lVert S - \hat S_d\rVert_F}{\lVert S\rVert_F}
    = \sqrt{\frac{\sum_{i>d}\lambda_i^2 + \sum_{i\le d,\,\lambda_i<0}
      \lambda_i^2}{\sum_i \lambda_i^2}}.

  It is non-increasing in d and reaches 0 at d = C only for PSD S. The zero
  kernel has error 0. Works under ``jit`` with ``d`` static.

  Args:
    kernel: (C, C) symmetric kernel.
    d: number of modes kept, 1 <= d <= C.

  Returns:
    Scalar in [0, 1].

  Examples:
    >>> import spectral_targets as st
    >>> float(st.gram_error(st.flat(4), 3)) < 1e-6
    True
  """
  S = v.as_kernel(kernel)
  d = v.check_int(d, "d", minimum=1, maximum=S.shape[0])
  return _gram_error(S, d)


@jax.jit
def _gram_error(S, d):
  # d is traced: one compilation per kernel shape, not per (shape, d).
  lam = jnp.linalg.eigvalsh(S)[::-1]
  sq = lam**2
  kept = jnp.arange(lam.shape[0]) < d
  lost = jnp.where(kept & (lam >= 0), 0, sq).sum()
  total = sq.sum()
  return jnp.sqrt(lost / jnp.where(total > 0, total, 1))


def alignment(a: jax.typing.ArrayLike, b: jax.typing.ArrayLike, *,
              centered: bool = False) -> jax.Array:
  r"""Kernel-target alignment (Cristianini et al., 2002), or CKA.

  .. math::
    A(K, L) = \frac{\langle K, L\rangle_F}{\lVert K\rVert_F\,\lVert L\rVert_F}

  With ``centered=True`` both kernels are double-centred first
  (:math:`K \to JKJ`), which makes the score invariant to adding constants:
  centred kernel alignment (Cortes et al., 2012; CKA of Kornblith et al.,
  2019, for linear kernels). Symmetric in its arguments, invariant to
  positive scaling, in [-1, 1] (in [0, 1] for PSD kernels). A kernel with
  zero norm raises ``ValueError`` when concrete; under ``jit`` it gives NaN.

  Args:
    a: (C, C) symmetric kernel.
    b: (C, C) symmetric kernel.
    centered: double-centre both first.

  Returns:
    Scalar alignment.

  Examples:
    >>> import spectral_targets as st
    >>> float(st.alignment(st.graded(5, 2.), st.graded(5, 2.)))
    1.0
  """
  K = v.as_kernel(a, "a")
  L = v.as_kernel(b, "b")
  chex.assert_equal_shape((K, L), custom_message="a and b must have the "
                          "same shape.", exception_type=ValueError)
  nk, nl, inner = _alignment_terms(K, L, bool(centered))
  if v.is_concrete(nk) and v.is_concrete(nl):
    for name, norm in (("a", nk), ("b", nl)):
      if float(norm) == 0:
        raise ValueError(f"{name} has zero norm"
                         f"{' after centring' if centered else ''}; its "
                         "alignment is undefined.")
  return inner / (nk * nl)


@functools.partial(jax.jit, static_argnums=2)
def _alignment_terms(K, L, centered):
  if centered:
    K, L = double_centered(K), double_centered(L)
  return jnp.linalg.norm(K), jnp.linalg.norm(L), jnp.vdot(K, L)


def procrustes(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
  r"""The orthogonal map that best carries x onto y (orthogonal Procrustes).

  .. math::
    R = \arg\min_{R^\top R = I} \lVert x R - y\rVert_F = U V^\top, \qquad
    x^\top y = U \Sigma V^\top

  Args:
    x: (n, d) points.
    y: (n, d) points.

  Returns:
    (d, d) orthogonal matrix R; ``x @ R`` is x aligned to y.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> x = jnp.array([[1., 0.], [0., 1.]])
    >>> st.procrustes(x, x[:, ::-1]).round(3)
    Array([[0., 1.],
           [1., 0.]], dtype=float32)
  """
  X = v.as_float_array(x, "x")
  Y = v.as_float_array(y, "y")
  v.check_rank(X, 2, "x")
  chex.assert_equal_shape((X, Y), custom_message="x and y must have the same "
                          "shape.", exception_type=ValueError)
  return _procrustes(X, Y)


@jax.jit
def _procrustes(X, Y):
  u, _, vt = jnp.linalg.svd(X.T @ Y, full_matrices=False)
  return u @ vt


def coherence(codes: jax.typing.ArrayLike) -> jax.Array:
  r"""Largest absolute cosine between two distinct codes.

  .. math::
    \mu = \max_{i \ne j} \frac{|x_i^\top x_j|}{\lVert x_i\rVert\,\lVert x_j\rVert}

  Never below ``welch_bound(C, d)``; the regular simplex meets that bound.

  Args:
    codes: (C, d) codes, C >= 2, no zero rows.

  Returns:
    Scalar in [0, 1].

  Examples:
    >>> import spectral_targets as st
    >>> round(float(st.coherence(st.spectral_codebook(st.flat(4), 3))), 4)
    0.3333
  """
  X = v.as_float_array(codes, "codes")
  v.check_rank(X, 2, "codes")
  if X.shape[0] < 2:
    raise ValueError(f"codes must hold at least 2 rows, got shape {X.shape}.")
  norms = jnp.linalg.norm(X, axis=1)
  if v.is_concrete(norms):
    zero = np.flatnonzero(np.asarray(norms) == 0)
    if zero.size:
      raise ValueError(f"codes has zero rows {zero.tolist()}; their cosine "
                       "is undefined.")
  return _coherence(X, norms)


@jax.jit
def _coherence(X, norms):
  U = X / norms[:, None]
  G = jnp.abs(U @ U.T)
  return jnp.max(jnp.where(jnp.eye(X.shape[0], dtype=bool), -jnp.inf, G))


def welch_bound(num_classes: int, d: int) -> float:
  r"""Welch's lower bound on the coherence of C unit vectors in d dimensions.

  .. math::
    \mu \ge \sqrt{\frac{C - d}{d\,(C - 1)}} \quad (C > d), \qquad 0 \text{ otherwise.}

  Args:
    num_classes: C >= 2.
    d: dimension >= 1.

  Returns:
    The bound, a float.

  Examples:
    >>> import spectral_targets as st
    >>> st.welch_bound(4, 3)  # the regular tetrahedron: cos = -1/3
    0.3333333333333333
  """
  C = v.check_int(num_classes, "num_classes", minimum=2)
  d = v.check_int(d, "d", minimum=1)
  return math.sqrt(max(C - d, 0) / (d * (C - 1)))

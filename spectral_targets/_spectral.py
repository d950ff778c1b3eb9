"""The spectrum of a label kernel and the identities built on it."""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _eigensolvers
from spectral_targets import _numerics as num
from spectral_targets import _operators
from spectral_targets import _validation as v
from spectral_targets._jit import jit
from spectral_targets._kernels import double_centered


def _dense_kernel(kernel: object, name: str = "kernel") -> jax.Array:
  if _operators.is_operator(kernel):
    raise TypeError(
        f"{name} is an operator, and the full spectrum needs the dense "
        "(C, C) matrix: use top_eigenmodes(kernel, k) for the top k modes, "
        "or kernel.to_dense() when C is small.")
  return v.as_kernel(kernel, name)


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
  return _eigenmodes(_dense_kernel(kernel))


@jit
def _eigenmodes(S: jax.Array) -> tuple[jax.Array, jax.Array]:
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
  return _spectrum(_dense_kernel(kernel))


@jit
def _spectrum(S: jax.Array) -> jax.Array:
  lam: jax.Array = jnp.linalg.eigvalsh(S)
  return lam[::-1]


def gram_error(kernel: _operators.KernelLike, d: int, *,
               method: _eigensolvers.Method = "auto", tol: float = 1e-5,
               max_iter: int = 500) -> jax.Array:
  r"""Relative Frobenius error of the best rank-d PSD approximation.

  With :math:`\hat S_d = U_d \max(\Lambda_d, 0) U_d^\top` (the Gram matrix of
  the unnormalised ``spectral_codebook(S, d)``),

  .. math::
    \frac{\lVert S - \hat S_d\rVert_F}{\lVert S\rVert_F}
    = \sqrt{\frac{\sum_{i>d}\lambda_i^2 + \sum_{i\le d,\,\lambda_i<0}
      \lambda_i^2}{\sum_i \lambda_i^2}}
    = \sqrt{1 - \frac{\sum_{i\le d,\,\lambda_i>0}\lambda_i^2}
      {\lVert S\rVert_F^2}}.

  It is non-increasing in d and reaches 0 at d = C only for PSD S, and
  invariant to positive scaling, in float32 too: the kernel is divided by
  its largest entry (an operator by its Frobenius norm) before any
  eigenvalue is squared. The zero kernel has error 0. Under ``jit``, ``d``
  must be static (``jax.jit(gram_error, static_argnames="d")``).

  The dense solver sums the lost eigenvalues (first form). An iterative
  solver (``method``, see ``top_eigenmodes``) finds only the top d and uses
  the second form, with :math:`\lVert S\rVert_F^2` from the kernel:
  exact for arrays, ``TreeKernel`` and ``LowRankKernel``; a
  ``KernelOperator`` without ``squared_norm`` raises ``ValueError``. Its
  error is about the eigenvalues' (residual² / gap), and the subtraction
  loses precision when the error itself is below ~1e-3. An array under
  ``jit`` (``d`` static) takes the dense path.

  Args:
    kernel: (C, C) symmetric kernel, or a ``KernelOperator``.
    d: number of modes kept, 1 <= d <= C.
    method: eigensolver: "auto", "dense", "randomized", "lobpcg" or
      "tree".
    tol: residual tolerance of an iterative solver.
    max_iter: iteration cap of an iterative solver.

  Returns:
    Scalar in [0, 1].

  Examples:
    >>> import spectral_targets as st
    >>> float(st.gram_error(st.flat(4), 3)) < 1e-6
    True
    >>> K = st.from_hierarchy(st.random_hierarchy(3000, seed=0),
    ...                       implicit=True)
    >>> round(float(st.gram_error(K, 64)), 3)  # never forms the 3000 x 3000 S
    0.077
  """
  v.check_positive(tol, "tol")
  v.check_int(max_iter, "max_iter", minimum=1)
  if not _operators.is_operator(kernel) and not v.is_concrete(kernel):
    S = v.as_kernel(kernel)
    return _gram_error(S, v.check_int(d, "d", minimum=1, maximum=S.shape[0]))
  op = _operators.as_operator(kernel)
  d = v.check_int(d, "d", minimum=1, maximum=op.num_classes)
  solver = _eigensolvers.resolve_method(method, op.num_classes, d, op)
  if solver == "dense":
    return _gram_error(_operators.densified(op)[0], d)  # scale-free
  total = _squared_norm(op, "gram_error")
  if total == 0:
    return jnp.asarray(0.0, op.dtype)
  # Scale-free: solve for S / ||S||_F, whose eigenvalues are at most 1.
  top = _eigensolvers.top_eigenmodes(_operators.scaled(op, total**-0.5), d,
                                     method=solver, tol=tol,
                                     max_iter=max_iter)
  _eigensolvers.warn_unconverged(top, tol)
  lam = np.asarray(top.eigenvalues, np.float64)
  kept = float(np.sum(np.where(lam > 0, lam, 0.0) ** 2))
  return jnp.asarray(math.sqrt(max(1.0 - kept, 0.0)), op.dtype)


def _squared_norm(op: _operators.KernelOperator, caller: str) -> float:
  try:
    return float(op.squared_norm())
  except NotImplementedError as e:
    raise ValueError(f"{caller} needs the kernel's squared Frobenius norm: "
                     f"{e}") from None


@jit
def _gram_error(S: jax.Array, d: int) -> jax.Array:
  # d is traced: one compilation per kernel shape, not per (shape, d).
  # The error is scale-free: rescaled, the squares neither overflow nor
  # underflow (1e30 * S squares to inf in float32).
  lam: jax.Array = jnp.linalg.eigvalsh(num.rescale(S))[::-1]
  sq = lam**2
  kept = jnp.arange(lam.shape[0]) < d
  lost = jnp.where(kept & (lam >= 0), 0, sq).sum()
  total = sq.sum()
  return jnp.sqrt(lost / jnp.where(total > 0, total, 1))


def alignment(a: _operators.KernelLike, b: _operators.KernelLike, *,
              centered: bool = False) -> jax.Array:
  r"""Kernel-target alignment (Cristianini et al., 2002), or CKA.

  .. math::
    A(K, L) = \frac{\langle K, L\rangle_F}{\lVert K\rVert_F\,\lVert L\rVert_F}

  With ``centered=True`` both kernels are double-centred first
  (:math:`K \to JKJ`), which makes the score invariant to adding constants:
  centred kernel alignment (Cortes et al., 2012; CKA of Kornblith et al.,
  2019, for linear kernels). Symmetric in its arguments, invariant to
  positive scaling (in float32 too: each kernel is divided by its largest
  entry, an operator by its Frobenius norm, before anything is squared),
  in [-1, 1] (in [0, 1] for PSD kernels). A kernel with zero norm raises
  ``ValueError`` when concrete; under ``jit`` it gives NaN.

  **Operators.** Either kernel may be a ``KernelOperator`` (e.g.
  ``from_hierarchy(..., implicit=True)``) when the other is low rank
  (``low_rank_kernel``: :math:`\langle K, FF^\top + D\rangle =
  \operatorname{tr}(F^\top K F) + \sum_i D_{ii} K_{ii}`) or a dense array;
  the norms come from ``squared_norm``. So a codebook is compared with an
  implicit kernel as ``alignment(K, low_rank_kernel(codes))`` without a
  C × C matrix (eagerly: the operator path returns host-computed values and
  does not run under ``jit``). Centring uses :math:`\langle JKJ, JLJ\rangle = \langle JKJ,
  L\rangle` and :math:`\lVert JKJ\rVert^2 = \lVert K\rVert^2 -
  \tfrac{2}{C}\lVert K1\rVert^2 + (1^\top K 1)^2/C^2`. Two operators
  neither of which is low rank or dense raise ``ValueError``.

  Args:
    a: (C, C) symmetric kernel or operator.
    b: (C, C) symmetric kernel or operator.
    centered: double-centre both first.

  Returns:
    Scalar alignment.

  Examples:
    >>> import spectral_targets as st
    >>> float(st.alignment(st.graded(5, 2.), st.graded(5, 2.)))
    1.0
    >>> K = st.from_hierarchy(st.random_hierarchy(3000, seed=0),
    ...                       implicit=True)
    >>> codes = st.spectral_codebook(K, 64, normalize=False)
    >>> round(float(st.alignment(K, st.low_rank_kernel(codes))), 3)
    0.997
  """
  if _operators.is_operator(a) or _operators.is_operator(b):
    return _operator_alignment(_operators.as_operator(a, "a"),
                               _operators.as_operator(b, "b"), centered)
  K = v.as_kernel(a, "a")
  L = v.as_kernel(b, "b")
  v.check_equal_shape({"a": K, "b": L})
  nk, nl, inner = _alignment_terms(K, L, bool(centered))
  if v.is_concrete(nk) and v.is_concrete(nl):
    _check_norms((("a", nk), ("b", nl)), centered)
  return inner / (nk * nl)


def _check_norms(norms: Iterable[tuple[str, jax.Array | float]],
                 centered: bool) -> None:
  for name, norm in norms:
    if float(norm) == 0:
      raise ValueError(f"{name} has zero norm"
                       f"{' after centring' if centered else ''}; its "
                       "alignment is undefined.")


def _operator_alignment(K: _operators.KernelOperator,
                        L: _operators.KernelOperator,
                        centered: bool) -> jax.Array:
  v.check_equal_shape({"a": K, "b": L})
  explicit = (_operators.LowRankKernel, _operators.DenseKernel)
  if not isinstance(L, explicit):
    K, L = L, K
  if not isinstance(L, explicit):
    raise ValueError(
        "alignment of two operators needs one of them low rank (e.g. a "
        "codebook's Gram matrix, low_rank_kernel(codes)) or a dense array; "
        "pass kernel.to_dense() for the other when C is small.")
  # Scale-free: each kernel divided by its Frobenius norm (from the host, in
  # float64) before any product, so no float32 product overflows.
  n2 = _squared_norm(K, "alignment")
  if n2 > 0:
    K = _operators.scaled(K, n2**-0.5)
  n2 = _squared_norm(L, "alignment")
  if n2 > 0:
    L = _operators.scaled(L, n2**-0.5)
  Kc: _operators.KernelOperator
  Lc: _operators.KernelOperator
  if centered:
    Kc, Lc = _operators.CenteredKernel(K), _operators.CenteredKernel(L)
    inner = _inner(Kc, L)  # <JKJ, JLJ> = <JKJ, L>
  else:
    Kc, Lc = K, L
    inner = _inner(K, L)
  norms = [math.sqrt(_squared_norm(op, "alignment")) for op in (Kc, Lc)]
  _check_norms(zip(("a", "b"), norms), centered)
  return jnp.asarray(inner / (norms[0] * norms[1]), K.dtype)


def _inner(K: _operators.KernelOperator,
           L: _operators.LowRankKernel | _operators.DenseKernel) -> float:
  """<K, L>_F for L low rank (tr FᵀKF + Σ δ K_ii) or dense (tr KL)."""
  if isinstance(L, _operators.DenseKernel):
    return float(jnp.trace(K.matmul(L.matrix)))
  inner = float(jnp.sum(L.factor * K.matmul(L.factor)))
  if bool(jnp.any(L.diag != 0)):
    inner += float(jnp.sum(L.diag * K.diagonal()))
  return inner


@jit(static_argnums=2)
def _alignment_terms(K: jax.Array, L: jax.Array, centered: bool
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
  K, L = num.rescale(K), num.rescale(L)  # scale-free: no overflow
  if centered:
    K, L = double_centered(K), double_centered(L)
  return jnp.linalg.norm(K), jnp.linalg.norm(L), jnp.vdot(K, L)


def procrustes(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
  r"""The orthogonal map that best carries x onto y (orthogonal Procrustes).

  .. math::
    R = \arg\min_{R^\top R = I} \lVert x R - y\rVert_F = U V^\top, \qquad
    x^\top y = U \Sigma V^\top

  Invariant to positive scalings of x and y (both are rescaled before the
  product); bf16/f16 points are computed in float32.

  Args:
    x: (n, d) points, n, d >= 1.
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
  X = num.as_compute(v.as_float_array(x, "x"), "x")
  Y = num.as_compute(v.as_float_array(y, "y"), "y")
  v.check_rank(X, 2, "x")
  v.check_equal_shape({"x": X, "y": Y})
  if 0 in X.shape:
    raise ValueError(f"x and y must have at least one point and one "
                     f"dimension, got shape {X.shape}.")
  return _procrustes(X, Y)


@jit
def _procrustes(X: jax.Array, Y: jax.Array) -> jax.Array:
  # R is invariant to positive scalings of x and y: rescaled, XᵀY cannot
  # overflow.
  u, _, vt = jnp.linalg.svd(num.rescale(X).T @ num.rescale(Y),
                            full_matrices=False)
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
  if v.is_concrete(X):
    zero = np.flatnonzero(~np.asarray(X).any(axis=1))
    if zero.size:
      raise ValueError(f"codes has zero rows {zero.tolist()}; their cosine "
                       "is undefined.")
  return _coherence(X)


@jit
def _coherence(X: jax.Array) -> jax.Array:
  U = num.unit_rows(X)
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

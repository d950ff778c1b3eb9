"""The top eigenpairs of a label kernel, with or without a dense ``eigh``.

A dense ``eigh`` is O(C³) time and O(C²) memory; the codebook needs d ≪ C
modes. The iterative solvers here touch the kernel only through products
S @ X with a (C, b) block, so they serve dense arrays and ``KernelOperator``s
alike.
"""

from __future__ import annotations

import math

from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _operators
from spectral_targets import _validation as v
from spectral_targets._jit import jit

Method = Literal["auto", "dense", "randomized", "lobpcg"]
# What "auto" resolves to.
Solver = Literal["dense", "randomized", "lobpcg"]
METHODS: tuple[Method, ...] = get_args(Method)
# "auto" goes iterative from this many classes on, when the block is small.
ITERATIVE_FROM = 2048
# ``host_eigenmodes`` runs LAPACK in float64 through NumPy up to this many
# classes (no compilation: a first call costs what the eigh costs), and the
# jitted float32 eigh above, where it is faster.
HOST_EIGH_MAX = 1024


class ConvergenceWarning(RuntimeWarning):
  """An iterative eigensolver stopped at ``max_iter`` above its tolerance."""


class TopEigenmodes(NamedTuple):
  """The result of ``top_eigenmodes``.

  Attributes:
    eigenvalues: (k,) in descending order.
    eigenvectors: (C, k) orthonormal columns, column i for eigenvalue i.
    residuals: (k,) :math:`\\lVert S u_i - \\lambda_i u_i\\rVert / \\max_j
      |\\lambda_j|` (0 for the dense solver).
    iterations: iterations run (0 for the dense solver).
    converged: every residual is within ``tol``.
    method: the solver used ("dense", "randomized" or "lobpcg").
  """
  eigenvalues: jax.Array
  eigenvectors: jax.Array
  residuals: jax.Array
  iterations: int
  converged: bool
  method: Solver


def top_eigenmodes(kernel: _operators.KernelLike, k: int, *,
                   method: Method = "auto",
                   tol: float = 1e-5, max_iter: int = 500,
                   seed: int = 0) -> TopEigenmodes:
  r"""The k largest eigenvalues of a symmetric kernel and their eigenvectors.

  .. math::
    S u_i = \lambda_i u_i, \qquad \lambda_1 \ge \dots \ge \lambda_k

  Methods:

  * ``"dense"``: ``jnp.linalg.eigh`` of the (C, C) matrix (an operator is
    formed with ``to_dense``): exact, O(C³) time, O(C²) memory.
  * ``"randomized"``: block subspace iteration with Rayleigh–Ritz from a
    random start (Halko, Martinsson & Tropp 2011, Alg. 4.4 with a
    convergence test): each iteration multiplies a (C, b) orthonormal block
    by S, b = k + max(k // 2, 16); the Ritz pairs converge at the rate
    :math:`|\lambda_{b+1}/\lambda_i|`. O(C b) memory beyond the kernel.
  * ``"lobpcg"``: ``jax.experimental.sparse.linalg.lobpcg_standard``
    (needs 5k < C). In float32 its residuals stall near 3e-5, so ask it for
    no less than that.
  * ``"auto"``: ``"randomized"`` when C >= 2048 and the block is at most
    C / 8 (so at C = 4,096 already for k <= 256); ``"dense"`` otherwise.

  The iterative solvers stop when every residual
  :math:`\lVert S u_i - \lambda_i u_i\rVert / \max_j|\lambda_j|` is at most
  ``tol``, or after ``max_iter`` iterations; ``converged`` and
  ``residuals`` say which, and callers in this package warn with
  ``ConvergenceWarning``. A residual r bounds the eigenvalue error by
  about :math:`r^2/\text{gap}` and the eigenvector's angle by
  :math:`r/\text{gap}` (relative to :math:`\max|\lambda|`).

  Subspace iteration finds the eigenvalues of largest magnitude; if the
  kernel has negative eigenvalues larger in magnitude than
  :math:`\lambda_k`, the result would miss positive ones, so that case
  raises ``ValueError`` (use ``"dense"`` or ``"lobpcg"``).

  Runs eagerly (the iteration itself is jitted).

  Args:
    kernel: (C, C) symmetric array, a ``KernelOperator`` (e.g.
      ``from_hierarchy(..., implicit=True)``) or any object with a square
      ``shape`` and a ``@`` that traces under ``jit`` (e.g. a
      ``jax.experimental.sparse.BCOO`` matrix).
    k: number of eigenpairs, 1 <= k <= C.
    method: "auto", "dense", "randomized" or "lobpcg".
    tol: residual tolerance of the iterative solvers, relative to
      :math:`\max|\lambda|`.
    max_iter: iteration cap of the iterative solvers.
    seed: seed of the random start block.

  Returns:
    A ``TopEigenmodes``.

  Examples:
    >>> import spectral_targets as st
    >>> K = st.from_hierarchy(st.random_hierarchy(3000, seed=0),
    ...                       implicit=True)
    >>> top = st.top_eigenmodes(K, 8)
    >>> top.method, top.converged, top.eigenvectors.shape
    ('randomized', True, (3000, 8))

  References:
    Halko, Martinsson & Tropp, "Finding structure with randomness",
    SIAM Review 2011. Knyazev, "Toward the optimal preconditioned
    eigensolver: LOBPCG", SIAM J. Sci. Comput. 2001.
  """
  op = _operators.as_operator(kernel)
  C = op.num_classes
  k = v.check_int(k, "k", minimum=1, maximum=C)
  solver = resolve_method(method, C, k)
  v.check_positive(tol, "tol")
  max_iter = v.check_int(max_iter, "max_iter", minimum=1)
  seed = v.check_seed(seed)

  if solver == "dense":
    S, c = _operators.densified(op)
    lam, U = _dense_top(S, k)
    root = jnp.asarray(math.sqrt(c), lam.dtype)  # c itself may overflow
    lam = lam * root * root
    return TopEigenmodes(lam, U, jnp.zeros_like(lam), 0, True, "dense")
  if solver == "lobpcg":
    if 5 * k >= C:
      raise ValueError(f"method='lobpcg' needs 5 k < C, got k={k}, C={C}; "
                       "use method='dense' or 'randomized'.")
    start = jax.random.normal(jax.random.key(seed), (C, k), op.dtype)
    # lobpcg_standard's test is |r| <= tol_ * 10 C (λ + |Su|) ~ 20 C tol_ λ.
    lam, U, iters = _lobpcg(op, start, max_iter, tol / (20 * C))
    res = _residuals(op, lam, U)
  else:
    b = block_size(k, C)
    start = jax.random.normal(jax.random.key(seed), (C, b), op.dtype)
    lam, U, res, iters, smallest = _subspace_iteration(
        op, start, jnp.asarray(tol, op.dtype), k, max_iter)
    scale = float(jnp.max(jnp.abs(lam)))
    if float(lam[k - 1]) < float(smallest) - 10 * tol * scale:
      raise ValueError(
          "the kernel has negative eigenvalues larger in magnitude than its "
          f"k-th largest ({float(lam[k - 1]):.3g} < {float(smallest):.3g}); "
          "subspace iteration cannot separate them: use method='dense' or "
          "'lobpcg'.")
  res_max = float(jnp.max(res))
  return TopEigenmodes(lam, U, res, int(iters), res_max <= tol, solver)


def resolve_method(method: str, num_classes: int, k: int) -> Solver:
  """The solver "auto" stands for at this size (other names checked)."""
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
  if method != "auto":
    return method
  iterative = (num_classes >= ITERATIVE_FROM
               and block_size(k, num_classes) <= num_classes // 8)
  return "randomized" if iterative else "dense"


def block_size(k: int, num_classes: int) -> int:
  """Subspace iteration's block: k plus oversampling, at most C."""
  return min(num_classes, k + max(k // 2, 16))


@jit(static_argnums=1)
def _dense_top(S: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  lam, U = jnp.linalg.eigh(S)
  return lam[::-1][:k], U[:, ::-1][:, :k]


def _orthonormal(Y: jax.Array) -> jax.Array:
  """Orthonormal basis of span(Y) by Cholesky QR, twice ("CholQR2"): two
  (C, b) x (b, b) products instead of a Householder QR, several times
  faster on CPU. Y's columns must be roughly unit and far from dependent
  (random, or normalised Ritz directions); a shift of b eps tr(G) / b in
  the first pass keeps the factorisation finite when a few columns are."""
  b = Y.shape[1]
  eye = jnp.eye(b, dtype=Y.dtype)
  eps = jnp.finfo(Y.dtype).eps
  for shift in (eps * b, 0.0):  # the second pass starts from G ~ I
    G = Y.T @ Y
    L = jnp.linalg.cholesky(G + shift * jnp.trace(G) / b * eye)
    Y = Y @ jax.scipy.linalg.solve_triangular(L, eye, lower=True).T
  return Y


def _residuals(op: _operators.KernelOperator, lam: jax.Array, U: jax.Array
               ) -> jax.Array:
  R = op.matmul(U) - U * lam
  norms: jax.Array = jnp.linalg.norm(R, axis=0)
  return norms / jnp.maximum(jnp.max(jnp.abs(lam)),
                                                  jnp.finfo(lam.dtype).tiny)


@jit(static_argnums=(3, 4))
def _subspace_iteration(
    op: _operators.KernelOperator, start: jax.Array, tol: jax.Array, k: int,
    max_iter: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """Block power iteration with Rayleigh–Ritz; stops when the top k Ritz
  pairs have residuals <= tol."""

  def ritz(X: jax.Array
           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    Y = op.matmul(X)
    T = X.T @ Y
    theta, V = jnp.linalg.eigh((T + T.T) / 2)
    theta, V = theta[::-1], V[:, ::-1]
    U, SU = X @ V, Y @ V
    scale = jnp.maximum(jnp.max(jnp.abs(theta)), jnp.finfo(theta.dtype).tiny)
    res = jnp.linalg.norm(SU[:, :k] - U[:, :k] * theta[:k], axis=0) / scale
    return theta, U, SU, res

  State = tuple[jax.Array, jax.Array, jax.Array]

  def cond(state: State) -> jax.Array:
    _, res, it = state
    return (it < max_iter) & (jnp.max(res) > tol)

  def body(state: State) -> State:
    X, _, it = state
    _, U, SU, res = ritz(X)
    # The next block spans S X; columns rescaled to unit norm first so the
    # Cholesky QR sees a well-conditioned Gram matrix. A column S maps to
    # (numerically) nothing keeps its Ritz vector: a zero or low-rank
    # kernel then still gives an orthonormal block, not 0 / 0.
    norms = jnp.linalg.norm(SU, axis=0)
    null = norms <= jnp.finfo(SU.dtype).eps * jnp.max(norms)
    Y = jnp.where(null, U, SU / jnp.where(null, 1, norms))
    return _orthonormal(Y), res, it + 1

  X0 = _orthonormal(start)
  inf = jnp.full((k,), jnp.inf, start.dtype)
  X, _, it = jax.lax.while_loop(cond, body, (X0, inf, jnp.asarray(0)))
  theta, U, _, res = ritz(X)
  return theta[:k], U[:, :k], res, it, jnp.min(jnp.abs(theta))


@jit(static_argnums=2)
def _lobpcg(op: _operators.KernelOperator, start: jax.Array, max_iter: int,
            tol: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  # Imported here: jax.experimental.sparse (and the SciPy it loads) is a
  # fifth of a second of ``import spectral_targets``.
  from jax.experimental.sparse import linalg as sparse_linalg
  lam, U, iters = sparse_linalg.lobpcg_standard(op.matmul, start, m=max_iter,
                                                tol=tol)
  return lam, U, iters


def host_eigenmodes(op: _operators.KernelOperator
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Every eigenpair of a kernel as NumPy arrays, eigenvalues descending,
  eigenvector signs fixed by ``fix_signs``.

  Up to ``HOST_EIGH_MAX`` classes LAPACK's float64 eigh through NumPy (the
  eigenvalues in float64, the vectors float64); above, the jitted eigh in
  the kernel's dtype. Eager: a codebook is built once, and a 100-class
  eigh costs less than compiling one.
  """
  dense, c = _operators.densified(op)
  if op.num_classes <= HOST_EIGH_MAX:
    S = np.asarray(dense).astype(np.float64)
    lam, U = np.linalg.eigh(S)
    lam, U = lam[::-1], U[:, ::-1]
  else:
    lam, U = map(np.asarray, _dense_top(dense, op.num_classes))
  return np.asarray(lam, np.float64) * c, fix_signs(U)


def fix_signs(U: np.ndarray) -> np.ndarray:
  """Eigenvectors with a sign convention: the first entry whose magnitude is
  within 0.1% of the column's largest is positive. eigh's signs are
  arbitrary (and differ between LAPACK builds and dtypes); this makes a
  codebook a function of the kernel alone. The 0.1% margin keeps entries of
  equal magnitude (symmetric kernels have many) from flipping the choice on
  rounding."""
  U = np.array(U, copy=True)
  mag = np.abs(U)
  first = np.argmax(mag >= (1 - 1e-3) * mag.max(axis=0), axis=0)
  flip = U[first, np.arange(U.shape[1])] < 0
  U[:, flip] *= -1
  return U

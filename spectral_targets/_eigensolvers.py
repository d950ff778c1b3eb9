"""The top eigenpairs of a label kernel, with or without a dense ``eigh``.

A dense ``eigh`` is O(C³) time and O(C²) memory; the codebook needs d ≪ C
modes. The iterative solvers here touch the kernel only through products
S @ X with a (C, b) block, so they serve dense arrays and ``KernelOperator``s
alike.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _operators
from spectral_targets import _sibling_deflation
from spectral_targets import _validation as v
from spectral_targets._jit import jit

Method = Literal["auto", "dense", "randomized", "lobpcg", "tree"]
# What "auto" resolves to.
Solver = Literal["dense", "randomized", "lobpcg", "tree"]
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
    method: the solver used ("dense", "randomized", "lobpcg" or "tree").
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
  * ``"tree"``: exact structure first, for a ``TreeKernel``
    (``from_hierarchy(..., implicit=True)``, or a positive multiple of
    one). Sibling leaves a, b (one parent, one weight w) differ only in
    themselves, so :math:`S(e_a - e_b) = w\,(e_a - e_b)`: a group of g
    siblings gives the eigenvalue w, g - 1 times, its contrasts as
    eigenvectors (here the Helmert basis; any orthonormal basis of the
    eigenspace is as valid). The other eigenpairs are those of the
    (G, G) kernel of the vectors constant on each group,

    .. math::
      S_\mathrm{red} = D^{1/2}\,T\,D^{1/2} + \mathrm{diag}(w_G),

    with G the number of groups, D their sizes and T the tree kernel in
    which each group is one leaf; it is solved as "auto" would solve it
    (densely for small G, else "randomized"), and lifted. Residuals are
    the reduced pairs' (the lifted ones' in exact arithmetic), 0 for the
    sibling pairs. A taxonomy has far fewer parents of leaves than
    leaves (``random_hierarchy(1_000_000)``: about 10,000), so an
    iteration costs a small fraction of "randomized"'s on S.
  * ``"auto"``: ``"randomized"`` when C >= 2048 and the block is at most
    C / 8 (so at C = 4,096 already for k <= 256), or ``"tree"`` there for
    a ``TreeKernel``; ``"dense"`` otherwise.

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
    method: "auto", "dense", "randomized", "lobpcg" or "tree".
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
    ('tree', True, (3000, 8))
    >>> # A root with 5 leaves under it and 3 under a child: 4 sibling
    >>> # contrasts at weight 1, 2 at 0.5, and 2 and 1 from the two groups.
    >>> edges = [("r", i) for i in range(5)] + [("r", "s")] + [
    ...     ("s", i) for i in range(5, 8)]
    >>> K = st.from_hierarchy(edges, implicit=True)
    >>> st.top_eigenmodes(K, 8, method="tree").eigenvalues.round(3)
    Array([2. , 1. , 1. , 1. , 1. , 1. , 0.5, 0.5], dtype=float32)

  References:
    Halko, Martinsson & Tropp, "Finding structure with randomness",
    SIAM Review 2011. Knyazev, "Toward the optimal preconditioned
    eigensolver: LOBPCG", SIAM J. Sci. Comput. 2001. Dellacherie, Martinez
    & San Martin, "Inverse M-matrices and ultrametric matrices", Lecture
    Notes in Mathematics 2118, 2014 (the tree kernel's nested blocks).
  """
  op = _operators.as_operator(kernel)
  C = op.num_classes
  k = v.check_int(k, "k", minimum=1, maximum=C)
  solver = resolve_method(method, C, k, op)
  v.check_positive(tol, "tol")
  max_iter = v.check_int(max_iter, "max_iter", minimum=1)
  seed = v.check_seed(seed)

  if solver == "dense":
    S, c = _operators.densified(op)
    lam, U = _dense_top(S, k)
    root = jnp.asarray(math.sqrt(c), lam.dtype)  # c itself may overflow
    lam = lam * root * root
    return TopEigenmodes(lam, U, jnp.zeros_like(lam), 0, True, "dense")
  if solver == "tree":
    tree = _tree_of(op)
    if tree is None:
      raise ValueError(
          "method='tree' needs a TreeKernel (from_hierarchy(..., "
          f"implicit=True)) or a positive multiple of one, got "
          f"{type(op).__name__}; use method='randomized'.")
    lam, U, res, iters = _tree_top(*tree, k, tol, max_iter, seed)
  elif solver == "lobpcg":
    if 5 * k >= C:
      raise ValueError(f"method='lobpcg' needs 5 k < C, got k={k}, C={C}; "
                       "use method='dense' or 'randomized'.")
    start = jax.random.normal(jax.random.key(seed), (C, k), op.dtype)
    # lobpcg_standard's test is |r| <= tol_ * 10 C (λ + |Su|) ~ 20 C tol_ λ.
    lam, U, lobpcg_iters = _lobpcg(op, start, max_iter, tol / (20 * C))
    res, iters = _residuals(op, lam, U), int(lobpcg_iters)
  else:
    lam, U, res, iters = _randomized(op, k, tol, max_iter, seed)
  res_max = float(jnp.max(res))
  return TopEigenmodes(lam, U, res, iters, res_max <= tol, solver)


def warn_unconverged(top: TopEigenmodes, tol: float) -> None:
  """``ConvergenceWarning`` for an iterative solve that stopped early."""
  if not top.converged:
    warnings.warn(ConvergenceWarning(
        f"{top.method} eigensolver stopped after {top.iterations} "
        f"iterations with residual {float(top.residuals.max()):.2g} > "
        f"tol={tol}; raise max_iter or tol, or use method='dense'."),
        stacklevel=3)


def resolve_method(method: str, num_classes: int, k: int,
                   kernel: _operators.KernelOperator | None = None) -> Solver:
  """The solver "auto" stands for at this size, for this kernel (other
  names checked)."""
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
  if method != "auto":
    return method
  iterative = (num_classes >= ITERATIVE_FROM
               and block_size(k, num_classes) <= num_classes // 8)
  if not iterative:
    return "dense"
  return "tree" if kernel is not None and _tree_of(kernel) else "randomized"


def _randomized(op: _operators.KernelOperator, k: int, tol: float,
                max_iter: int, seed: int
                ) -> tuple[jax.Array, jax.Array, jax.Array, int]:
  """Subspace iteration from a random start; refuses a kernel whose
  negative eigenvalues outweigh its k-th."""
  b = block_size(k, op.num_classes)
  start = jax.random.normal(jax.random.key(seed), (op.num_classes, b),
                            op.dtype)
  lam, U, res, iters, smallest = _subspace_iteration(
      op, start, jnp.asarray(tol, op.dtype), k, max_iter)
  scale = float(jnp.max(jnp.abs(lam)))
  if float(lam[k - 1]) < float(smallest) - 10 * tol * scale:
    raise ValueError(
        "the kernel has negative eigenvalues larger in magnitude than its "
        f"k-th largest ({float(lam[k - 1]):.3g} < {float(smallest):.3g}); "
        "subspace iteration cannot separate them: use method='dense' or "
        "'lobpcg'.")
  return lam, U, res, int(iters)


def _tree_of(op: _operators.KernelOperator
             ) -> tuple[_operators.TreeKernel, float] | None:
  """(K, c) for an operator that is c K with K a ``TreeKernel`` and c > 0
  (``gram_error`` solves a scaled kernel), else None."""
  if isinstance(op, _operators.TreeKernel):
    return op, 1.0
  if (isinstance(op, _operators._ScaledKernel)
      and isinstance(op.inner, _operators.TreeKernel)):
    return op.inner, float(op.factor)
  return None


def _tree_top(K: _operators.TreeKernel, factor: float, k: int, tol: float,
              max_iter: int, seed: int
              ) -> tuple[jax.Array, jax.Array, jax.Array, int]:
  """The top k eigenpairs of factor * K: the sibling pairs in closed form,
  the rest from the reduced kernel (see ``_sibling_deflation``)."""
  parts = _sibling_deflation.deflate(K, factor)
  reduced = parts.reduced
  G = reduced.num_classes
  k_red = min(k, G)
  if resolve_method("auto", G, k_red) == "dense":
    lam_r, alpha = _dense_top(reduced.to_dense(), k_red)
    res_r, iters = jnp.zeros_like(lam_r), 0
  else:
    lam_r, alpha, res_r, iters = _randomized(reduced, k_red, tol, max_iter,
                                             seed)
  lam_s = factor * parts.sibling_eigenvalues(k)
  # Both lists descend: the top k of their union take a prefix of each
  # (a reduced eigenvalue first where the two are equal).
  values = np.concatenate([np.asarray(lam_r, np.float64), lam_s])
  order = np.argsort(-values, kind="stable")[:k]
  n_r = int(np.sum(order < k_red))
  U = parts.lift(alpha[:, :n_r])
  res = res_r[:n_r]
  if n_r < k:
    # Columns as [reduced prefix, sibling prefix], then in merged order.
    U = jnp.concatenate(
        [U, jnp.asarray(parts.sibling_vectors(k - n_r, K.dtype))], axis=1)
    res = jnp.concatenate([res, jnp.zeros(k - n_r, res.dtype)])
    columns = np.where(order < k_red, order, n_r + order - k_red)
    U, res = U[:, columns], res[columns]
  return jnp.asarray(values[order], K.dtype), U, res, iters


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

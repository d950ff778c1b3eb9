"""Codebooks from the top eigenmodes of a label kernel (classical MDS).

Three things are decided here rather than left to ``eigh``:

* which eigenvalues are *repeated*: equal to within the accuracy they were
  computed to (``_errors``, ``_tie_block``);
* the basis inside a repeated eigenspace that a cut at d splits (equal code
  norms, then maximal separation), which the optimiser of
  ``_tie_breaking`` chooses;
* whether the normalised codes tell every class apart (zero or coincident
  codes are errors naming the classes and the d that separates them:
  ``_code_defects``, ``separating_dimension``).

A codebook is built once, before training, so all of it runs eagerly. Small
problems run in NumPy (LAPACK float64): a first call costs no compilation.
Large kernels and operators use the JAX eigensolvers, and a large
tie-breaking problem the jitted form of the same objective.
"""

from __future__ import annotations

from typing import NamedTuple, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _blas
from spectral_targets import _eigensolvers
from spectral_targets import _operators
from spectral_targets import _tie_breaking
from spectral_targets import _validation as v
from spectral_targets._numerics import unique_rows

# Eigenvalues count as computed to this many ulps of the kernel's dtype (times
# max|λ|) at least: exact ties of float32 kernels built with a few
# operations per entry split by at most ~4 ulps in a float64 eigh, and by up
# to ~64 in the jitted float32 eigh at C = 2,000.
TIE_ULPS = 64


class CodebookOptions(TypedDict, total=False):
  """``spectral_codebook``'s keyword options, for functions that pass them
  on (``refresh_codebook``)."""
  normalize: bool
  allow_merged: bool
  method: _eigensolvers.Method
  tol: float
  max_iter: int
  degeneracy_rtol: float | None
  steps: int
  restarts: int | None
  seed: int


def spectral_codebook(kernel: _operators.KernelLike, d: int, *,
                      normalize: bool = True,
                      allow_merged: bool = False,
                      method: _eigensolvers.Method = "auto", tol: float = 1e-5,
                      max_iter: int = 500,
                      degeneracy_rtol: float | None = None,
                      steps: int = 400, restarts: int | None = None,
                      seed: int = 0) -> jax.Array:
  r"""One code per class from the top-d eigenmodes of a label kernel.

  .. math::
    S = U \Lambda U^\top,\qquad X = U_d \max(\Lambda_d, 0)^{1/2},\qquad
    c_i = x_i / \lVert x_i\rVert

  Unnormalised, :math:`XX^\top` is the best rank-d PSD approximation of S
  (classical MDS / kernel PCA; see ``gram_error``); normalised, the rows are
  unit codes whose Gram matrix approximates S. Eigenvector signs follow a
  fixed convention (each mode's largest entry positive), so the codes are a
  function of the kernel.

  **Repeated eigenvalues.** Two eigenvalues count as equal when they agree
  to within the accuracy they were computed to: their error bounds
  :math:`e_i` overlap, :math:`|\lambda_i - \lambda_j| \le e_i + e_j`, with
  :math:`e_i = \max(r_i, 64\,\varepsilon)\max|\lambda|` for an iterative
  solve whose Ritz pair i has relative residual :math:`r_i` (a symmetric S
  has an eigenvalue within :math:`\lVert S u_i - \lambda_i u_i\rVert` of
  :math:`\lambda_i`), and :math:`64\,\varepsilon\max|\lambda|` for a dense
  eigh (ε of the kernel's dtype, float32's at least). Exact ties (flat,
  blocks, the sibling modes of a tree) are always caught: every computed
  copy lies within its bound of the one true value, and symmetric kernels
  built in float32 split them by a few ulps. Distinct eigenvalues the
  computation resolves are left distinct, since their top-d subspace is
  unique (``degeneracy_rtol`` lumps them deliberately).

  When the cut at d falls inside such an eigenspace, which of its
  directions are kept is arbitrary, and eigh's choice can send several
  classes to one direction, or to zero; this function chooses them
  deliberately: the pre-normalisation code norms as equal as possible (so
  normalising does not distort the Gram matrix), then the smallest largest
  pairwise cosine (maximal separation, as in Mettes et al., 2019). So
  ``flat(9)`` at d = 2 gives the regular 9-gon, ``flat(7)`` at d = 4 the
  harmonic frame with largest cosine 0.2005, and ``blocks`` of three
  superclasses at d = 2 three clusters 120° apart.

  **Codes that do not tell classes apart.** With ``normalize=True`` a class
  whose code is (numerically) zero, :math:`\lVert x_i\rVert^2 \le
  \sqrt{\varepsilon}\max_j \lVert x_j\rVert^2`, cannot be normalised, and
  classes whose unit codes coincide,

  .. math::
    \lVert c_i - c_j\rVert \le \sqrt{\varepsilon}\,\max_l \lVert x_l\rVert
      \left(\lVert x_i\rVert^{-1} + \lVert x_j\rVert^{-1}\right)

  (within the accuracy the eigenvectors give them; chained into groups),
  cannot be told apart by a head: both raise ``ValueError`` naming the
  classes and the smallest d that cuts the spectrum in a gap and separates
  them (``separating_dimension`` gives it for all classes). Classes the
  kernel itself does not distinguish (equal rows, as within a ``blocks``
  group) are separated by no d; pass ``allow_merged=True`` to keep one code
  per group (superclass codes).

  **Many classes.** The modes come from ``top_eigenmodes`` with ``method``
  (default "auto": a dense eigh below 2,048 classes, in LAPACK float64 up
  to 1,024; randomized subspace iteration above, where d is small, or
  for a ``TreeKernel`` the exact sibling deflation of "tree"), so
  ``kernel`` may be a ``KernelOperator`` such as
  ``from_hierarchy(..., implicit=True)``. The iterative solvers compute a
  few modes past d to see whether the cut falls in a repeated eigenvalue,
  and more if the tie reaches the last of them; a tie too long to bracket
  (more than max(4 d, d + 256) modes) raises ``ValueError`` naming the d
  just below the tie, which cuts in a gap. An unconverged solve warns with
  ``ConvergenceWarning``.

  This step needs the kernel's values, so the function runs eagerly (build a
  codebook once, before training); it raises ``TypeError`` under ``jit``.

  Args:
    kernel: (C, C) symmetric kernel, or a ``KernelOperator`` (any object
      with a square ``shape`` and a traceable ``@``).
    d: code dimension, 1 <= d <= C.
    normalize: return unit rows (default) or the MDS coordinates X.
    allow_merged: with ``normalize=True``, return coincident codes instead
      of raising.
    method: eigensolver, "auto", "dense", "randomized", "lobpcg" or
      "tree"; see ``top_eigenmodes``.
    tol: residual tolerance of an iterative solver.
    max_iter: iteration cap of an iterative solver.
    degeneracy_rtol: if given, eigenvalues within ``degeneracy_rtol *
      max|λ|`` of each other count as equal, whatever their accuracy.
    steps: optimisation steps when a cut falls in a repeated eigenvalue
      (and half as many to polish the best ends).
    restarts: random starts of that optimisation (besides up to 4 harmonic
      ones); default: as many as a fixed amount of work allows (2 to 48,
      and fewer harmonic ones when even those are too much work).
    seed: seed of those starts (and of an iterative solver).

  Returns:
    (C, d) codes, float32 for float32 or narrower kernels, float64 for
    float64 ones.

  Raises:
    ValueError: with ``normalize=True``, if a class gets a (near-)zero code,
      or, unless ``allow_merged``, if classes get the same code; the message
      names the classes and the d that separates them.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> codes = st.spectral_codebook(st.flat(9), 2)  # the regular 9-gon
    >>> angles = jnp.sort(jnp.arctan2(codes[:, 1], codes[:, 0]))
    >>> jnp.degrees(jnp.diff(angles)).round(1)
    Array([40., 40., 40., 40., 40., 40., 40., 40.], dtype=float32)
    >>> codes = st.spectral_codebook(st.flat(7), 4)  # a harmonic frame
    >>> cos = codes @ codes.T - 2 * jnp.eye(7)
    >>> round(float(cos.max()), 4)  # the largest cosine between two codes
    0.2005

  References:
    Mettes, van der Pol & Snoek, "Hyperspherical Prototype Networks",
    NeurIPS 2019. Casazza & Kovačević, "Equal-norm tight frames with
    erasures", Adv. Comput. Math. 2003 (harmonic frames).
  """
  _check_concrete(kernel, "spectral_codebook")
  with _blas.one_blas_thread():
    return _spectral_codebook(kernel, d, normalize=normalize,
                              allow_merged=allow_merged, method=method,
                              tol=tol, max_iter=max_iter,
                              degeneracy_rtol=degeneracy_rtol, steps=steps,
                              restarts=restarts, seed=seed)


def _spectral_codebook(kernel: _operators.KernelLike, d: int, *,
                       normalize: bool, allow_merged: bool,
                       method: _eigensolvers.Method, tol: float, max_iter: int,
                       degeneracy_rtol: float | None, steps: int,
                       restarts: int | None, seed: int) -> jax.Array:
  op = _operators.as_operator(kernel)
  C = op.num_classes
  d = v.check_int(d, "d", minimum=1, maximum=C)
  steps = v.check_int(steps, "steps", minimum=0)
  if restarts is not None:
    restarts = v.check_int(restarts, "restarts", minimum=1)
  seed = v.check_seed(seed)
  if degeneracy_rtol is not None:
    v.check_positive(degeneracy_rtol, "degeneracy_rtol")
  dtype = jnp.promote_types(op.dtype, jnp.float32)
  code_tol = _code_rtol(dtype)

  modes = _modes(op, d, degeneracy_rtol, method=method, tol=tol,
                 max_iter=max_iter, seed=seed)
  X = _coordinates(modes, 0, d)
  a, b = _tie_block(modes, d)
  if b > d and modes.lam[d - 1] > modes.err[d - 1]:
    fixed = X[:, :a]
    group = _coordinates(modes, a, b)
    Q = _tie_breaking.separating_basis(fixed, group, d - a, steps=steps,
                                       restarts=restarts, seed=seed,
                                       code_tol=code_tol)
    X = np.concatenate([fixed, group @ Q.astype(group.dtype)], axis=1)

  if normalize:
    zero, merged = _code_defects(X, code_tol, merged=not allow_merged)
    if zero.size:
      raise ValueError(_zero_message(zero, d, modes, code_tol))
    if merged:
      raise ValueError(_merged_message(merged, d, modes, code_tol))
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
  # Cast on the host and put on the device as it is: jnp.asarray compiles
  # a conversion on first use (~10 ms of a first call).
  codes: jax.Array = jax.device_put(np.asarray(X, dtype))
  return codes


def separating_dimension(kernel: _operators.KernelLike, *,
                         degeneracy_rtol: float | None = None) -> int:
  r"""The smallest d at which ``spectral_codebook`` tells every class apart.

  .. math::
    d^\star = \min\{\,d : \lambda_d > \lambda_{d+1},\
      x_i(d) \ne 0 \text{ and } \tfrac{x_i(d)}{\lVert x_i(d)\rVert}
      \ne \tfrac{x_j(d)}{\lVert x_j(d)\rVert}\ \forall i \ne j\,\}

  with :math:`x_i(d)` the row i of the MDS coordinates
  :math:`U_d\max(\Lambda_d, 0)^{1/2}`, "≠" to within the tolerances of
  ``spectral_codebook`` (a zero code: squared norm at most
  :math:`\sqrt{\varepsilon}` of the largest; coincident codes: chord
  distance within :math:`\sqrt{\varepsilon}` scaled by the largest norm
  over each code's own). Only cuts in a gap of the spectrum (not inside a
  repeated eigenvalue, in the sense of ``spectral_codebook``) are
  considered: there the codes do not depend on a choice of basis, so the
  answer holds whatever basis is chosen. A cut inside a repeated
  eigenvalue below :math:`d^\star` may separate the classes too, with the
  basis ``spectral_codebook`` picks. Separation grows with d in exact
  arithmetic (codes that differ in their first d coordinates differ in
  more), so the cuts are searched by bisection.

  For example the CIFAR-100 tree double-centred has 19 superclass modes
  and 80 sibling modes, each a repeated eigenvalue: d = 19 gives the 100
  classes only 20 codes, and d = 99 is the first cut that separates them.

  The full eigendecomposition is computed (an operator is made dense), so
  this is for kernels a dense eigh can handle.

  Args:
    kernel: (C, C) symmetric kernel, or a ``KernelOperator``.
    degeneracy_rtol: as in ``spectral_codebook``.

  Returns:
    :math:`d^\star`, an int in [1, C].

  Raises:
    ValueError: if no d separates every class: the message names the
      classes the kernel cannot tell apart (equal rows, or rows with no
      positive spectral content).

  Examples:
    >>> import spectral_targets as st
    >>> st.separating_dimension(st.flat(3))  # d = 1 gives ±1 codes
    2
    >>> edges, classes = st.cifar100_hierarchy()
    >>> st.separating_dimension(st.double_center(
    ...     st.from_hierarchy(edges, classes=classes)))
    99

  References:
    Torgerson, "Multidimensional scaling: I. Theory and method",
    Psychometrika 1952 (classical MDS).
  """
  _check_concrete(kernel, "separating_dimension")
  op = _operators.as_operator(kernel)
  if degeneracy_rtol is not None:
    v.check_positive(degeneracy_rtol, "degeneracy_rtol")
  code_tol = _code_rtol(jnp.promote_types(op.dtype, jnp.float32))
  with _blas.one_blas_thread():
    lam, U = _eigensolvers.host_eigenmodes(op)
  modes = _Modes(lam, U, _errors(lam, None, op.dtype, degeneracy_rtol),
                 complete=True)
  cut = _separating_cut(modes, 1, None, code_tol)
  if cut is None:
    last = _cuts(modes, 1)[-1]
    zero, merged = _code_defects(_coordinates(modes, 0, last), code_tol)
    raise ValueError(
        "no d separates every class: "
        + (f"class(es) {_listing(zero)} get no code at any d (their rows "
           "of the kernel have no positive spectral content)"
           if zero.size else
           f"classes {_groups_listing(merged)} have the same code at every "
           "d (the kernel does not tell them apart)")
        + "; change the kernel, or pass allow_merged=True to "
        "spectral_codebook for one code per group.")
  return cut


def _check_concrete(kernel: object, caller: str) -> None:
  if not all(map(v.is_concrete, jax.tree.leaves(kernel))):
    raise TypeError(
        f"{caller} needs a concrete kernel: how a repeated eigenvalue "
        "is resolved depends on its values. Build the codebook once, outside "
        "jit, and pass the (C, d) result into the traced function.")


def _code_rtol(dtype: jax.typing.DTypeLike) -> float:
  """Relative accuracy of codes: sqrt(eps) of the dtype (3.5e-4 in f32)."""
  return float(np.sqrt(np.finfo(dtype).eps))


class _Modes(NamedTuple):
  """Eigenpairs on the host, eigenvalues descending."""
  lam: np.ndarray        # (k,) float64
  U: np.ndarray          # (C, k)
  err: np.ndarray        # (k,) absolute error bound of each eigenvalue
  complete: bool         # k == C


def _errors(lam: np.ndarray, residuals: np.ndarray | None,
            dtype: jax.typing.DTypeLike, rtol: float | None) -> np.ndarray:
  """Each eigenvalue's error bound e_i: ``rtol`` max|λ| / 2 if given
  (so that |Δλ| <= rtol max|λ| ties), else max(r_i, TIE_ULPS eps) max|λ|."""
  scale = max(float(np.max(np.abs(lam))), np.finfo(np.float64).tiny)
  if rtol is not None:
    return np.full(lam.shape, rtol * scale / 2)
  floor = TIE_ULPS * float(np.finfo(jnp.promote_types(dtype,
                                                      jnp.float32)).eps)
  if residuals is None:
    return np.full(lam.shape, floor * scale)
  err: np.ndarray = np.maximum(residuals, floor) * scale
  return err


def _tied(modes: _Modes, i: int) -> np.ndarray:
  """Which eigenvalues are equal to eigenvalue i within their errors."""
  tied: np.ndarray = (np.abs(modes.lam - modes.lam[i])
                      <= modes.err + modes.err[i])
  return tied


def _tie_block(modes: _Modes, d: int) -> tuple[int, int]:
  """[a, b): the eigenvalues tied with λ_d (a cut inside is ambiguous)."""
  tied = np.flatnonzero(_tied(modes, d - 1))
  return int(tied.min()), int(tied.max()) + 1


def _cuts(modes: _Modes, start: int) -> np.ndarray:
  """The d >= start that cut the spectrum in a gap and add a positive mode
  (beyond the last positive eigenvalue the codes do not change)."""
  lam, err = modes.lam, modes.err
  k = lam.size
  gap = np.ones(k, bool)
  gap[:-1] = lam[:-1] - lam[1:] > err[:-1] + err[1:]
  if not modes.complete:
    gap[-1] = False
  positive = np.flatnonzero(lam > err)
  last = int(positive.max()) + 1 if positive.size else 1
  cuts = np.flatnonzero(gap[:last]) + 1
  cuts = cuts[cuts >= start]
  if modes.complete and (cuts.size == 0 or cuts[-1] != last) and last >= start:
    cuts = np.append(cuts, last)
  return cuts


def _modes(op: _operators.KernelOperator, d: int, rtol: float | None, *,
           method: _eigensolvers.Method, tol: float, max_iter: int,
           seed: int) -> _Modes:
  """Eigenpairs: all C from a dense eigh, or from an iterative solver
  enough past d to bracket a tie at the cut."""
  C = op.num_classes
  extra = max(4, d // 32)
  solver = _eigensolvers.resolve_method(method, C, d + extra, op)
  if solver == "dense":
    lam, U = _eigensolvers.host_eigenmodes(op)
    return _Modes(lam, U, _errors(lam, None, op.dtype, rtol), complete=True)
  cap = min(C, max(4 * d, d + 256))
  while True:
    k = min(C, d + extra)
    top = _eigensolvers.top_eigenmodes(op, k, method=solver, tol=tol,
                                       max_iter=max_iter, seed=seed)
    _eigensolvers.warn_unconverged(top, tol)
    lam = np.asarray(top.eigenvalues, np.float64)
    if not np.isfinite(lam).all():
      raise ValueError(
          f"the {solver} eigensolver returned non-finite eigenvalues for "
          "this kernel (does its matmul return NaN or inf?).")
    modes = _Modes(lam, _eigensolvers.fix_signs(np.asarray(top.eigenvectors)),
                   _errors(lam, np.asarray(top.residuals, np.float64),
                           op.dtype, rtol), complete=k == C)
    tie = _tied(modes, d - 1)
    # A tie among (numerically) zero eigenvalues adds nothing to the codes.
    if k == C or not tie[-1] or lam[d - 1] <= modes.err[d - 1]:
      return modes
    if k >= cap:
      first = int(np.flatnonzero(tie)[0])
      hint = f"d={first} cuts in a gap, or " if first else ""
      raise ValueError(
          f"d={d} cuts an eigenvalue ({lam[d - 1]:.4g}) repeated more than "
          f"{k - first} times, too many to resolve without a dense "
          f"eigendecomposition; {hint}pass method='dense'.")
    extra *= 2


def _coordinates(modes: _Modes, a: int, b: int) -> np.ndarray:
  """MDS coordinates U max(Λ, 0)^{1/2} of modes a..b-1."""
  root = np.sqrt(np.maximum(modes.lam[a:b], 0)).astype(modes.U.dtype)
  X: np.ndarray = modes.U[:, a:b] * root
  return X


# --- Codes that do not tell classes apart -----------------------------------


def _code_defects(X: np.ndarray, code_tol: float, *, merged: bool = True
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
  """Classes whose code is (numerically) zero, and (if ``merged``) groups
  (index arrays, two or more classes each) whose normalised codes
  coincide."""
  n2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
  zero = np.flatnonzero(n2 <= code_tol * n2.max())
  if zero.size or not merged:
    return zero, []
  norms = np.sqrt(n2)
  return zero, _coincident(X / norms[:, None].astype(X.dtype),
                           code_tol * norms.max() / norms)


def _coincident(units: np.ndarray, radius: np.ndarray) -> list[np.ndarray]:
  """Groups of unit rows u_i, u_j with |u_i - u_j| <= r_i + r_j, chained.

  Rows in one cell of a grid whose cells are at most 2 min r across
  coincide, so one row stands for its cell; the cells are compared through
  those rows, sorted along a projection (which shrinks distances), and a
  pair of cells within reach (a member's radius plus the cell's size, each)
  is joined on a pair of rows that meets the test. No C × C matrix is
  formed."""
  d = units.shape[1]
  cell = 2 * float(radius.min()) / np.sqrt(d)
  rep, owner, counts = unique_rows(np.floor(units / cell))
  reach = np.zeros(rep.size)
  np.maximum.at(reach, owner, radius)
  reach += cell * np.sqrt(d)
  points = units[rep].astype(np.float64)
  direction = np.random.default_rng(0).standard_normal(d)
  proj = points @ (direction / np.linalg.norm(direction))
  order = np.argsort(proj)
  pairs: list[np.ndarray] = []
  for offset in range(1, rep.size):
    gap = proj[order[offset:]] - proj[order[:-offset]]
    if gap.min() > 2 * reach.max():
      break  # sorted: larger offsets are farther still
    i = np.flatnonzero(gap <= reach[order[:-offset]] + reach[order[offset:]])
    a, b = order[i], order[i + offset]
    within = (np.linalg.norm(points[a] - points[b], axis=1)
              <= reach[a] + reach[b])
    pairs.append(np.stack([a[within], b[within]]))
  near = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), int)
  # A witness pair of rows: the cells' own rows first, then every pair.
  a, b = near
  joined = (np.linalg.norm(points[a] - points[b], axis=1)
            <= radius[rep[a]] + radius[rep[b]])
  rows = np.split(np.argsort(owner, kind="stable"), np.cumsum(counts)[:-1])
  for k in np.flatnonzero(~joined):
    A, B = rows[a[k]], rows[b[k]]
    dist = np.linalg.norm(units[A][:, None] - units[B][None], axis=-1)
    joined[k] = np.any(dist <= radius[A][:, None] + radius[B][None])
  labels = _components(rep.size, near[:, joined])[owner]
  sizes = np.bincount(labels)
  groups = [np.flatnonzero(labels == g) for g in np.flatnonzero(sizes > 1)]
  return sorted(groups, key=lambda g: g[0])


def _components(n: int, edges: np.ndarray) -> np.ndarray:
  """Connected-component labels (0..) of n nodes joined by edges (2, E)."""
  labels = np.arange(n)
  while edges.shape[1]:
    low = np.minimum(labels[edges[0]], labels[edges[1]])
    new = labels.copy()
    np.minimum.at(new, edges[0], low)
    np.minimum.at(new, edges[1], low)
    new = new[new]  # pointer jumping: chains shorten geometrically
    if np.array_equal(new, labels):
      break
    labels = new
  return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _separating_cut(modes: _Modes, start: int, classes: np.ndarray | None,
                    code_tol: float, *, zero_only: bool = False) -> int | None:
  """The smallest gap cut d >= start at which ``classes`` (default: all)
  get non-zero (and, unless ``zero_only``, distinct) codes; None if no
  computed cut does. Bisection: separation only grows with d."""
  cuts = _cuts(modes, start)

  def separates(cut: int) -> bool:
    X = _coordinates(modes, 0, cut)
    n2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    rows = slice(None) if classes is None else classes
    if np.any(n2[rows] <= code_tol * n2.max()):
      return False
    if zero_only:
      return True
    norms = np.sqrt(n2)
    sub = X[rows] / norms[rows, None].astype(X.dtype)
    return not _coincident(sub, code_tol * norms.max() / norms[rows])

  lo, hi = 0, cuts.size
  while lo < hi:
    mid = (lo + hi) // 2
    if separates(int(cuts[mid])):
      hi = mid
    else:
      lo = mid + 1
  return int(cuts[lo]) if lo < cuts.size else None


def _listing(classes: np.ndarray, limit: int = 20) -> str:
  more = " ..." if len(classes) > limit else ""
  return f"{np.asarray(classes)[:limit].tolist()}{more}"


def _groups_listing(groups: list[np.ndarray], limit: int = 8) -> str:
  shown = ", ".join(_listing(g, 10) for g in groups[:limit])
  more = f", ... ({len(groups)} groups)" if len(groups) > limit else ""
  return f"[{shown}{more}]"


def _zero_message(zero: np.ndarray, d: int, modes: _Modes, code_tol: float
                  ) -> str:
  cut = _separating_cut(modes, d + 1, zero, code_tol, zero_only=True)
  if cut is not None:
    fix = f"d={cut} gives them one; raise d, or change the kernel"
  elif modes.complete:
    fix = ("no d gives them one (their rows have no positive spectral "
           "content): change the kernel")
  else:
    fix = (f"none of the {modes.lam.size} modes computed gives them one: "
           "raise d, or change the kernel")
  return (f"class(es) {_listing(zero)} get a zero code at d={d}: the top "
          f"{d} modes of this kernel cannot represent them; {fix}.")


def _merged_message(groups: list[np.ndarray], d: int, modes: _Modes,
                    code_tol: float) -> str:
  members = np.concatenate(groups)
  cut = _separating_cut(modes, d, members, code_tol)
  if cut is not None:
    fix = (f"d={cut} separates them (the smallest d that cuts the spectrum "
           "in a gap and does)")
  elif modes.complete:
    fix = "no d separates them: the kernel does not tell them apart"
  else:
    fix = (f"none of the {modes.lam.size} modes computed separates them "
           "(separating_dimension finds the d that does, densely)")
  return (f"classes share a code at d={d}, so a head on these codes cannot "
          f"tell them apart: {_groups_listing(groups)}; {fix}. Pass "
          "allow_merged=True for one code per group (e.g. superclass codes).")

"""Codebooks from the top eigenmodes of a label kernel (classical MDS).

Three things are decided here rather than left to ``eigh``:

* which eigenvalues are *repeated*: equal to within the accuracy they were
  computed to (``_errors``, ``_tie_block``);
* the basis inside a repeated eigenspace that a cut at d splits (equal code
  norms, then maximal separation: ``_separating_basis``), seeded with
  harmonic frames (``_harmonic_frames``);
* whether the normalised codes tell every class apart (zero or coincident
  codes are errors naming the classes and the d that separates them:
  ``_code_defects``, ``separating_dimension``).

A codebook is built once, before training, so all of it runs eagerly. Small
problems run in NumPy (LAPACK float64): a first call costs no compilation.
Large kernels and operators use the JAX eigensolvers, and a large
tie-breaking problem the jitted form of the same objective.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from types import ModuleType
from typing import Any, NamedTuple, TypeAlias, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _eigensolvers
from spectral_targets import _operators
from spectral_targets import _spectral
from spectral_targets import _validation as v
from spectral_targets._jit import jit

# The separation objective compares pairs among at most this many classes.
MAX_PAIR_CLASSES = 512
# Eigenvalues count as computed to this many ulps of the kernel's dtype (times
# max|λ|) at least: exact ties of float32 kernels built with a few
# operations per entry split by at most ~4 ulps in a float64 eigh, and by up
# to ~64 in the jitted float32 eigh at C = 2,000.
TIE_ULPS = 64
# The tie-breaking optimisation: smooth-max sharpness from/to, final weight
# of the norm dispersion, share of the steps an equal-norms-first start
# spends on the norms alone, Adam's learning rate and its final fraction.
BETA = (10.0, 500.0)
RHO = 100.0
# Random starts cycle through these schedules: (equal norms first, β at the
# start of the search).
SCHEDULES = ((False, 10.0), (True, 10.0), (False, 100.0))
# Harmonic frames start separated and with equal norms: a homotopy from a
# sharp β keeps them in their basin (an equal-norms-first start's β = 1
# phase would undo them).
HARMONIC_SCHEDULE = (False, 100.0)
LEAD = 0.2
LEARNING_RATE = (0.05, 0.01)
# Starts whose norm dispersion is within this of the best count as equal.
DISPERSION_SLACK = 1e-4
# Harmonic-frame starts tried at most; random starts chosen automatically
# (``restarts=None``) fill about this much work (starts x steps x (pairs² +
# rows x m)), between these bounds; above JAX_WORK it runs jitted.
HARMONIC_STARTS = 4
# The best few ends are polished: at most this many, for this share of the
# search's steps, with β rising by this factor.
POLISHED, POLISH_STEPS, POLISH_BETA = 6, 0.5, 8.0
# The polish's learning rate, relative to the search's last.
POLISH_RATE = 0.3
AUTO_WORK = 1.5e7
AUTO_RESTARTS = (2, 48)
JAX_WORK = 2e8
# The smooth maximum's exponents, in base 2, are clipped at this (e^-60).
LOG2_E = 1 / math.log(2)
EXP2_CLIP = -60.0 * LOG2_E


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

  When the cut at d falls inside such an eigenspace of multiplicity m, only
  k < m of its directions are kept, and which k is arbitrary: every
  orthonormal :math:`Q \in \mathbb{R}^{m\times k}` gives an equally good
  rank-d approximation, but eigh's choice can send several classes to one
  direction, or to zero. This function chooses Q deliberately: first the
  pre-normalisation row norms as equal as possible (so normalising does not
  distort the Gram matrix), then, among those, the smallest largest pairwise
  cosine (maximal separation, as in the hyperspherical prototypes of Mettes
  et al., 2019). It minimises

  .. math::
    \rho\,\frac{\operatorname{Var}_i \lVert x_i\rVert^2}
      {(\operatorname{mean}_i \lVert x_i\rVert^2)^2}
    + \tfrac{1}{\beta}\log\tfrac{1}{P}\sum_{i<j}\exp(\beta\cos(x_i, x_j))

  over the Stiefel manifold (Q = qf(A), Adam on A, analytic gradient) from
  several starts: random ones that let β rise to 500 from 10 or from 100
  with ρ (to 100) following it, random ones that make the norms equal first
  (ρ = 100 throughout), and equal-norm harmonic frames (rows of a real DFT
  basis, whose cosines depend only on i − j) where the eigenspace holds
  them, as it does for a flat kernel; the best few ends are polished at a
  sharper β. Of the ends, the most equal norms, then the smallest largest
  cosine, win; where the best harmonic frame is provably optimal it is
  taken as it is. So ``flat(9)`` at d = 2 gives the regular 9-gon,
  ``flat(7)`` at d = 4 the harmonic frame with largest cosine 0.2005, and
  ``blocks`` of three superclasses at d = 2 three clusters 120° apart.
  Classes with the same coordinates count once, and beyond 512 distinct
  classes the pairs are taken among those the eigenspace moves (a
  deterministic sample of 512 if more), so no C × C matrix is formed. The
  steps run in NumPy (float32; the ends are compared in float64), jitted
  in JAX when a problem is large enough to pay for the compilation.

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
  to 1,024; randomized subspace iteration above, where d is small), so
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
    method: eigensolver, "auto", "dense", "randomized" or "lobpcg"; see
      ``top_eigenmodes``.
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
  with _one_blas_thread():
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
  tau = _code_rtol(dtype)

  modes = _modes(op, d, degeneracy_rtol, method=method, tol=tol,
                 max_iter=max_iter, seed=seed)
  X = _coordinates(modes, 0, d)
  a, b = _tie_block(modes, d)
  if b > d and modes.lam[d - 1] > modes.err[d - 1]:
    fixed = X[:, :a]
    group = _coordinates(modes, a, b)
    Q = _separating_basis(fixed, group, d - a, steps=steps,
                          restarts=restarts, seed=seed, tau=tau)
    X = np.concatenate([fixed, group @ Q.astype(group.dtype)], axis=1)

  if normalize:
    zero, merged = _code_defects(X, tau, merged=not allow_merged)
    if zero.size:
      raise ValueError(_zero_message(zero, d, modes, tau))
    if merged:
      raise ValueError(_merged_message(merged, d, modes, tau))
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
  tau = _code_rtol(jnp.promote_types(op.dtype, jnp.float32))
  with _one_blas_thread():
    lam, U = _eigensolvers.host_eigenmodes(op)
  modes = _Modes(lam, U, _errors(lam, None, op.dtype, degeneracy_rtol),
                 complete=True)
  cut = _separating_cut(modes, 1, None, tau)
  if cut is None:
    last = _cuts(modes, 1)[-1]
    zero, merged = _code_defects(_coordinates(modes, 0, last), tau)
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


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
  """Every loaded BLAS on one thread while a codebook is built (when
  threadpoolctl is installed). The products and eigh here are small; with
  the cores busy (pytest workers, a data loader, XLA's own threads)
  OpenBLAS's threads wait on each other: a 256-class codebook took 1.9 s
  instead of 13 ms, a 1,000-class one 19 s instead of 0.26 s, and JAX's
  SVD of a 99 x 99 matrix (SciPy's OpenBLAS) 0.5 s instead of 5 ms. The
  libraries are looked up afresh each time (~2 ms): JAX loads SciPy's
  OpenBLAS only at its first LAPACK call, after a cached lookup."""
  try:
    import threadpoolctl
  except ImportError:
    return contextlib.nullcontext()
  limited: contextlib.AbstractContextManager[object] = (
      threadpoolctl.threadpool_limits(limits=1, user_api="blas"))
  return limited


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
  solver = _eigensolvers.resolve_method(method, C, d + extra)
  if solver == "dense":
    lam, U = _eigensolvers.host_eigenmodes(op)
    return _Modes(lam, U, _errors(lam, None, op.dtype, rtol), complete=True)
  cap = min(C, max(4 * d, d + 256))
  while True:
    k = min(C, d + extra)
    top = _eigensolvers.top_eigenmodes(op, k, method=solver, tol=tol,
                                       max_iter=max_iter, seed=seed)
    _spectral.warn_unconverged(top, tol)
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


def _code_defects(X: np.ndarray, tau: float, *, merged: bool = True
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
  """Classes whose code is (numerically) zero, and (if ``merged``) groups
  (index arrays, two or more classes each) whose normalised codes
  coincide."""
  n2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
  zero = np.flatnonzero(n2 <= tau * n2.max())
  if zero.size or not merged:
    return zero, []
  norms = np.sqrt(n2)
  return zero, _coincident(X / norms[:, None].astype(X.dtype),
                           tau * norms.max() / norms)


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
  rep, owner, counts = _unique_rows(np.floor(units / cell))
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
                    tau: float, *, zero_only: bool = False) -> int | None:
  """The smallest gap cut d >= start at which ``classes`` (default: all)
  get non-zero (and, unless ``zero_only``, distinct) codes; None if no
  computed cut does. Bisection: separation only grows with d."""
  cuts = _cuts(modes, start)

  def separates(cut: int) -> bool:
    X = _coordinates(modes, 0, cut)
    n2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    rows = slice(None) if classes is None else classes
    if np.any(n2[rows] <= tau * n2.max()):
      return False
    if zero_only:
      return True
    norms = np.sqrt(n2)
    sub = X[rows] / norms[rows, None].astype(X.dtype)
    return not _coincident(sub, tau * norms.max() / norms[rows])

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


def _zero_message(zero: np.ndarray, d: int, modes: _Modes, tau: float) -> str:
  cut = _separating_cut(modes, d + 1, zero, tau, zero_only=True)
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
                    tau: float) -> str:
  members = np.concatenate(groups)
  cut = _separating_cut(modes, d, members, tau)
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


# --- The basis inside a repeated eigenspace ----------------------------------


# The tie-breaking objective runs on NumPy and JAX arrays alike (``xp`` is
# ``np`` or ``jnp``), through the operations the two share; no type
# describes both, so its arrays are typed as Any.
_XArray: TypeAlias = Any


class _Problem(NamedTuple):
  """The tie-breaking objective's data, over the distinct rows (n) and the
  rows whose cosines enter it (P of them)."""
  fixed_n2: jax.Array | np.ndarray    # (n,) squared norm of the fixed part
  group: jax.Array | np.ndarray       # (n, m) coordinates in the eigenspace
  weights: jax.Array | np.ndarray     # (n,) share of the classes, sum 1
  select: jax.Array | np.ndarray | None  # (n, P) one-hot, None: P = n
  fixed: jax.Array | np.ndarray       # (P, a) fixed coordinates
  bias: jax.Array | np.ndarray        # (P, P) 0 on the pairs Q can change,
                                      # -1000 elsewhere (and the diagonal)
  log_pairs: jax.Array | np.ndarray   # () log of the number of 0s in bias


def _separating_basis(fixed: np.ndarray, group: np.ndarray, k: int, *,
                      steps: int, restarts: int | None, seed: int,
                      tau: float) -> np.ndarray:
  """Q (m, k) with orthonormal columns choosing the kept part of a repeated
  eigenspace: equal code norms first, then maximal separation."""
  m = group.shape[1]
  a = fixed.shape[1]
  # Classes with equal coordinates get equal codes whatever Q is: work on
  # the distinct rows, weighted by how many classes share each.
  everything = np.concatenate([fixed, group], axis=1)
  distinct, counts = _distinct_rows(everything, tau)
  rows = everything[distinct].astype(np.float64)
  pairs = _pair_rows(rows[:, a:], tau, seed)
  full = rows[pairs]
  # Near-equal rows on either side of a rounding boundary still coincide;
  # their cosine is 1 for good and must not drown the others.
  sq = (full**2).sum(1)
  dist2 = sq[:, None] + sq[None, :] - 2 * full @ full.T
  mask = dist2 > tau**2 * sq.max()
  np.fill_diagonal(mask, False)
  if not mask.any():
    return np.eye(m, k)
  n = rows.shape[0]
  select = None
  if pairs.size < n:
    select = np.zeros((n, pairs.size))
    select[pairs, np.arange(pairs.size)] = 1.0
  problem = _Problem(fixed_n2=(rows[:, :a]**2).sum(1), group=rows[:, a:],
                     weights=counts / counts.sum(), select=select,
                     fixed=full[:, :a], bias=np.where(mask, 0.0, -1e3),
                     log_pairs=np.log(mask.sum()))
  harmonic = _harmonic_frames(problem, k)
  if harmonic.optimal and restarts is None:
    # Provably optimal, once its codes are checked to be that frame.
    _, Q, disp, worst = _result(harmonic.starts[:1], problem)
    if disp[0] <= 1e-9 and worst[0] <= harmonic.worst[0] + 1e-6:
      best: np.ndarray = Q[0]
      return best
  size = pairs.size**2 + n * m
  if restarts is None:
    # As many starts as AUTO_WORK pays for: the best harmonic frames first.
    budget = int(AUTO_WORK // max(steps * size, 1))
    harmonic = harmonic._replace(starts=harmonic.starts[:max(budget, 1)])
    restarts = int(np.clip(budget - len(harmonic.starts), *AUTO_RESTARTS))
  rng = np.random.default_rng(seed)
  starts = np.concatenate([harmonic.starts, np.linalg.qr(
      rng.standard_normal((restarts, m, k)))[0]])
  # Harmonic frames start with equal norms, and keep them; random starts
  # cycle through the schedules.
  h, cycle = len(harmonic.starts), np.arange(restarts) % len(SCHEDULES)
  plan = _Plan(np.r_[np.full(h, HARMONIC_SCHEDULE[0]),
                     [SCHEDULES[i][0] for i in cycle]],
               np.r_[np.full(h, HARMONIC_SCHEDULE[1]),
                     [SCHEDULES[i][1] for i in cycle]])
  work = len(starts) * steps * size
  optimise = _optimise_jax if work > JAX_WORK else _optimise_numpy
  A, Q, disp, worst = optimise(problem, starts, plan, steps, False)
  # Polish the best few ends (a quarter of the starts, 2 to POLISHED),
  # then choose again.
  finalists = _ranking(disp, worst)[:int(np.clip(len(starts) // 4, 2,
                                                 POLISHED))]
  A, Q2, disp2, worst2 = optimise(problem, A[finalists],
                                  jax.tree.map(lambda x: x[finalists], plan),
                                  int(POLISH_STEPS * steps), True)
  Q = np.concatenate([Q, Q2])
  disp, worst = np.r_[disp, disp2], np.r_[worst, worst2]
  best = Q[_ranking(disp, worst)[0]]
  return best


def _ranking(disp: np.ndarray, worst: np.ndarray) -> np.ndarray:
  """Starts in lexicographic order: the most equal norms (to within
  DISPERSION_SLACK) first, then the best separation."""
  ok = disp <= disp.min() + DISPERSION_SLACK
  return np.lexsort((worst, ~ok))


def _distinct_rows(x: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
  """Indices of one row per group of (numerically) equal rows of x, and
  the size of each group."""
  grid = tau * np.sqrt(np.max(np.sum(x.astype(np.float64)**2, axis=1)))
  first, _, counts = _unique_rows(np.round(x / max(grid,
                                                    np.finfo(float).tiny)))
  order = np.argsort(first)
  return first[order], counts[order].astype(np.float64)


def _unique_rows(keys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """np.unique(keys, axis=0)'s first indices, inverse and counts for
  integer-valued keys, each row compared as one block of bytes (several
  times faster than a lexicographic sort of wide rows). Keys of an integer
  dtype keep it (uint8 keys: a row is as many bytes as it has entries, and
  the rows come in np.unique's lexicographic order); others are cast to
  int64."""
  if not np.issubdtype(keys.dtype, np.integer):
    keys = keys.astype(np.int64)
  keys = np.ascontiguousarray(keys)
  rows = keys.view(np.dtype((np.void, keys.itemsize * keys.shape[1]))
                   ).reshape(-1)
  _, first, inverse, counts = np.unique(rows, return_index=True,
                                        return_inverse=True,
                                        return_counts=True)
  return first, inverse.reshape(-1), counts


def _pair_rows(group: np.ndarray, tau: float, seed: int) -> np.ndarray:
  """The rows whose pairwise cosines enter the objective: all of them up to
  MAX_PAIR_CLASSES; else those the eigenspace moves (coordinates in it not
  ~0), sampled down to MAX_PAIR_CLASSES."""
  n = group.shape[0]
  if n <= MAX_PAIR_CLASSES:
    return np.arange(n)
  n2 = np.sum(group**2, axis=1)
  moved = np.flatnonzero(n2 > tau * n2.max())
  if moved.size > MAX_PAIR_CLASSES:
    rng = np.random.default_rng(seed)
    moved = np.sort(rng.choice(moved, MAX_PAIR_CLASSES, replace=False))
  return moved


class _Harmonic(NamedTuple):
  starts: np.ndarray     # (h, m, k) Q of the best harmonic frames
  worst: np.ndarray      # (h,) their largest cosine, in closed form
  optimal: bool          # the first is provably the best possible


def _harmonic_frames(problem: _Problem, k: int, limit: int = HARMONIC_STARTS,
                     candidates: int = 2000) -> _Harmonic:
  """Starts whose codes are harmonic frames over the distinct rows.

  A real harmonic frame takes k columns cos(2π f t / n), sin(2π f t / n)
  (one column for f = 0 and f = n / 2) of a DFT basis over the n rows t:
  its rows have equal norms and cosines that depend only on the row
  difference, (1/k) Σ_f dim_f cos(2π f t / n), scored here in closed form
  for every set of frequencies whose columns lie in the eigenspace (or a
  deterministic sample of ``candidates`` sets), to keep the ``limit`` best.
  Without a fixed part, on equally weighted rows (a flat kernel, or
  superclass blocks), the best frame is provably optimal when k = 2 (the
  regular n-gon: no n points on a circle do better than cos(2π / n)) or
  when its largest cosine is 0 with n >= k + 2 (no n >= k + 2 vectors in
  R^k have only obtuse pairs: Rankin, 1955)."""
  group = problem.group
  n, m = group.shape
  none = _Harmonic(np.zeros((0, m, k)), np.zeros(0), False)
  if n < 3:
    return none
  basis, r = np.linalg.qr(group)
  basis = basis[:, np.abs(np.diagonal(r)) > 1e-8 * np.abs(r).max()]
  freqs = np.arange(n // 2 + 1)
  angle = 2 * np.pi * np.outer(np.arange(n), freqs) / n
  cos, sin = np.cos(angle), np.sin(angle)
  single = (freqs == 0) | (2 * freqs == n)
  sin[:, single] = cos[:, single]  # (sin is 0 there; only cos is used)

  def inside(cols: np.ndarray) -> np.ndarray:
    cols = cols / np.linalg.norm(cols, axis=0)
    spanned: np.ndarray = np.sum((basis.T @ cols)**2, axis=0) > 1 - 1e-8
    return spanned

  usable = inside(cos) & inside(sin)
  ones, twos = freqs[usable & single], freqs[usable & ~single]
  plans = [(q, (k - q) // 2) for q in range(min(ones.size, k) + 1)
           if (k - q) % 2 == 0 and (k - q) // 2 <= twos.size]
  if not plans:
    return none
  counts = np.array([math.comb(ones.size, q) * math.comb(twos.size, p)
                     for q, p in plans], float)
  # (sets, frequencies): 2 for a cos/sin pair, 1 for a single. Built and
  # scored a block of sets at a time: whole, the float64 temporaries come
  # to ~10 MB at 256 rows, and fresh memory is page-faulted in (~4 ms).
  weight: np.ndarray
  if counts.sum() <= candidates:
    sets = []
    for q, p in plans:
      for s1 in itertools.combinations(ones, q):
        for s2 in itertools.combinations(twos, p):
          w = np.zeros(freqs.size, np.uint8)
          w[list(s1)], w[list(s2)] = 1, 2
          sets.append(w)
    weight = np.array(sets)
  else:
    rng = np.random.default_rng(0)
    plan = rng.choice(len(plans), candidates, p=counts / counts.sum())
    weight = np.zeros((candidates, freqs.size), np.uint8)
    for i, (q, p) in enumerate(plans):
      for chosen, value, pick in ((ones, 1, q), (twos, 2, p)):
        # (The random stream is the same in blocks of rows as whole.)
        for rows in np.array_split(np.flatnonzero(plan == i),
                                   range(64, candidates, 64)):
          order = np.argsort(rng.random((rows.size, chosen.size)), axis=1)
          weight[rows[:, None], chosen[order[:, :pick]]] = value
    # Distinct sets, in np.unique(weight, axis=0)'s order (as bytes: ~10x
    # faster than its field-by-field sort).
    weight = weight[_unique_rows(weight)[0]]
  cos_t = np.ascontiguousarray(cos[1:].T)
  worst = np.concatenate([(w.astype(float) @ cos_t).max(axis=1)
                          for w in np.array_split(weight,
                                                  range(64, len(weight), 64))]
                         ) / k
  # The best frames with distinct scores (equal scores are usually one
  # frame relabelled).
  order = np.argsort(worst, kind="stable")
  keep = [order[0]]
  for i in order[1:]:
    if len(keep) == limit:
      break
    if worst[i] > worst[keep[-1]] + 1e-9:
      keep.append(i)
  starts = []
  for i in keep:
    chosen = np.flatnonzero(weight[i])
    H = np.concatenate([cos[:, chosen], sin[:, chosen[weight[i, chosen] == 2]]],
                       axis=1)
    # The orthonormal Q whose codes group @ Q are closest to the frame.
    u, _, vt = np.linalg.svd(group.T @ H, full_matrices=False)
    starts.append(u @ vt)
  plain = (problem.fixed_n2.max() == 0
           and np.ptp(problem.weights) <= 1e-12 * problem.weights.max())
  best = worst[keep[0]]
  optimal = plain and (
      (k == 2 and best <= np.cos(2 * np.pi / n) + 1e-12)
      or (n >= k + 2 and best <= 1e-12))
  return _Harmonic(np.stack(starts), worst[keep], bool(optimal))


class _Plan(NamedTuple):
  """Each start's schedule (see ``_schedule``)."""
  equal_first: np.ndarray | jax.Array  # (R,) bool
  beta0: np.ndarray | jax.Array        # (R,) β where the search starts


def _stiefel(xp: ModuleType, A: _XArray) -> tuple[_XArray, _XArray]:
  """Q = A R^{-1} and R^{-1}, for A = QR with R's diagonal positive (so Q
  is smooth in A), by Cholesky: R = chol(AᵀA)ᵀ. A (R, m, k) is small in k
  and stays well conditioned (condition numbers below 20 in the searches
  here; the starts are orthonormal), where this is as accurate as a
  Householder QR and, batched in NumPy, several times cheaper."""
  L = xp.linalg.cholesky(xp.swapaxes(A, -1, -2) @ A)
  inverse = xp.linalg.inv(xp.swapaxes(L, -1, -2))
  return A @ inverse, inverse


def _rows_times(xp: ModuleType, G: _XArray, B: _XArray) -> _XArray:
  """G (n, m) times each of B (R, m, k), as one (n, m) x (m, R k) product
  (NumPy's stacked matmul does not reach BLAS for this broadcast)."""
  R, m, k = B.shape
  out = G @ xp.reshape(xp.transpose(B, (1, 0, 2)), (m, R * k))
  return xp.transpose(xp.reshape(out, (G.shape[0], R, k)), (1, 0, 2))


def _transposed(xp: ModuleType, x: _XArray) -> _XArray:
  """x with its last two axes swapped; contiguous in NumPy, whose stacked
  matmul reaches BLAS for it (8x faster at (3, 256, 8) than the view)."""
  x = xp.swapaxes(x, -1, -2)
  return np.ascontiguousarray(x) if xp is np else x


class _Workspace(NamedTuple):
  """NumPy arrays that R starts' pairwise terms are computed in, in place
  (``_workspace``)."""
  pairs: np.ndarray    # (R, P, P)
  masked: np.ndarray   # flat indices into (P, P) of bias's nonzero entries
  bias: np.ndarray     # bias there
  floor: np.ndarray    # (P, P), filled with the exponents' clip


def _workspace(problem: _Problem, R: int, dtype: type[np.floating[Any]]
               ) -> _Workspace:
  """The arrays ``_objective`` works in for R starts of ``problem``."""
  P = problem.bias.shape[0]
  bias = np.asarray(problem.bias, dtype).reshape(-1)
  masked = np.flatnonzero(bias)
  return _Workspace(np.empty((R, P, P), dtype), masked, bias[masked],
                    np.full((P, P), EXP2_CLIP, dtype))


def _into(out: np.ndarray | None, f: Any, *args: _XArray) -> _XArray:
  """f(*args), written into ``out`` when one is given (a NumPy buffer that
  an operation on JAX arrays, or on NumPy ones without a buffer, never
  gets)."""
  return f(*args) if out is None else f(*args, out=out)


def _objective(xp: ModuleType, A: _XArray, beta: _XArray, rho: _XArray,
               p: _Problem, work: _Workspace | None = None
               ) -> tuple[_XArray, _XArray, _XArray, _XArray, _XArray]:
  """The tie-breaking objective at each of R parameter blocks A (R, m, k)
  and its gradient (analytic: this runs in NumPy and in JAX alike).

  The cosines are the Gram matrix of the unit codes u_i = x_i / |x_i|, x_i
  = [fixed_i, (group Q)_i]; the smooth maximum runs over the ordered pairs
  ``p.bias`` keeps (each pair twice, which leaves it unchanged), so its
  softmax weights π are symmetric and dL/du = 2 π u. The other entries sit
  1000 below and add nothing to float precision.

  ``work``, NumPy only (``_workspace``, in A's dtype): the pairwise terms
  are computed in it, in place (the same values). Fresh temporaries of
  that size can cost more than the arithmetic: at 256 rows and three
  starts each is ~0.8 MB in float32, which glibc may map afresh and the
  kernel fault in page by page (1.4 ms a step with temporaries, 0.5 ms in
  place). The bias is added where it is nonzero only, and the clip is
  taken against a (P, P) plane (NumPy's maximum with a scalar is 5x
  slower).

  Returns (loss (R,), dloss/dA (R, m, k), Q (R, m, k), dispersion (R,),
  largest cosine (R,))."""
  Q, inverse = _stiefel(xp, A)
  M = _rows_times(xp, p.group, Q)                        # (R, n, k)
  n2 = p.fixed_n2 + xp.einsum("rnk,rnk->rn", M, M)       # (R, n)
  mean = n2 @ p.weights                                  # (R,)
  dev = n2 - mean[:, None]
  wdev = p.weights * dev
  disp = xp.einsum("rn,rn->r", wdev, dev) / mean**2
  if p.select is None:
    Mp, n2p = M, n2
  else:
    Mp, n2p = _rows_times(xp, p.select.T, M), n2 @ p.select
  s = 1 / xp.sqrt(n2p + 1e-30)                           # (R, P)
  if p.fixed.shape[-1]:
    fixed = xp.broadcast_to(p.fixed, Mp.shape[:2] + p.fixed.shape[-1:])
    Mp = xp.concatenate([fixed, Mp], axis=-1)
  u = Mp * s[..., None]                                  # (R, P, a + k)
  # e = exp(β (cos - top)) = 2^(z - max z), z = β log2(e) cos the Gram
  # matrix of the codes scaled by sqrt(β log2(e)) (NumPy's float32 exp2 is
  # twice as fast as its exp), exponents clipped at -60 / ln 2: a pair that
  # far below the largest adds e^-60 of its weight (nothing, to float32
  # precision), and no subnormal number is ever met (NumPy's float64 exp
  # is 50x slower on them; float32 exp and BLAS can be on some CPUs).
  scale = beta * LOG2_E                                  # (R,)
  v = u * xp.sqrt(scale)[:, None, None]
  out: np.ndarray | None
  floor: np.ndarray | float
  if work is None:
    z = v @ _transposed(xp, v) + scale[:, None, None] * p.bias
    out, floor = None, EXP2_CLIP
  else:
    out, floor = work.pairs, work.floor
    z = np.matmul(v, _transposed(np, v), out=out)
    z.reshape(len(z), -1)[:, work.masked] += scale[:, None] * work.bias
  ztop = xp.max(z, axis=(-2, -1), keepdims=True)
  top = ztop[:, 0, 0] / scale                            # largest cosine
  e = _into(out, xp.subtract, z, ztop)
  e = _into(out, xp.maximum, e, floor)
  e = _into(out, xp.exp2, e)
  # Σ e as the sum of the row sums e @ 1 (a product: 3x faster in NumPy
  # than its sum over P²).
  total = xp.sum(e @ xp.ones_like(u[0, :, 0]), axis=-1)
  smooth = top + (xp.log(total) - p.log_pairs) / beta
  loss = rho * disp + smooth
  # Through u = x / |x|: dL/dx = (g - (g . u) u) / |x|.
  g = e @ u                                  # dL/du, times total / 2
  gu = xp.einsum("rpk,rpk->rp", g, u)
  gx = (g - gu[..., None] * u) * (s * (2 / total)[:, None])[..., None]
  gMp = gx[..., p.fixed.shape[-1]:]
  gn2 = (2 * rho / mean**2)[:, None] * (wdev
                                        - p.weights * (disp * mean)[:, None])
  gM = 2 * M * gn2[..., None] + (
      gMp if p.select is None else _rows_times(xp, p.select, gMp))
  gQ = _rows_times(xp, p.group.T, gM)
  # Through A = QR: dA = (dQ + Q copyltu(-dQᵀQ)) R^{-T}.
  lower = -xp.swapaxes(gQ, -1, -2) @ Q
  sym = xp.where(xp.tri(lower.shape[-1], dtype=bool), lower,
                 xp.swapaxes(lower, -1, -2))
  gA = (gQ + Q @ sym) @ xp.swapaxes(inverse, -1, -2)
  return loss, gA, Q, disp, top


def _schedule(xp: ModuleType, t: _XArray, steps: int, plan: _Plan,
              polish: bool) -> tuple[_XArray, _XArray, _XArray]:
  """β, ρ and the learning rate of each start at step t.

  The search: a homotopy (β rising geometrically, ρ with it) lets
  separation find its basin before the norms are forced equal (a large
  fixed ρ traps the 20-gon in uneven minima); an equal-norms-first start
  spends LEAD of the steps on the norms (β = 1), then raises β at ρ = RHO
  (it finds frames whose equal-norm versions the homotopy's basins miss).
  The polish of the best ends: β from BETA[1] up by POLISH_BETA with ρ in
  proportion, at a tenth of the learning rate, so the smooth maximum
  approaches the largest cosine itself."""
  def grow(f: _XArray, lo: _XArray, hi: float) -> _XArray:
    return lo * (hi / lo) ** f

  frac = xp.minimum(t / max(steps - 1, 1), 1.0)
  lr0, alpha = LEARNING_RATE
  decay = (1 - alpha) * 0.5 * (1 + xp.cos(np.pi * t / max(steps, 1))) + alpha
  if polish:
    beta = grow(frac, BETA[1], BETA[1] * POLISH_BETA) + 0 * plan.beta0
    return beta, RHO * beta / BETA[1], POLISH_RATE * lr0 * alpha * decay
  lead = max(int(LEAD * steps), 1)
  late = xp.clip((t - lead) / max(steps - lead - 1, 1), 0.0, 1.0)
  beta = xp.where(plan.equal_first,
                  xp.where(t < lead, 1.0, grow(late, plan.beta0, BETA[1])),
                  grow(frac, plan.beta0, BETA[1]))
  rho = xp.where(plan.equal_first, RHO, RHO * beta / BETA[1])
  return beta, rho, lr0 * decay


_AdamState: TypeAlias = tuple[_XArray, _XArray, _XArray]


def _adam_step(xp: ModuleType, t: _XArray, state: _AdamState,
               problem: _Problem, beta: _XArray, rho: _XArray, lr: _XArray,
               work: _Workspace | None = None) -> _AdamState:
  """One Adam step at step t with the schedule's β, ρ (R,) and learning
  rate."""
  A, m1, m2 = state
  _, g, *_ = _objective(xp, A, beta, rho, problem, work)
  b1, b2 = 0.9, 0.999
  m1 = b1 * m1 + (1 - b1) * g
  m2 = b2 * m2 + (1 - b2) * g * g
  step = (m1 / (1 - b1 ** (t + 1))) / (xp.sqrt(m2 / (1 - b2 ** (t + 1)))
                                       + 1e-8)
  return A - lr * step, m1, m2


def _result(A: _XArray, problem: _Problem
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """A, and the orthonormal Q, norm dispersion and largest cosine of each
  start's end point, in float64 (from either optimiser)."""
  A = np.linalg.qr(np.asarray(A, np.float64))[0]  # orthonormal: same Q
  R = A.shape[0]
  _, _, Q, disp, worst = _objective(np, A, np.full(R, BETA[1]),
                                    np.full(R, RHO), problem,
                                    _workspace(problem, R, np.float64))
  return A, Q, disp, worst


def _optimise_numpy(problem: _Problem, starts: np.ndarray, plan: _Plan,
                    steps: int, polish: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  # The steps in float32, as in JAX (about twice as fast as float64 at 256
  # rows; the ends are re-evaluated in float64). Every operand is float32,
  # the schedule's β, ρ and learning rate included: one float64 scalar
  # would promote A, and with it every later step, to float64.
  f32 = jax.tree.map(lambda x: np.asarray(x, np.float32), problem)
  A = np.asarray(starts, np.float32)
  state = (A, np.zeros_like(A), np.zeros_like(A))
  # The schedule of every step at once.
  beta, rho, lr = (np.asarray(x, np.float32) for x in _schedule(
      np, np.arange(steps)[:, None], steps, plan, polish))
  work = _workspace(f32, A.shape[0], np.float32)
  for t in range(steps):
    state = _adam_step(np, t, state, f32, beta[t], rho[t], lr[t], work)
  return _result(state[0], problem)


def _optimise_jax(problem: _Problem, starts: np.ndarray, plan: _Plan,
                  steps: int, polish: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  dtype = jnp.result_type(float)

  def cast(x: np.ndarray) -> jax.Array:
    return jnp.asarray(x, dtype)

  A = _optimise_jitted(jax.tree.map(cast, problem), jnp.asarray(starts, dtype),
                       _Plan(jnp.asarray(plan.equal_first),
                             jnp.asarray(plan.beta0, dtype)), steps, polish)
  return _result(A, problem)


@jit(static_argnums=(3, 4))
def _optimise_jitted(problem: _Problem, starts: jax.Array, plan: _Plan,
                     steps: int, polish: bool) -> jax.Array:
  def body(t: jax.Array, state: _AdamState) -> _AdamState:
    beta, rho, lr = _schedule(jnp, t, steps, plan, polish)
    return _adam_step(jnp, t, state, problem, beta, rho, lr)

  zeros = jnp.zeros_like(starts)
  end: jax.Array = jax.lax.fori_loop(0, steps, body, (starts, zeros, zeros))[0]
  return end

"""Codebooks from the top eigenmodes of a label kernel (classical MDS).

The one subtlety is a cut at d through a repeated eigenvalue: eigh returns
an arbitrary basis of that eigenspace, and the normalised codes it gives can
collapse (see ``spectral_codebook``). The choice inside the eigenspace is made
here, deliberately.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spectral_targets import _eigensolvers
from spectral_targets import _operators
from spectral_targets import _spectral
from spectral_targets import _validation as v

# The separation objective compares pairs among at most this many classes.
MAX_PAIR_CLASSES = 512


def spectral_codebook(kernel, d: int, *,
                      normalize: bool = True,
                      method: str = "auto", tol: float = 1e-5,
                      max_iter: int = 500,
                      degeneracy_rtol: float | None = None,
                      steps: int = 400, restarts: int = 8,
                      seed: int = 0) -> jax.Array:
  r"""One code per class from the top-d eigenmodes of a label kernel.

  .. math::
    S = U \Lambda U^\top,\qquad X = U_d \max(\Lambda_d, 0)^{1/2},\qquad
    c_i = x_i / \lVert x_i\rVert

  Unnormalised, :math:`XX^\top` is the best rank-d PSD approximation of S
  (classical MDS / kernel PCA; see ``gram_error``); normalised, the rows are
  unit codes whose Gram matrix approximates S.

  **Repeated eigenvalues.** When the cut at d falls inside an eigenspace of
  multiplicity m (eigenvalues within ``degeneracy_rtol * max|λ|`` of
  :math:`\lambda_d`), only k < m of its directions are kept, and which k is
  arbitrary: every orthonormal :math:`Q \in \mathbb{R}^{m\times k}` gives an
  equally good rank-d approximation, but eigh's choice can send several
  classes to one direction, or to zero. This function chooses Q
  deliberately: first the pre-normalisation row norms as equal as possible
  (so normalising does not distort the Gram matrix), then, among those, the
  smallest largest pairwise cosine (maximal separation, as in the
  hyperspherical prototypes of Mettes et al., 2019). It minimises

  .. math::
    \rho\,\frac{\operatorname{Var}_i \lVert x_i\rVert^2}
      {(\operatorname{mean}_i \lVert x_i\rVert^2)^2}
    + \tfrac{1}{\beta}\log\tfrac{1}{P}\sum_{i<j}\exp(\beta\cos(x_i, x_j))

  over the Stiefel manifold (Q = qf(A), Adam on A; β rises from 10 to 500
  and ρ with it, to 100; a few deterministic random starts, and the start
  with the most equal norms, then the smallest largest cosine, is kept), with pairs whose cosine no Q
  can change left out. So ``flat(9)`` at d = 2 gives the regular 9-gon and
  ``blocks`` of three superclasses at d = 2 gives three clusters 120° apart.
  Classes with the same coordinates count once in the pairs, and beyond
  512 distinct classes the pairs are taken among those the repeated
  eigenspace moves (a deterministic sample of 512 of them if more), so
  no C × C matrix is formed.

  **Many classes.** The modes come from ``top_eigenmodes`` with ``method``
  (default "auto": a dense ``eigh`` below 2,048 classes, randomized
  subspace iteration above, where d is small), so ``kernel`` may be a
  ``KernelOperator`` such as ``from_hierarchy(..., implicit=True)``. The
  iterative solvers compute a few modes past d to see whether the cut falls
  in a repeated eigenvalue, and more if the tie reaches the last of them;
  a tie too long to bracket (more than max(4 d, d + 256) modes) raises
  ``ValueError`` naming the d just below the tie, which cuts in a gap. An
  unconverged solve warns with ``ConvergenceWarning``.

  This step needs the kernel's values, so the function runs eagerly (build a
  codebook once, before training); it raises ``TypeError`` under ``jit``.

  Args:
    kernel: (C, C) symmetric kernel, or a ``KernelOperator`` (any object
      with a square ``shape`` and a traceable ``@``).
    d: code dimension, 1 <= d <= C.
    normalize: return unit rows (default) or the MDS coordinates X.
    method: eigensolver, "auto", "dense", "randomized" or "lobpcg"; see
      ``top_eigenmodes``.
    tol: residual tolerance of an iterative solver.
    max_iter: iteration cap of an iterative solver.
    degeneracy_rtol: relative gap below which eigenvalues count as equal.
      Default: the square root of the dtype's epsilon (3.5e-4 in float32).
    steps: optimisation steps when a cut falls in a repeated eigenvalue.
    restarts: deterministic random starts of that optimisation.
    seed: seed of those starts.

  Returns:
    (C, d) codes.

  Raises:
    ValueError: with ``normalize=True``, if a class gets a (near-)zero code
      (squared norm below ``degeneracy_rtol`` times the largest), so cannot
      be represented at this d; the message names the classes.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> codes = st.spectral_codebook(st.flat(9), 2)  # the regular 9-gon
    >>> angles = jnp.sort(jnp.arctan2(codes[:, 1], codes[:, 0]))
    >>> jnp.degrees(jnp.diff(angles)).round(1)
    Array([40., 40., 40., 40., 40., 40., 40., 40.], dtype=float32)

  References:
    Mettes, van der Pol & Snoek, "Hyperspherical Prototype Networks",
    NeurIPS 2019.
  """
  if not all(map(v.is_concrete, jax.tree.leaves(kernel))):
    raise TypeError(
        "spectral_codebook needs a concrete kernel: how a repeated eigenvalue "
        "is resolved depends on its values. Build the codebook once, outside "
        "jit, and pass the (C, d) result into the traced function.")
  op = _operators.as_operator(kernel)
  C = op.num_classes
  d = v.check_int(d, "d", minimum=1, maximum=C)
  steps = v.check_int(steps, "steps", minimum=0)
  restarts = v.check_int(restarts, "restarts", minimum=1)
  eps = float(jnp.finfo(op.dtype).eps)
  rtol = np.sqrt(eps) if degeneracy_rtol is None else degeneracy_rtol
  v.check_positive(rtol, "degeneracy_rtol")

  lam, U = _modes(op, d, rtol, method=method, tol=tol, max_iter=max_iter,
                  seed=seed)
  lam_np = np.asarray(lam)
  tol_lam = rtol * max(float(np.abs(lam_np).max()), np.finfo(np.float32).tiny)
  X = _coordinates(lam, U, d)

  # The block of eigenvalues tied with lambda_d; a cut inside it is ambiguous.
  tied = np.flatnonzero(np.abs(lam_np - lam_np[d - 1]) <= tol_lam)
  a, b = int(tied.min()), int(tied.max()) + 1
  if b > d and lam_np[d - 1] > tol_lam:
    fixed = _coordinates(lam, U, a)
    group = _coordinates(lam[a:b], U[:, a:b], b - a)
    Q = _separating_basis(fixed, group, d - a, steps=steps,
                          restarts=restarts, seed=seed, rtol=rtol)
    X = jnp.concatenate([fixed, group @ Q], axis=1)

  if not normalize:
    return X
  # A code this small is eigensolver noise; normalising would blow it up.
  norms = jnp.linalg.norm(X, axis=1)
  n2 = np.asarray(norms, np.float64) ** 2
  zero = np.flatnonzero(n2 <= rtol * n2.max())
  if zero.size:
    raise ValueError(
        f"class(es) {zero.tolist()[:20]}{' ...' if zero.size > 20 else ''} "
        f"get a zero code at d={d}: the top {d} modes of this kernel cannot "
        "represent them. Raise d, or change the kernel.")
  return X / norms[:, None]


def _modes(op, d, rtol, *, method, tol, max_iter, seed):
  """Eigenvalues (descending) and eigenvectors: all C from a dense eigh, or
  from an iterative solver enough past d to bracket a tie at the cut."""
  C = op.num_classes
  extra = max(8, d // 8)
  method = _eigensolvers.resolve_method(method, C, d + extra)
  if method == "dense":
    return _spectral._eigenmodes(op.to_dense())
  cap = min(C, max(4 * d, d + 256))
  while True:
    k = min(C, d + extra)
    top = _eigensolvers.top_eigenmodes(op, k, method=method, tol=tol,
                                       max_iter=max_iter, seed=seed)
    _spectral.warn_unconverged(top, tol)
    lam = np.asarray(top.eigenvalues)
    tie = np.abs(lam - lam[d - 1]) <= rtol * np.abs(lam).max()
    if k == C or not tie[-1]:
      return top.eigenvalues, top.eigenvectors
    if k >= cap:
      first = int(np.flatnonzero(tie)[0])
      hint = f"d={first} cuts in a gap, or " if first else ""
      raise ValueError(
          f"d={d} cuts an eigenvalue ({lam[d - 1]:.4g}) repeated more than "
          f"{k - first} times, too many to resolve without a dense "
          f"eigendecomposition; {hint}pass method='dense'.")
    extra *= 2


@functools.partial(jax.jit, static_argnums=2)
def _coordinates(lam, U, d):
  """MDS coordinates U_d max(Λ_d, 0)^{1/2} of the top d modes."""
  return U[:, :d] * jnp.sqrt(jnp.maximum(lam[:d], 0))


def _separating_basis(fixed, group, k, *, steps, restarts, seed, rtol):
  """Q (m, k) with orthonormal columns choosing the kept part of a repeated
  eigenspace: equal code norms first, then maximal separation."""
  m = group.shape[1]
  everything = np.asarray(jnp.concatenate([fixed, group], axis=1), np.float64)
  # Classes with equal coordinates get equal codes whatever Q is: work on
  # the distinct rows, weighted by how many classes share each.
  distinct, counts = _distinct_rows(everything, rtol)
  rows = everything[distinct]
  pairs = _pair_rows(rows[:, fixed.shape[1]:], rtol, seed)
  full = rows[pairs]
  # Near-equal rows on either side of a rounding boundary still coincide;
  # their cosine is 1 for good and must not drown the others.
  sq = (full**2).sum(1)
  dist2 = sq[:, None] + sq[None, :] - 2 * full @ full.T
  same = dist2 <= rtol**2 * sq.max()
  mask = jnp.asarray(np.triu(~same, k=1))
  if not bool(mask.any()):
    return jnp.eye(m, k, dtype=group.dtype)
  dtype = group.dtype
  starts = jax.random.normal(jax.random.key(seed), (restarts, m, k),
                             dtype=dtype)
  fixed_rows = rows[:, :fixed.shape[1]]
  Qs, disp, worst = _optimise(
      jnp.asarray((fixed_rows**2).sum(1), dtype),
      jnp.asarray(rows[:, fixed.shape[1]:], dtype),
      jnp.asarray(counts / counts.sum(), dtype),
      jnp.asarray(fixed_rows[pairs] @ fixed_rows[pairs].T, dtype),
      jnp.asarray(pairs), mask,
      starts, steps)
  disp, worst = np.asarray(disp), np.asarray(worst)
  # Lexicographic choice: the most equal norms, then the best separation.
  ok = disp <= disp.min() + 1e-4
  best = np.flatnonzero(ok)[np.argmin(worst[ok])]
  return Qs[best]


def _distinct_rows(x, rtol):
  """Indices of one row per group of (numerically) equal rows of x, and
  the size of each group."""
  grid = rtol * np.sqrt(np.max(np.sum(x**2, axis=1)))
  _, first, counts = np.unique(np.round(x / max(grid, np.finfo(float).tiny)),
                               axis=0, return_index=True, return_counts=True)
  order = np.argsort(first)
  return first[order], counts[order].astype(np.float64)


def _pair_rows(group, rtol, seed):
  """The rows whose pairwise cosines enter the objective: all of them up to
  MAX_PAIR_CLASSES; else those the eigenspace moves (coordinates in it not
  ~0), sampled down to MAX_PAIR_CLASSES."""
  n = group.shape[0]
  if n <= MAX_PAIR_CLASSES:
    return np.arange(n)
  n2 = np.sum(group**2, axis=1)
  moved = np.flatnonzero(n2 > rtol * n2.max())
  if moved.size > MAX_PAIR_CLASSES:
    rng = np.random.default_rng(seed)
    moved = np.sort(rng.choice(moved, MAX_PAIR_CLASSES, replace=False))
  return moved


def _stiefel(A):
  q, r = jnp.linalg.qr(A)
  return q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(q.dtype)


def _terms(A, fixed_n2, group, weights, fixed_gram, pairs):
  """Q, the norms' dispersion Var/mean² (weighted over distinct rows) and
  the cosines among the pair rows. The fixed part enters only through its
  precomputed norms and Gram matrix, so a step costs O(rows · m · k +
  pairs² · k), not O(pairs² · d)."""
  Q = _stiefel(A)
  moved = group @ Q
  n2 = fixed_n2 + jnp.sum(moved**2, axis=1)
  mean = jnp.sum(weights * n2)
  disp = jnp.sum(weights * (n2 - mean) ** 2) / mean**2
  inv = jax.lax.rsqrt(n2[pairs] + 1e-12)
  gram = fixed_gram + moved[pairs] @ moved[pairs].T
  return Q, disp, gram * inv[:, None] * inv[None, :]


@functools.partial(jax.jit, static_argnums=7)
def _optimise(fixed_n2, group, weights, fixed_gram, pairs, mask, starts,
              steps):
  beta_start, beta_end, rho_end = 10.0, 500.0, 100.0
  log_pairs = jnp.log(jnp.sum(mask))

  def loss(A, beta):
    _, disp, cos = _terms(A, fixed_n2, group, weights, fixed_gram, pairs)
    smooth_max = (jax.nn.logsumexp(jnp.where(mask, beta * cos, -jnp.inf))
                  - log_pairs) / beta
    # A homotopy: separation first finds the right basin, then the growing
    # norm penalty makes the norms equal inside it. (A large fixed penalty
    # from the start traps the 20-gon in uneven local minima.)
    return rho_end * (beta / beta_end) * disp + smooth_max

  tx = optax.adam(optax.cosine_decay_schedule(0.05, max(steps, 1), 0.01))

  def run(A):
    state = tx.init(A)

    def step(carry, t):
      A, state = carry
      beta = beta_start * (beta_end / beta_start) ** (t / max(steps - 1, 1))
      g = jax.grad(loss)(A, beta)
      updates, state = tx.update(g, state, A)
      return (optax.apply_updates(A, updates), state), None

    (A, _), _ = jax.lax.scan(step, (A, state), jnp.arange(steps))
    Q, disp, cos = _terms(A, fixed_n2, group, weights, fixed_gram, pairs)
    return Q, disp, jnp.max(jnp.where(mask, cos, -jnp.inf))

  return jax.vmap(run)(starts)

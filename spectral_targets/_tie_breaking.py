r"""The basis a codebook keeps inside a repeated eigenspace.

When the cut at d falls inside an eigenspace of multiplicity m, only k < m
of its directions are kept, and which k is arbitrary: every orthonormal
:math:`Q \in \mathbb{R}^{m\times k}` gives an equally good rank-d
approximation, but eigh's choice can send several classes to one direction,
or to zero. ``separating_basis`` chooses Q deliberately: first the
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
basis, whose cosines depend only on i − j: ``_harmonic_frames``) where the
eigenspace holds them, as it does for a flat kernel; the best few ends are
polished at a sharper β (``_schedule``). Of the ends, the most equal norms,
then the smallest largest cosine, win; where the best harmonic frame is
provably optimal it is taken as it is. So ``flat(9)`` at d = 2 gives the
regular 9-gon, ``flat(7)`` at d = 4 the harmonic frame with largest cosine
0.2005, and ``blocks`` of three superclasses at d = 2 three clusters 120°
apart.

Classes with the same coordinates count once, and beyond 512 distinct
classes the pairs are taken among those the eigenspace moves (a
deterministic sample of 512 if more), so no C × C matrix is formed. The
steps run in NumPy (float32; the ends are compared in float64), jitted in
JAX when a problem is large enough to pay for the compilation: one
objective (``_objective``) serves both, written against ``xp`` (``np`` or
``jnp``).

References:
  Mettes, van der Pol & Snoek, "Hyperspherical Prototype Networks",
  NeurIPS 2019. Casazza & Kovačević, "Equal-norm tight frames with
  erasures", Adv. Comput. Math. 2003 (harmonic frames). Rankin, "The
  closest packing of spherical caps in n dimensions", Proc. Glasgow Math.
  Assoc. 1955.
"""

from __future__ import annotations

import itertools
import math
from types import ModuleType
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets._jit import jit
from spectral_targets._numerics import unique_rows

# The separation objective compares pairs among at most this many classes.
MAX_PAIR_CLASSES = 512
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


def separating_basis(fixed: np.ndarray, group: np.ndarray, k: int, *,
                     steps: int, restarts: int | None, seed: int,
                     code_tol: float) -> np.ndarray:
  """Q (m, k) with orthonormal columns choosing the kept part of a repeated
  eigenspace: equal code norms first, then maximal separation.

  ``fixed`` (C, a) are the codes' coordinates above the eigenspace, ``group``
  (C, m) their coordinates in it; ``steps`` and ``restarts`` are
  ``spectral_codebook``'s, and rows within ``code_tol`` (relative) of each
  other count as one."""
  m = group.shape[1]
  a = fixed.shape[1]
  # Classes with equal coordinates get equal codes whatever Q is: work on
  # the distinct rows, weighted by how many classes share each.
  everything = np.concatenate([fixed, group], axis=1)
  distinct, counts = _distinct_rows(everything, code_tol)
  rows = everything[distinct].astype(np.float64)
  pairs = _pair_rows(rows[:, a:], code_tol, seed)
  full = rows[pairs]
  # Near-equal rows on either side of a rounding boundary still coincide;
  # their cosine is 1 for good and must not drown the others.
  sq = (full**2).sum(1)
  dist2 = sq[:, None] + sq[None, :] - 2 * full @ full.T
  mask = dist2 > code_tol**2 * sq.max()
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


def _distinct_rows(x: np.ndarray, code_tol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Indices of one row per group of (numerically) equal rows of x, and
  the size of each group."""
  grid = code_tol * np.sqrt(np.max(np.sum(x.astype(np.float64)**2, axis=1)))
  first, _, counts = unique_rows(np.round(x / max(grid,
                                                    np.finfo(float).tiny)))
  order = np.argsort(first)
  return first[order], counts[order].astype(np.float64)


def _pair_rows(group: np.ndarray, code_tol: float, seed: int) -> np.ndarray:
  """The rows whose pairwise cosines enter the objective: all of them up to
  MAX_PAIR_CLASSES; else those the eigenspace moves (coordinates in it not
  ~0), sampled down to MAX_PAIR_CLASSES."""
  n = group.shape[0]
  if n <= MAX_PAIR_CLASSES:
    return np.arange(n)
  n2 = np.sum(group**2, axis=1)
  moved = np.flatnonzero(n2 > code_tol * n2.max())
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
    weight = weight[unique_rows(weight)[0]]
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
  proportion, at POLISH_RATE times the search's last learning rate
  (``POLISH_RATE * lr0 * alpha``, cosine-decayed like the search's), so the
  smooth maximum approaches the largest cosine itself."""
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

"""Independent NumPy float64 references of the published definitions.

Written from the formulas, not from the package: loops and explicit
constructions where the package vectorises, so that the two can disagree.
"""

import numpy as np


def random_symmetric(rng, C):
  A = rng.normal(size=(C, C))
  return (A + A.T) / 2


def random_psd(rng, C, rank=None):
  B = rng.normal(size=(C, rank or C))
  return B @ B.T / (rank or C)


def with_spectrum(rng, eigenvalues):
  """A symmetric matrix with the given eigenvalues and a random basis."""
  C = len(eigenvalues)
  Q, _ = np.linalg.qr(rng.normal(size=(C, C)))
  return (Q * np.asarray(eigenvalues)) @ Q.T


def best_rank_psd(S, d):
  """U_d max(Λ_d, 0) U_dᵀ from a float64 eigendecomposition."""
  lam, U = np.linalg.eigh(np.asarray(S, np.float64))
  lam, U = lam[::-1], U[:, ::-1]
  return (U[:, :d] * np.maximum(lam[:d], 0)) @ U[:, :d].T


def lca_kernel(edges, classes):
  """1 - h(lca)/h(root), by walking each class's ancestor path."""
  parent = {c: p for p, c in edges}
  nodes = {n for e in edges for n in e}
  kids = {n: [] for n in nodes}
  for p, c in edges:
    kids[p].append(c)

  memo = {}

  def height(n):
    if n not in memo:
      memo[n] = 0 if not kids[n] else 1 + max(height(k) for k in kids[n])
    return memo[n]

  root = next(n for n in nodes if n not in parent)
  H = height(root)

  def path(n):
    out = [n]
    while out[-1] in parent:
      out.append(parent[out[-1]])
    return out

  paths = {c: path(c) for c in classes}
  S = np.zeros((len(classes), len(classes)))
  for i, a in enumerate(classes):
    pa = paths[a]
    for j, b in enumerate(classes):
      pb = set(paths[b])
      lca = next(n for n in pa if n in pb)
      S[i, j] = 1 - height(lca) / H
  return S


def unit(x):
  """Rows of x as unit vectors, in float64."""
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax(x, axis=-1):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def kl(p, q, axis=-1):
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  safe = np.where(p > 0, p, 1)
  return np.sum(np.where(p > 0, p * (np.log(safe) - np.log(q)), 0), axis=axis)


def hinton_kd(s, t, tau):
  return tau**2 * kl(softmax(t / tau), softmax(s / tau))


def dkd(s, t, y, tau, alpha, beta):
  """Zhao et al. 2022, as in their released code (mdistiller dkd_loss),
  per example: binary (target, rest) KL and the KL over the non-target
  classes, each scaled by tau**2."""
  s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
  out = []
  for si, ti, yi in zip(s, t, y):
    ps, pt = softmax(si / tau), softmax(ti / tau)
    bs = np.array([ps[yi], 1 - ps[yi]])
    bt = np.array([pt[yi], 1 - pt[yi]])
    tckd = kl(bt, bs)
    keep = np.arange(len(si)) != yi
    nckd = kl(softmax(ti[keep] / tau), softmax(si[keep] / tau))
    out.append(tau**2 * (alpha * tckd + beta * nckd))
  return np.array(out)


def class_covariances(Z, y, C):
  """(Σ_B, Σ_W) by a loop over classes and one outer product per sample."""
  Z = np.asarray(Z, np.float64)
  N, D = Z.shape
  mu = Z.mean(0)
  between = np.zeros((D, D))
  within = np.zeros((D, D))
  for c in range(C):
    Zc = Z[y == c]
    if len(Zc) == 0:
      continue
    m = Zc.mean(0)
    between += len(Zc) / N * np.outer(m - mu, m - mu)
    for z in Zc:
      within += np.outer(z - m, z - m) / N
  return between, within


# --- Frames of a flat kernel: the best known tie-breaking -------------------


def dispersion_and_max_cosine(X):
  """Codes X (C, d): the dispersion Var|x|² / mean(|x|²)² of their squared
  norms and the largest cosine between two of them."""
  X = np.asarray(X, np.float64)
  n2 = np.sum(X**2, axis=1)
  U = X / np.sqrt(n2)[:, None]
  return (np.var(n2) / np.mean(n2)**2,
          float(np.max(U @ U.T - 3 * np.eye(len(X)))))


def harmonic_frame_max_cosine(C, k):
  """The smallest largest cosine of a real harmonic frame of C centred
  vectors in R^k: k columns cos(2π f t/C), sin(2π f t/C) of the DFT basis
  (one column for f = C/2), f = 1..C//2, every such set tried; its cosine
  at row difference t is (1/k) Σ_f dim_f cos(2π f t / C). inf if no set
  has exactly k columns."""
  dims = {f: 1 if 2 * f == C else 2 for f in range(1, C // 2 + 1)}
  best = np.inf

  def walk(f, left, chosen):
    nonlocal best
    if left == 0:
      t = np.arange(1, C)
      cos = sum(dims[g] * np.cos(2 * np.pi * g * t / C) for g in chosen) / k
      best = min(best, float(cos.max()))
      return
    for g in range(f, C // 2 + 1):
      if dims[g] <= left:
        walk(g + 1, left - dims[g], chosen + [g])

  walk(1, k, [])
  return best


def equal_norm_frame_search(C, k, *, starts, seed=0, maxiter=200):
  """The smallest largest cosine SLSQP finds, from random starts, among
  equal-norm tight frames of C centred vectors in R^k (the codes a flat
  kernel allows with equal norms):

      min t  s.t.  <x_i, x_j> <= t,  |x_i| = 1,  Σ x_i = 0,  XᵀX = (C/k) I.

  inf if no start ends feasible."""
  from scipy.optimize import minimize
  rng = np.random.default_rng(seed)
  iu, ju = np.triu_indices(C, 1)
  pu, qu = np.triu_indices(k)
  n_eq = pu.size + k + C - 1

  def eq(z):
    X = z[:-1].reshape(C, k)
    return np.concatenate([(X.T @ X)[pu, qu] - C / k * (pu == qu),
                           X.sum(0), (X**2).sum(1)[1:] - 1])

  def eq_jac(z):
    X = z[:-1].reshape(C, k)
    J = np.zeros((n_eq, C, k))
    r = np.arange(pu.size)
    J[r, :, pu] += X[:, qu].T
    J[r, :, qu] += X[:, pu].T
    J[pu.size + np.arange(k), :, np.arange(k)] = 1
    J[pu.size + k + np.arange(C - 1), np.arange(1, C), :] = 2 * X[1:]
    return np.concatenate([J.reshape(n_eq, -1), np.zeros((n_eq, 1))], 1)

  def ineq(z):
    X = z[:-1].reshape(C, k)
    return z[-1] - np.sum(X[iu] * X[ju], 1)

  def ineq_jac(z):
    X = z[:-1].reshape(C, k)
    J = np.zeros((iu.size, C, k))
    r = np.arange(iu.size)
    J[r, iu] -= X[ju]
    J[r, ju] -= X[iu]
    return np.concatenate([J.reshape(iu.size, -1), np.ones((iu.size, 1))], 1)

  basis = np.linalg.qr(np.eye(C) - 1 / C)[0][:, :C - 1]
  best = np.inf
  for _ in range(starts):
    X = basis @ np.linalg.qr(rng.normal(size=(C - 1, k)))[0]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    z0 = np.r_[X.ravel(), np.max(np.sum(X[iu] * X[ju], 1))]
    res = minimize(lambda z: z[-1], z0,
                   jac=lambda z: np.r_[np.zeros(C * k), 1.0],
                   constraints=[dict(type="eq", fun=eq, jac=eq_jac),
                                dict(type="ineq", fun=ineq, jac=ineq_jac)],
                   method="SLSQP", options=dict(maxiter=maxiter, ftol=1e-10))
    if np.abs(eq(res.x)).max() < 1e-7:
      X = res.x[:-1].reshape(C, k)
      best = min(best, float(np.max(np.sum(X[iu] * X[ju], 1))))
  return best


def complement_frame_search(C, *, starts, seed=0):
  """For odd C at k = C - 2, where no equal-norm frame exists: the codes are
  the rows of X with [X, v] an orthonormal basis of the centred vectors, so
  |x_i|² = (C - 1)/C - v_i² and <x_i, x_j> = -1/C - v_i v_j for a unit
  centred v. Returns (the smallest dispersion Var|x|²/mean², the smallest
  largest cosine at that dispersion), each minimised over v by SLSQP from
  random starts."""
  from scipy.optimize import minimize
  rng = np.random.default_rng(seed)
  iu, ju = np.triu_indices(C, 1)
  mean = (C - 2) / C

  def disp(v):
    return np.var(v**2) / mean**2

  def cosines(v):
    n2 = (C - 1) / C - v**2
    return (-1 / C - v[iu] * v[ju]) / np.sqrt(n2[iu] * n2[ju])

  sphere = [dict(type="eq", fun=lambda v: [v.sum(), v @ v - 1])]
  ends = []
  for _ in range(starts):
    v = rng.normal(size=C)
    v -= v.mean()
    res = minimize(disp, v / np.linalg.norm(v), constraints=sphere,
                   method="SLSQP", options=dict(maxiter=500, ftol=1e-14))
    ends.append(res.x)
  lowest = min(disp(v) for v in ends)
  best = np.inf
  for v in ends:
    if disp(v) > lowest + 1e-6:
      continue
    cons = sphere + [dict(type="ineq", fun=lambda z: lowest + 1e-6
                          - disp(z[:-1]))]
    ineq = dict(type="ineq", fun=lambda z: z[-1] - cosines(z[:-1]))
    res = minimize(lambda z: z[-1], np.r_[v, cosines(v).max()],
                   constraints=[dict(type="eq",
                                     fun=lambda z: [z[:-1].sum(),
                                                    z[:-1] @ z[:-1] - 1]),
                                cons[-1], ineq],
                   method="SLSQP", options=dict(maxiter=500, ftol=1e-12))
    best = min(best, float(cosines(res.x[:-1]).max()))
  return lowest, best


def best_known_flat_frame(C, k):
  """The best known codes at a cut through flat(C)'s (C-1)-fold eigenvalue
  at d = k, searched: ``(dispersion, largest cosine)`` to reach.

  Every cut gives C centred vectors in R^k. Against the best of the
  harmonic frames (all frequency sets, closed form) and SLSQP from random
  starts over equal-norm tight frames (dispersion 0), or, for odd C at
  k = C - 2 where no equal-norm frame exists, the smallest dispersion and
  then the smallest largest cosine over the complement vector. Cuts where a
  frame is provably optimal (k = 2: the regular C-gon; largest cosine 0,
  which no C >= k + 2 vectors beat) need no search. Slow (20 to 55 s for
  C = 4..12, measured on a shared 2-core machine under others' load):
  ``BEST_KNOWN_FLAT_FRAMES`` pins the results."""
  if C % 2 and k == C - 2:
    return complement_frame_search(C, starts=6)
  best = harmonic_frame_max_cosine(C, k)
  if not (k == 2 or best <= 1e-9):
    best = min(best, equal_norm_frame_search(C, k, starts=3))
  return 0.0, best


# best_known_flat_frame(C, d) for C = 4..12, every cut d = 2..C-2, as found
# on 2026-12-01 (NumPy 2.4, SciPy 1.17's SLSQP, x86-64; the searches are
# seeded, so deterministic on one platform): (dispersion to reach, largest cosine to
# reach). The dispersion is 0 where an equal-norm tight frame exists, and the
# complement vector's smallest for odd C at d = C - 2. Pinned because the
# searches are slow and the values never change; the opt-in slow test
# test_best_known_flat_frames_are_what_the_search_finds reruns them.
BEST_KNOWN_FLAT_FRAMES = {
    (4, 2): (0.0, 6.123233995736766e-17),
    (5, 2): (0.0, 0.30901699437494745),
    (5, 3): (0.018518518518518524, 4.807406715958909e-17),
    (6, 2): (0.0, 0.5000000000000001),
    (6, 3): (0.0, 1.4802973661668753e-16),
    (6, 4): (0.0, 1.6653345369377348e-16),
    (7, 2): (0.0, 0.6234898018587336),
    (7, 3): (0.0, 0.2707018227471836),
    (7, 4): (0.0, 0.20048443395120963),
    (7, 5): (0.0033333333333333344, 7.850462293418876e-17),
    (8, 2): (0.0, 0.7071067811865476),
    (8, 3): (0.0, 0.3333333333333334),
    (8, 4): (0.0, 1.83697019872103e-16),
    (8, 5): (0.0, 0.1699802364564024),
    (8, 6): (0.0, 7.401486830834377e-17),
    (9, 2): (0.0, 0.766044443118978),
    (9, 3): (0.0, 0.3535533905932742),
    (9, 4): (0.0, 0.22440357507437664),
    (9, 5): (0.0, 0.15811388300841972),
    (9, 6): (0.0, 1.295260195396016e-16),
    (9, 7): (0.0010204081632653073, 2.3290991126808487e-16),
    (10, 2): (0.0, 0.8090169943749475),
    (10, 3): (0.0, 0.4223350043442383),
    (10, 4): (0.0, 0.16666666666666757),
    (10, 5): (0.0, 1.554312234475219e-16),
    (10, 6): (0.0, 0.14884243368667133),
    (10, 7): (0.0, 0.0882905698214136),
    (10, 8): (0.0, 5.551115123125783e-17),
    (11, 2): (0.0, 0.8412535328311812),
    (11, 3): (0.0, 0.5113489523515139),
    (11, 4): (0.0, 0.2869904916580205),
    (11, 5): (0.0, 0.1812867255689199),
    (11, 6): (0.0, 0.1539343674326405),
    (11, 7): (0.0, 0.09676753991694326),
    (11, 8): (0.0, 0.11487324340362437),
    (11, 9): (0.00041152263374485666, 2.5495124165822226e-16),
    (12, 2): (0.0, 0.8660254037844386),
    (12, 3): (0.0, 0.44721359549996137),
    (12, 4): (0.0, 0.25000000000000067),
    (12, 5): (0.0, 0.18461538461543286),
    (12, 6): (0.0, 5.921189464667501e-16),
    (12, 7): (0.0, 0.12400038385791765),
    (12, 8): (0.0, 3.3306690738754696e-16),
    (12, 9): (0.0, 1.9737298215558337e-16),
    (12, 10): (0.0, 2.388680238973927e-16),
}


# --- Codes that tell classes apart --------------------------------------------


def coincident_groups(X, radius):
  """Groups (sorted lists, >= 2 classes) of rows whose unit vectors lie
  within radius_i + radius_j of each other, chained: every pair compared,
  then a union-find."""
  U = X / np.linalg.norm(X, axis=1, keepdims=True)
  C = len(U)
  parent = list(range(C))

  def find(i):
    while parent[i] != i:
      i = parent[i]
    return i

  for i in range(C):
    for j in range(i + 1, C):
      if np.linalg.norm(U[i] - U[j]) <= radius[i] + radius[j]:
        parent[find(i)] = find(j)
  groups = {}
  for i in range(C):
    groups.setdefault(find(i), []).append(i)
  return sorted(g for g in groups.values() if len(g) > 1)


def separating_dimension(S, tie_rtol, code_rtol):
  """The smallest d, among cuts where λ_d - λ_{d+1} > tie_rtol max|λ| (or
  d = C), whose MDS codes are all non-zero and pairwise distinct; None if
  none. Every cut tried in turn, every pair compared."""
  lam, U = np.linalg.eigh(np.asarray(S, np.float64))
  lam, U = lam[::-1], U[:, ::-1]
  C = len(lam)
  scale = np.abs(lam).max()
  for d in range(1, C + 1):
    if d < C and lam[d - 1] - lam[d] <= tie_rtol * scale:
      continue
    if lam[d - 1] <= tie_rtol * scale / 2:
      break
    X = U[:, :d] * np.sqrt(np.maximum(lam[:d], 0))
    n2 = (X**2).sum(1)
    if n2.min() <= code_rtol * n2.max():
      continue
    norms = np.sqrt(n2)
    if not coincident_groups(X, code_rtol * norms.max() / norms):
      return d
  return None

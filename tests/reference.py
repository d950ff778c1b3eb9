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

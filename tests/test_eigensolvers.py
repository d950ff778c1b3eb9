"""Iterative top-d eigensolvers against a dense eigh, and what they feed:
codebooks, gram_error and alignment on operators."""

import functools

import numpy as np
import pytest

import reference as ref
import spectral_targets as st
from spectral_targets import _eigensolvers

C = 2000


@functools.cache
def kernels():
  rng = np.random.default_rng(0)
  gap = np.concatenate([np.linspace(10, 5, 24), np.linspace(1, 0, C - 24)])
  return {
      "hierarchy": np.asarray(st.from_hierarchy(
          st.random_hierarchy(C, seed=0))),
      "graded": np.asarray(st.graded(C, 200.0)),
      "psd-with-gap": ref.with_spectrum(rng, gap).astype(np.float32),
  }


@functools.cache
def dense_modes(name):
  lam, U = np.linalg.eigh(kernels()[name].astype(np.float64))
  return lam[::-1], U[:, ::-1]


def cut_in_gap(name, lo=8, hi=40):
  """The d in [lo, hi) with the largest relative gap below lambda_d."""
  lam, _ = dense_modes(name)
  return lo + int(np.argmax((lam[lo - 1:hi - 1] - lam[lo:hi]) / lam[0]))


@pytest.mark.parametrize("method,tol", [("randomized", 1e-5),
                                        ("lobpcg", 1e-4)])
@pytest.mark.parametrize("name", ["hierarchy", "graded", "psd-with-gap"])
def test_iterative_matches_dense(name, method, tol):
  S = kernels()[name]
  lam, U = dense_modes(name)
  d = cut_in_gap(name)
  top = st.top_eigenmodes(S, d, method=method, tol=tol)
  assert top.method == method and top.converged
  assert top.eigenvectors.shape == (C, d) and top.iterations > 0
  assert float(top.residuals.max()) <= tol
  # Eigenvalues: error ~ residual² / gap, far below the residual itself.
  np.testing.assert_allclose(top.eigenvalues, lam[:d], atol=10 * tol * lam[0])
  # The cut is in a gap, so the span (hence the rank-d Gram) is the same.
  cosines = np.linalg.svd(U[:, :d].T @ np.asarray(top.eigenvectors, float),
                          compute_uv=False)
  assert cosines.min() > 1 - 1e-3
  want = float(st.gram_error(S, d, method="dense"))
  np.testing.assert_allclose(st.gram_error(S, d, method=method, tol=tol),
                             want, atol=1e-4)


def test_codebook_iterative_equals_dense_where_the_cut_is_in_a_gap():
  edges = st.random_hierarchy(C, seed=0)
  d = cut_in_gap("hierarchy")
  # Unnormalised: some classes of a random tree get no share of the top d
  # modes (normalising would rightly refuse them).
  dense = st.spectral_codebook(st.from_hierarchy(edges), d, method="dense",
                               normalize=False)
  K = st.from_hierarchy(edges, implicit=True)
  codes = st.spectral_codebook(K, d, method="randomized", normalize=False)
  np.testing.assert_allclose(codes @ codes.T, dense @ dense.T,
                             atol=2e-3 * float(np.max(np.sum(dense**2, 1))))
  np.testing.assert_allclose(st.gram_error(K, d, method="randomized"),
                             st.gram_error(st.from_hierarchy(edges), d),
                             atol=1e-4)


def test_codebook_resolves_a_tie_at_the_cut_from_an_operator():
  # 30 superclasses of 40 classes: the superclass eigenvalue is 30-fold, and
  # d = 10 cuts it (the solver must widen twice to bracket it). 1,200
  # classes, but only 30 distinct codes.
  edges = [("root", f"s{g}") for g in range(30)] + [
      (f"s{g}", f"c{g}.{i}") for g in range(30) for i in range(40)]
  K = st.from_hierarchy(edges, implicit=True)
  X = np.asarray(st.spectral_codebook(K, 10, normalize=False,
                                      method="randomized"))
  norms = np.linalg.norm(X, axis=1)
  np.testing.assert_allclose(norms, norms.mean(), rtol=1e-3)
  supers = X[::40] / norms[::40, None]
  np.testing.assert_allclose(X.reshape(30, 40, 10), np.repeat(
      X[::40, None], 40, axis=1), atol=1e-4)  # a superclass shares a code
  cos = supers @ supers.T - 2 * np.eye(30)
  assert cos.max() < 0.6  # spread out (Welch bound 0.27), not collapsed
  np.testing.assert_allclose(st.gram_error(K, 10),
                             st.gram_error(K.to_dense(), 10), atol=1e-4)


def test_a_tie_too_long_to_bracket_raises():
  K = st.from_hierarchy([("root", i) for i in range(600)], implicit=True)
  with pytest.raises(ValueError, match="repeated more than .* pass "
                     "method='dense'"):
    st.spectral_codebook(K, 10, method="randomized")


def test_non_convergence_is_reported():
  # (method="auto" solves a TreeKernel this small exactly: "tree".)
  K = st.from_hierarchy(st.random_hierarchy(3000, seed=1), implicit=True)
  top = st.top_eigenmodes(K, 16, method="randomized", max_iter=1)
  assert not top.converged and top.iterations == 1
  assert float(top.residuals.max()) > 1e-5
  with pytest.warns(st.ConvergenceWarning, match="stopped after 1 "
                    "iterations"):
    st.spectral_codebook(K, 16, method="randomized", max_iter=1)
  with pytest.warns(st.ConvergenceWarning):
    st.gram_error(K, 16, method="randomized", max_iter=1)


def test_negative_eigenvalues_beyond_the_block_are_caught():
  lam = np.concatenate([[5.0, 4.0, 3.0], np.zeros(2097), [-20.0] * 100])
  S = ref.with_spectrum(np.random.default_rng(1), lam).astype(np.float32)
  with pytest.raises(ValueError, match="negative eigenvalues"):
    st.top_eigenmodes(S, 3, method="randomized")
  top = st.top_eigenmodes(S, 3, method="lobpcg", tol=1e-4)
  np.testing.assert_allclose(top.eigenvalues, [5, 4, 3], atol=1e-2)


def test_auto_method():
  assert _eigensolvers.resolve_method("auto", 4096, 64) == "randomized"
  assert _eigensolvers.resolve_method("auto", 4096, 600) == "dense"
  assert _eigensolvers.resolve_method("auto", 1000, 8) == "dense"
  # (TreeKernels: "tree" where this is "randomized"; test_sibling_deflation.)
  assert st.top_eigenmodes(st.graded(50, 3.0), 4).method == "dense"


def test_top_eigenmodes_dense_equals_eigh():
  S = kernels()["graded"][:300, :300]
  top = st.top_eigenmodes(S, 7, method="dense")
  lam, _ = np.linalg.eigh(S.astype(np.float64))
  np.testing.assert_allclose(top.eigenvalues, lam[::-1][:7], atol=1e-5 * lam[-1])
  assert top.converged and top.iterations == 0


def test_bad_arguments():
  S = st.graded(100, 3.0)
  with pytest.raises(ValueError, match="method must be one of"):
    st.top_eigenmodes(S, 3, method="eigh")
  with pytest.raises(ValueError, match="k must be <= 100"):
    st.top_eigenmodes(S, 101)
  with pytest.raises(ValueError, match="needs 5 k < C"):
    st.top_eigenmodes(S, 20, method="lobpcg")
  with pytest.raises(ValueError, match="tol must be a positive"):
    st.top_eigenmodes(S, 3, tol=0.0)
  with pytest.raises(ValueError, match="kernel must be symmetric"):
    st.top_eigenmodes(np.triu(np.ones((5, 5))), 2)
  K = st.from_hierarchy(st.random_hierarchy(100, seed=0), implicit=True)
  with pytest.raises(TypeError, match="top_eigenmodes"):
    st.spectrum(K)
  with pytest.raises(ValueError, match="needs one of them low rank"):
    st.alignment(K, K)


@pytest.mark.parametrize("centered", [False, True])
def test_alignment_of_operators_equals_dense(centered):
  edges = st.random_hierarchy(400, seed=3)
  S = st.from_hierarchy(edges)
  K = st.from_hierarchy(edges, implicit=True)
  rng = np.random.default_rng(0)
  F = rng.normal(size=(400, 5)).astype(np.float32)
  L = st.low_rank_kernel(F, rng.uniform(size=400))
  want = st.alignment(S, L.to_dense(), centered=centered)
  np.testing.assert_allclose(st.alignment(K, L, centered=centered), want,
                             rtol=1e-5)
  np.testing.assert_allclose(st.alignment(L, K, centered=centered), want,
                             rtol=1e-5)
  np.testing.assert_allclose(st.alignment(K, S, centered=centered), 1.0,
                             rtol=1e-5)


def test_zero_and_low_rank_operators_converge():
  # A block column S maps to nothing keeps its Ritz vector (it used to
  # become 0 / 0, and every eigenpair NaN).
  zero = st.low_rank_kernel(np.zeros((3000, 2), np.float32))
  top = st.top_eigenmodes(zero, 4, method="randomized")
  assert top.converged
  np.testing.assert_array_equal(top.eigenvalues, 0)
  U = np.asarray(top.eigenvectors, np.float64)
  np.testing.assert_allclose(U.T @ U, np.eye(4), atol=1e-5)
  rng = np.random.default_rng(0)
  F = rng.normal(size=(3000, 3)).astype(np.float32)
  top = st.top_eigenmodes(st.low_rank_kernel(F), 5, method="randomized")
  want = np.linalg.eigvalsh(F.T.astype(np.float64) @ F)[::-1]
  assert top.converged
  np.testing.assert_allclose(top.eigenvalues[:3], want, rtol=1e-5)
  np.testing.assert_allclose(top.eigenvalues[3:], 0, atol=1e-5 * want[0])


def test_host_eigenmodes_signs_do_not_depend_on_the_backend(monkeypatch):
  # LAPACK float64 up to HOST_EIGH_MAX classes, the jitted float32 eigh
  # above: with the sign convention they give the same vectors, not just
  # the same vectors up to sign.
  from spectral_targets import _operators
  op = _operators.as_operator(st.double_center(st.graded(60, 4.0)))
  lam, U = _eigensolvers.host_eigenmodes(op)
  assert lam.dtype == np.float64 and U.dtype == np.float64
  np.testing.assert_allclose(lam, np.linalg.eigvalsh(
      np.asarray(op.matrix, np.float64))[::-1], atol=1e-12)
  monkeypatch.setattr(_eigensolvers, "HOST_EIGH_MAX", 10)
  lam32, U32 = _eigensolvers.host_eigenmodes(op)
  assert U32.dtype == np.float32
  np.testing.assert_allclose(lam32, lam, atol=1e-5 * lam[0])
  top = lam > 1e-3 * lam[0]  # the resolved modes (distinct eigenvalues)
  np.testing.assert_allclose(U32[:, top], U[:, top], atol=2e-3)
  # The convention: each column's first entry of (near-)largest magnitude
  # is positive.
  mag = np.abs(U)
  first = np.argmax(mag >= (1 - 1e-3) * mag.max(0), axis=0)
  assert np.all(U[first, np.arange(U.shape[1])] > 0)

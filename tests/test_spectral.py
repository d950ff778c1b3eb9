import functools

import jax
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as hs

import spectral_targets as st
import reference as ref

sizes = hs.integers(2, 24)
seeds = hs.integers(0, 2**31)


def _rel_err_reference(S, d):
  S = np.asarray(S, np.float64)
  total = np.linalg.norm(S)
  return np.linalg.norm(S - ref.best_rank_psd(S, d)) / total if total else 0.0


@given(C=sizes, seed=seeds, data=hs.data())
def test_gram_error_identity(C, seed, data):
  S = ref.random_symmetric(np.random.default_rng(seed), C)
  d = data.draw(hs.integers(1, C))
  # Against the Frobenius norm of the reconstruction itself (DESIGN item 2).
  assert float(st.gram_error(S, d)) ** 2 == pytest.approx(
      _rel_err_reference(S, d) ** 2, abs=2e-5)


@given(C=sizes, seed=seeds, psd=hs.booleans())
def test_gram_error_monotone_and_zero_at_full_rank_for_psd(C, seed, psd):
  rng = np.random.default_rng(seed)
  S = ref.random_psd(rng, C) if psd else ref.random_symmetric(rng, C)
  errs = np.array([float(st.gram_error(S, d)) for d in range(1, C + 1)])
  assert np.all(np.diff(errs) <= 1e-6)
  assert np.all((errs >= 0) & (errs <= 1 + 1e-6))
  if psd:
    assert errs[-1] < 1e-5
  elif np.linalg.eigvalsh(S)[0] < -1e-3:
    assert errs[-1] > 0


def test_gram_error_jit_and_bad_d():
  S = st.graded(8, 2.0)
  f = jax.jit(st.gram_error, static_argnums=1)
  assert float(f(S, 3)) == pytest.approx(float(st.gram_error(S, 3)))
  with pytest.raises(ValueError, match="d must be >= 1"):
    st.gram_error(S, 0)
  with pytest.raises(ValueError, match="d must be <= 8"):
    st.gram_error(S, 9)
  with pytest.raises(TypeError, match="d must be an int"):
    st.gram_error(S, 2.0)
  assert float(st.gram_error(np.zeros((3, 3)), 1)) == 0


@given(C=sizes, seed=seeds)
def test_spectrum_against_numpy(C, seed):
  S = ref.random_symmetric(np.random.default_rng(seed), C)
  np.testing.assert_allclose(st.spectrum(S),
                             np.sort(np.linalg.eigvalsh(S))[::-1], atol=1e-4)
  lam, U = st.eigenmodes(S)
  np.testing.assert_allclose((np.asarray(U) * np.asarray(lam)) @ np.asarray(U).T,
                             S, atol=1e-4)
  assert np.all(np.diff(np.asarray(lam)) <= 0)


def test_blog_spectrum_numbers():
  # The blog's graded kernel: top-3 normalised spectrum of S - mean(S).
  S = st.graded(9, 2.2)
  lam = st.spectrum(S - S.mean())
  np.testing.assert_allclose(lam[:3] / lam[0], [1, 0.70, 0.30], atol=6e-3)


# -- alignment ---------------------------------------------------------------

@given(C=sizes, seed=seeds, centered=hs.booleans())
def test_alignment_properties(C, seed, centered):
  rng = np.random.default_rng(seed)
  A, B = ref.random_symmetric(rng, C), ref.random_symmetric(rng, C)
  al = functools.partial(st.alignment, centered=centered)
  assert float(al(A, A)) == pytest.approx(1, abs=1e-5)
  assert float(al(A, B)) == pytest.approx(float(al(B, A)), abs=1e-6)
  assert float(al(3.0 * A, 0.5 * B)) == pytest.approx(float(al(A, B)),
                                                      abs=1e-5)
  assert float(al(A, B)) <= 1 + 1e-6
  Ac = A - A.mean(0) - A.mean(1)[:, None] + A.mean()
  Bc = B - B.mean(0) - B.mean(1)[:, None] + B.mean()
  X, Y = (Ac, Bc) if centered else (A, B)
  expected = (X * Y).sum() / np.linalg.norm(X) / np.linalg.norm(Y)
  assert float(al(A, B)) == pytest.approx(expected, abs=1e-5)


@given(C=hs.integers(3, 24), seed=seeds, c=hs.floats(-5, 5))
def test_centered_alignment_ignores_constants(C, seed, c):
  rng = np.random.default_rng(seed)
  A, B = ref.random_symmetric(rng, C), ref.random_symmetric(rng, C)
  assert float(st.alignment(A + c, B, centered=True)) == pytest.approx(
      float(st.alignment(A, B, centered=True)), abs=1e-4)


@given(C=sizes, seed=seeds)
def test_alignment_of_rank_d_gram_non_decreasing_for_psd(C, seed):
  S = ref.random_psd(np.random.default_rng(seed), C)
  scores = [float(st.alignment(ref.best_rank_psd(S, d), S))
            for d in range(1, C + 1)]
  assert np.all(np.diff(scores) >= -1e-6)
  assert scores[-1] == pytest.approx(1, abs=1e-5)


def test_alignment_errors_and_jit():
  A = st.graded(4, 1.0)
  with pytest.raises(ValueError, match="same shape"):
    st.alignment(A, st.flat(3))
  with pytest.raises(ValueError, match="b has zero norm"):
    st.alignment(A, np.zeros((4, 4)))
  with pytest.raises(ValueError, match="zero norm after centring"):
    st.alignment(A, np.ones((4, 4)), centered=True)
  f = jax.jit(st.alignment, static_argnames="centered")
  assert float(f(A, st.flat(4), centered=True)) == pytest.approx(
      float(st.alignment(A, st.flat(4), centered=True)), abs=1e-6)


# -- procrustes, coherence, Welch --------------------------------------------

@given(n=hs.integers(2, 20), d=hs.integers(1, 6), seed=seeds)
def test_procrustes_recovers_rotation(n, d, seed):
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(n, d))
  R, _ = np.linalg.qr(rng.normal(size=(d, d)))
  Rhat = np.asarray(st.procrustes(X, X @ R))
  np.testing.assert_allclose(Rhat.T @ Rhat, np.eye(d), atol=1e-5)
  if np.linalg.matrix_rank(X) == d:
    np.testing.assert_allclose(Rhat, R, atol=1e-3)
  # Optimal: no other orthogonal matrix does better.
  Y = rng.normal(size=(n, d))
  best = np.linalg.norm(X @ np.asarray(st.procrustes(X, Y)) - Y)
  Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  assert best <= np.linalg.norm(X @ Q - Y) + 1e-4


def test_procrustes_errors():
  with pytest.raises(ValueError, match="same shape"):
    st.procrustes(np.ones((3, 2)), np.ones((3, 3)))
  with pytest.raises(ValueError, match="x must have rank 2"):
    st.procrustes(np.ones(3), np.ones(3))


@given(C=hs.integers(2, 12), d=hs.integers(1, 12), seed=seeds)
def test_coherence_against_reference_and_welch(C, d, seed):
  X = np.random.default_rng(seed).normal(size=(C, d))
  U = X / np.linalg.norm(X, axis=1, keepdims=True)
  G = np.abs(U @ U.T)
  np.fill_diagonal(G, -1)
  mu = float(st.coherence(X))
  assert mu == pytest.approx(G.max(), abs=1e-5)
  assert mu >= st.welch_bound(C, d) - 1e-5


def test_coherence_and_welch_errors():
  with pytest.raises(ValueError, match="at least 2 rows"):
    st.coherence(np.ones((1, 3)))
  with pytest.raises(ValueError, match=r"zero rows \[1\]"):
    st.coherence(np.array([[1.0, 0.0], [0.0, 0.0]]))
  with pytest.raises(ValueError, match="num_classes must be >= 2"):
    st.welch_bound(1, 1)
  with pytest.raises(ValueError, match="d must be >= 1"):
    st.welch_bound(3, 0)
  assert st.welch_bound(3, 5) == 0.0


@example(C=2)
@given(C=hs.integers(2, 30))
def test_simplex_meets_welch_bound(C):
  codes = st.spectral_codebook(st.flat(C), C - 1)
  assert float(st.coherence(codes)) == pytest.approx(st.welch_bound(C, C - 1),
                                                     abs=1e-5)


# -- scale-free in float32 and clear errors (issue 14) ---------------------------

@pytest.mark.parametrize("c", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_gram_error_and_alignment_scale_free(c):
  assert float(st.gram_error(c * st.flat(5), 2)) == pytest.approx(
      np.sqrt(0.5), rel=1e-6)
  S = np.asarray(st.graded(6, 2.0), np.float64)
  A = ref.random_symmetric(np.random.default_rng(0), 6)
  assert float(st.alignment(c * st.graded(6, 2.0), S)) == pytest.approx(1.0,
                                                                         abs=1e-6)
  want = np.vdot(A, S) / np.linalg.norm(A) / np.linalg.norm(S)
  assert float(st.alignment(np.float32(c) * A.astype(np.float32), S)) == (
      pytest.approx(want, abs=1e-6))
  J = np.eye(6) - 1 / 6
  Ac, Sc = J @ A @ J, J @ S @ J
  assert float(st.alignment(np.float32(c) * A.astype(np.float32), S,
                            centered=True)) == pytest.approx(
      np.vdot(Ac, Sc) / np.linalg.norm(Ac) / np.linalg.norm(Sc), abs=1e-5)


@pytest.mark.parametrize("c", [1e-15, 1.0, 1e15])
def test_operator_paths_scale_free(c):
  F = np.random.default_rng(1).normal(size=(60, 8))
  S = F @ F.T
  lam = np.linalg.eigvalsh(S)[::-1]
  want = np.sqrt(np.sum(lam[4:] ** 2) / np.sum(lam**2))
  K = st.low_rank_kernel((c * F).astype(np.float32))
  assert float(st.gram_error(K, 4, method="randomized")) == pytest.approx(
      want, rel=1e-4)
  codes = np.random.default_rng(2).normal(size=(60, 3))
  G = codes @ codes.T
  want = np.vdot(S, G) / np.linalg.norm(S) / np.linalg.norm(G)
  got = st.alignment(K, st.low_rank_kernel((codes / c).astype(np.float32)))
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_inputs_that_are_not_arrays_name_their_argument():
  with pytest.raises(TypeError, match="kernel must be an array, got None"):
    st.spectrum(None)
  with pytest.raises(ValueError, match="kernel must be a rectangular"):
    st.spectrum([[1.0, 0.0], [0.0]])
  with pytest.raises(ValueError, match="a must be a rectangular"):
    st.alignment([[1.0, 0.0], [0.0]], np.eye(2))
  with pytest.raises(TypeError, match="kernel must be a numeric array, got "
                     "a string"):
    st.gram_error("abc", 1)


def test_d_must_be_static_under_jit():
  S = st.graded(5, 2.0)
  with pytest.raises(TypeError, match=r"d must be a static Python int.*"
                     r"static_argnames='d'"):
    jax.jit(st.gram_error)(S, 2)
  assert float(jax.jit(st.gram_error, static_argnames="d")(S, 2)) == (
      pytest.approx(float(st.gram_error(S, 2))))

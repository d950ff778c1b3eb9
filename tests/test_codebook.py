import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as hs

import spectral_targets as st
import reference as ref


def _angles_deg(codes):
  a = np.sort(np.degrees(np.arctan2(codes[:, 1], codes[:, 0])))
  return np.diff(np.r_[a, a[0] + 360])


def _off_diagonal(G):
  return G[~np.eye(G.shape[0], dtype=bool)]


@pytest.mark.parametrize("C", [9, 20])
def test_flat_d2_is_regular_polygon(C):
  # DESIGN.md item 5: eigh's arbitrary basis puts six of nine codes on one
  # direction; the deliberate choice gives the even ring.
  codes = np.asarray(st.spectral_codebook(st.flat(C), 2))
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(_angles_deg(codes), 360 / C, atol=0.05)


@pytest.mark.parametrize("C", [2, 3, 5, 10, 17])
def test_flat_full_is_simplex_etf(C):
  codes = np.asarray(st.spectral_codebook(st.flat(C), C - 1))
  G = codes @ codes.T
  np.testing.assert_allclose(np.diag(G), 1, atol=1e-5)
  np.testing.assert_allclose(_off_diagonal(G), -1 / (C - 1), atol=1e-5)


def test_blocks_d2_three_clusters_120_degrees():
  groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
  S = st.blocks(groups)
  np.testing.assert_allclose(st.spectrum(S), [3, 3, 3, 0, 0, 0, 0, 0, 0],
                             atol=1e-5)
  codes = np.asarray(st.spectral_codebook(S, 2, allow_merged=True))
  G = codes @ codes.T
  same = np.equal.outer(groups, groups)
  np.testing.assert_allclose(G[same], 1, atol=1e-5)
  np.testing.assert_allclose(G[~same], -0.5, atol=1e-4)


def test_naive_eigh_basis_would_collapse():
  # The regression the deliberate choice exists for: the plain top-2 eigh
  # coordinates of flat(9) have very unequal norms, i.e. after normalising,
  # codes bunch up. Our codebook's unnormalised norms are equal instead.
  lam, U = st.eigenmodes(st.flat(9))
  naive = np.linalg.norm(np.asarray(U[:, :2]), axis=1)
  ours = np.linalg.norm(np.asarray(
      st.spectral_codebook(st.flat(9), 2, normalize=False)), axis=1)
  assert naive.max() / naive.min() > 1.5
  np.testing.assert_allclose(ours, ours.mean(), rtol=1e-4)


def test_hierarchy_codebook_superclasses():
  # 20 superclasses: the 20 top modes are tied (eigenvalue 3). At d = 10 the
  # cut falls inside them; every class still gets a unit code, siblings
  # share one and superclasses spread out.
  edges, classes = st.cifar100_hierarchy()
  S = st.from_hierarchy(edges, classes=classes)
  codes = np.asarray(st.spectral_codebook(S, 10, allow_merged=True))
  G = codes @ codes.T
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
  sib = np.asarray(S) == 0.5
  np.testing.assert_allclose(G[sib], 1, atol=1e-4)
  # 20 equal-norm vectors in 10 dims: far from collapsed.
  assert G[np.asarray(S) == 0].max() < 0.6
  # At d = 20 (a gap) the superclass codes are orthogonal; centred, they
  # form a regular simplex.
  codes = np.asarray(st.spectral_codebook(S, 20, allow_merged=True))
  np.testing.assert_allclose((codes @ codes.T)[np.asarray(S) == 0], 0,
                             atol=1e-4)
  codes = np.asarray(st.spectral_codebook(st.double_center(S), 19,
                                        allow_merged=True))
  np.testing.assert_allclose((codes @ codes.T)[np.asarray(S) == 0], -1 / 19,
                             atol=1e-4)


def test_graded_horseshoe_and_no_degeneracy_work():
  S = st.double_center(st.graded(9, 2.2))
  codes = np.asarray(st.spectral_codebook(S, 2))
  lam, U = np.linalg.eigh(np.asarray(S, np.float64))
  X = U[:, ::-1][:, :2] * np.sqrt(lam[::-1][:2])
  X /= np.linalg.norm(X, axis=1, keepdims=True)
  # Distinct eigenvalues: the codebook is the plain MDS one up to signs.
  np.testing.assert_allclose(np.abs(codes), np.abs(X), atol=1e-4)
  # The horseshoe: each class nearer its neighbour than the class after;
  # the ends curl back towards each other (closer than to the middle).
  G = codes @ codes.T
  assert all(G[i, i + 1] > G[i, i + 2] for i in range(7))
  assert G[0, 8] > G[0, 4]


@given(C=hs.integers(2, 24), seed=hs.integers(0, 2**31), data=hs.data())
def test_unit_rows_and_relabelling_invariance(C, seed, data):
  rng = np.random.default_rng(seed)
  # Well-separated eigenvalues, so the top-d subspace is well defined.
  lam = np.linspace(C, 1, C) * rng.choice([-1, 1], size=C) ** (
      np.arange(C) > C // 2)
  S = ref.with_spectrum(rng, lam)
  d = data.draw(hs.integers(1, C))
  X = ref.best_rank_psd(S, d)
  n2 = np.diag(X)
  assume(n2.min() > 1e-2 * n2.max())  # else a zero-code error is right
  cos = X / np.sqrt(np.outer(n2, n2))
  if (cos - 2 * np.eye(C)).max() > 1 - 1e-6:  # e.g. d = 1: signs repeat
    with pytest.raises(ValueError, match="share a code"):
      st.spectral_codebook(S, d)
    return
  assume((cos - 2 * np.eye(C)).max() < 1 - 1e-3)
  codes = np.asarray(st.spectral_codebook(S, d))
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1, atol=1e-5)
  perm = rng.permutation(C)
  permuted = np.asarray(st.spectral_codebook(S[np.ix_(perm, perm)], d))
  back = np.empty_like(permuted)
  back[perm] = permuted
  R = np.asarray(st.procrustes(back, codes))
  np.testing.assert_allclose(back @ R, codes, atol=2e-3)


@given(C=hs.integers(2, 24), seed=hs.integers(0, 2**31))
def test_unnormalised_full_rank_reproduces_psd(C, seed):
  S = ref.random_psd(np.random.default_rng(seed), C)
  X = np.asarray(st.spectral_codebook(S, C, normalize=False), np.float64)
  np.testing.assert_allclose(X @ X.T, S, atol=1e-4 * np.abs(S).max())


@given(C=hs.integers(2, 16), seed=hs.integers(0, 2**31), data=hs.data())
def test_unnormalised_gram_error_matches(C, seed, data):
  S = ref.random_symmetric(np.random.default_rng(seed), C)
  d = data.draw(hs.integers(1, C))
  X = np.asarray(st.spectral_codebook(S, d, normalize=False), np.float64)
  err = np.linalg.norm(S - X @ X.T) / np.linalg.norm(S)
  assert err == pytest.approx(float(st.gram_error(S, d)), abs=1e-4)


def test_zero_code_is_an_error_naming_the_class():
  # Class 2 is unrelated to the others and its mode is the smallest.
  S = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 0.5]])
  with pytest.raises(ValueError, match=r"class\(es\) \[2\] get a zero code "
                     r"at d=1.*d=2 gives them one"):
    st.spectral_codebook(S, 1)
  # At d = 2 classes 0 and 1 still share their mode: d = 3 separates them.
  with pytest.raises(ValueError, match=r"share a code at d=2.*\[\[0, 1\]\]; "
                     r"d=3 separates them"):
    st.spectral_codebook(S, 2)
  assert st.spectral_codebook(S, 3).shape == (3, 3)


def test_bad_input():
  S = st.flat(4)
  with pytest.raises(ValueError, match="d must be >= 1"):
    st.spectral_codebook(S, 0)
  with pytest.raises(ValueError, match="d must be <= 4"):
    st.spectral_codebook(S, 5)
  with pytest.raises(TypeError, match="d must be an int"):
    st.spectral_codebook(S, 2.0)
  with pytest.raises(ValueError, match="degeneracy_rtol must be a positive"):
    st.spectral_codebook(S, 2, degeneracy_rtol=-1.0)
  with pytest.raises(TypeError, match="complex"):
    st.spectral_codebook(np.eye(3) * 1j, 2)
  with pytest.raises(ValueError, match="restarts must be >= 1"):
    st.spectral_codebook(S, 2, restarts=0)
  # Integer kernels work.
  assert st.spectral_codebook(np.array([[2, 1], [1, 2]]), 2).shape == (2, 2)


def test_traced_kernel_raises_clearly():
  with pytest.raises(TypeError, match="needs a concrete kernel"):
    jax.jit(lambda S: st.spectral_codebook(S, 2))(st.flat(4))


def test_deterministic():
  a = st.spectral_codebook(st.flat(7), 3)
  b = st.spectral_codebook(st.flat(7), 3)
  np.testing.assert_array_equal(a, b)
  assert isinstance(a, jax.Array) and a.dtype == jnp.float32


def test_flat_d1_merges_and_says_d2():
  with pytest.raises(ValueError, match=r"share a code at d=1.*: \[\[\d, \d\]\]; "
                     r"d=2 separates them"):
    st.spectral_codebook(st.flat(3), 1)
  # Two classes are ±1: distinct.
  np.testing.assert_allclose(np.sort(np.asarray(
      st.spectral_codebook(st.flat(2), 1))[:, 0]), [-1, 1], atol=1e-6)


# --- The tie rule ----------------------------------------------------------------


def _spread(lam, seed=0):
  return ref.with_spectrum(np.random.default_rng(seed), np.asarray(lam))


def test_exact_ties_are_resolved_near_ties_are_not():
  # Three modes at 1 (an exact tie, split only by rounding), then distinct
  # eigenvalues 1e-4 apart. The first is a tie; the second is left to the
  # eigenvectors, whose top-d subspace is unique: the codes are plain MDS.
  from spectral_targets import _codebook
  S = _spread([1.0, 1.0, 1.0, 0.5, 0.5 - 1e-4, 0.1, 0.0, 0.0, 0.0, 0.0])
  S = S.astype(np.float32)
  modes = _codebook._modes(_codebook._operators.as_operator(S), 4, None,
                           method="dense", tol=1e-5, max_iter=10, seed=0)
  assert _codebook._tie_block(modes, 2) == (0, 3)
  assert _codebook._tie_block(modes, 4) == (3, 4)
  lam, U = np.linalg.eigh(S.astype(np.float64))
  Y = U[:, ::-1][:, :4] * np.sqrt(lam[::-1][:4])
  X = np.asarray(st.spectral_codebook(S, 4, normalize=False), np.float64)
  np.testing.assert_allclose(X @ X.T, Y @ Y.T, atol=1e-5)
  # Asked to, the near tie is lumped and resolved too: among the rank-4
  # approximations that cost at most 1e-4 more, the one with the most equal
  # norms.
  modes = modes._replace(err=_codebook._errors(modes.lam, None, S.dtype,
                                               1e-3))
  assert _codebook._tie_block(modes, 4) == (3, 5)
  Z = np.asarray(st.spectral_codebook(S, 4, normalize=False,
                                      degeneracy_rtol=1e-3), np.float64)
  assert np.var((Z**2).sum(1)) < np.var((X**2).sum(1))
  # The exact tie at d = 2 is resolved: more equal norms than eigh's basis.
  X2 = np.asarray(st.spectral_codebook(S, 2, normalize=False), np.float64)
  assert np.var((X2**2).sum(1)) < np.var((Y[:, :2]**2).sum(1))


def test_iterative_ties_follow_the_residuals():
  # Eigenvalue 5 three times (an exact tie) and 4, 4 - 1e-3: distinct, and
  # resolved by a solve to tol 5e-5 (a tie under the old sqrt(eps) max|λ|
  # rule). Randomized subspace iteration sees both as a dense eigh does.
  from spectral_targets import _codebook
  lam = np.concatenate([[5.0, 5.0, 5.0, 4.0, 4.0 - 1e-3, 3.0],
                        np.linspace(1, 0, 494)])
  S = _spread(lam, seed=1).astype(np.float32)
  op = _codebook._operators.as_operator(S)
  modes = _codebook._modes(op, 4, None, method="randomized", tol=5e-5,
                           max_iter=500, seed=0)
  assert _codebook._tie_block(modes, 2) == (0, 3)
  assert _codebook._tie_block(modes, 4) == (3, 4)
  X = np.asarray(st.spectral_codebook(S, 4, normalize=False,
                                      method="randomized", tol=5e-5),
                 np.float64)
  want = ref.best_rank_psd(S, 4)
  np.testing.assert_allclose(X @ X.T, want, atol=2e-3 * np.abs(want).max())


def test_float32_kernels_built_with_rounding_keep_their_ties():
  # double_center in float32 splits the tie by rounding: still one tie.
  C = 12
  S = st.double_center(st.double_center(st.flat(C)) * 3.0 + 0.1)
  disp, worst = ref.dispersion_and_max_cosine(
      st.spectral_codebook(S, 4, normalize=False))
  assert disp < 1e-6
  assert worst == pytest.approx(ref.harmonic_frame_max_cosine(C, 4),
                                abs=1e-3)


# --- Merged codes ---------------------------------------------------------------


def test_cifar_tree_at_d19_merges_siblings():
  edges, classes = st.cifar100_hierarchy()
  S = st.double_center(st.from_hierarchy(edges, classes=classes))
  with pytest.raises(ValueError, match=r"share a code at d=19.*\(20 groups\)\]; "
                     r"d=99 separates them.*allow_merged=True"):
    st.spectral_codebook(S, 19)
  codes = np.asarray(st.spectral_codebook(S, 19, allow_merged=True))
  assert len(np.unique(codes.round(4), axis=0)) == 20
  assert st.separating_dimension(S) == 99
  codes = np.asarray(st.spectral_codebook(S, 99))
  assert len(np.unique(codes.round(4), axis=0)) == 100


def test_identical_classes_are_separated_by_no_d():
  S = st.blocks([0, 0, 1, 1, 1, 2])
  with pytest.raises(ValueError, match=r"\[\[0, 1\], \[2, 3, 4\]\]; no d "
                     "separates them"):
    st.spectral_codebook(S, 3)
  with pytest.raises(ValueError, match=r"classes \[\[0, 1\], \[2, 3, 4\]\] "
                     "have the same code at every d"):
    st.separating_dimension(S)
  assert st.spectral_codebook(S, 3, allow_merged=True).shape == (6, 3)


def test_zero_kernel_is_a_zero_code_error_on_every_path():
  zero = np.zeros((50, 50), np.float32)
  with pytest.raises(ValueError, match=r"get a zero code at d=2.*no d gives "
                     "them one"):
    st.spectral_codebook(zero, 2, method="dense")
  # (Issue 14: NumPy's "zero-size array to reduction operation minimum".)
  with pytest.raises(ValueError, match=r"get a zero code at d=2.*none of the "
                     r"\d+ modes computed gives them one"):
    st.spectral_codebook(zero, 2, method="randomized")
  K = st.low_rank_kernel(np.zeros((3000, 2), np.float32))
  with pytest.raises(ValueError, match="get a zero code at d=4"):
    st.spectral_codebook(K, 4)


@given(seed=hs.integers(0, 2**31), C=hs.integers(3, 16),
       kind=hs.sampled_from(["tree", "blocks", "graded", "random"]))
def test_separating_dimension_matches_brute_force(seed, C, kind):
  rng = np.random.default_rng(seed)
  if kind == "tree":
    S = np.asarray(st.double_center(st.from_hierarchy(
        st.random_hierarchy(C, seed=seed % 1000))))
  elif kind == "blocks":
    S = np.asarray(st.blocks(rng.integers(0, C, size=C))) + np.diag(
        rng.uniform(0.5, 1, size=C))  # every class its own row
  elif kind == "graded":
    S = np.asarray(st.double_center(st.graded(C, float(rng.uniform(0.5, 3)))))
  else:
    S = ref.random_psd(rng, C, rank=int(rng.integers(1, C + 1)))
  S = np.asarray(S, np.float32)
  eps = np.finfo(np.float32).eps
  want = ref.separating_dimension(S, 128 * eps, np.sqrt(eps))
  if want is None:
    with pytest.raises(ValueError, match="no d separates every class"):
      st.separating_dimension(S)
    return
  got = st.separating_dimension(S)
  assert got == want
  codes = np.asarray(st.spectral_codebook(S, got))  # no error
  assert len(np.unique(codes.round(3), axis=0)) == C


def test_coincident_codes_found_without_a_pairwise_matrix():
  # Near-duplicates planted across grid cells and within the radius, among
  # random codes: the sorted-projection search finds what all pairs find.
  from spectral_targets import _codebook
  rng = np.random.default_rng(0)
  X = rng.normal(size=(400, 6))
  dup = rng.integers(0, 400, size=60)
  X[rng.integers(0, 400, size=60)] = X[dup] * rng.uniform(0.5, 2, size=(60, 1)) \
      + rng.normal(size=(60, 6)) * 1e-4
  radius = rng.uniform(2e-4, 1e-3, size=400)
  got = [g.tolist() for g in _codebook._coincident(
      X / np.linalg.norm(X, axis=1, keepdims=True), radius)]
  assert got == ref.coincident_groups(X, radius)
  assert got  # the test plants some


@given(seed=hs.integers(0, 2**31), n=hs.integers(2, 60), d=hs.integers(1, 4))
def test_coincident_codes_match_every_pair(seed, n, d):
  # Clustered points with distances near the radii, so pairs straddle the
  # grid's cells and the test's threshold alike.
  from spectral_targets import _codebook
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(max(n // 4, 1), d))
  X = centres[rng.integers(0, len(centres), size=n)] + rng.normal(
      size=(n, d)) * 0.03
  radius = rng.uniform(0.005, 0.03, size=n)
  got = [g.tolist() for g in _codebook._coincident(
      X / np.linalg.norm(X, axis=1, keepdims=True), radius)]
  assert got == ref.coincident_groups(X, radius)


def test_merged_classes_of_an_implicit_tree():
  # 3,000 leaves under 30 parents: d = 30 keeps the 30 parent modes only,
  # so the leaves of a parent share a code; found on the operator path
  # without a C x C matrix.
  edges = [("root", f"p{i}") for i in range(30)] + [
      (f"p{i}", f"c{i}.{j}") for i in range(30) for j in range(100)]
  K = st.from_hierarchy(edges, implicit=True)
  with pytest.raises(ValueError, match=r"share a code at d=30.*\(30 groups\)"
                     r"\]; none of the \d+ modes computed separates them"):
    st.spectral_codebook(K, 30, method="randomized")
  codes = st.spectral_codebook(K, 30, method="randomized", allow_merged=True)
  assert len(np.unique(np.asarray(codes).round(3), axis=0)) == 30


def test_codes_do_not_depend_on_the_eigh_backend(monkeypatch):
  # LAPACK float64 below HOST_EIGH_MAX classes, the jitted float32 eigh
  # above: the sign convention makes them give the same codes.
  from spectral_targets import _eigensolvers
  S = st.double_center(st.graded(40, 3.0))
  host = np.asarray(st.spectral_codebook(S, 5))
  monkeypatch.setattr(_eigensolvers, "HOST_EIGH_MAX", 10)
  np.testing.assert_allclose(st.spectral_codebook(S, 5), host, atol=1e-4)


def test_an_operator_that_returns_nan_is_named():
  @jax.tree_util.register_static
  class Broken(st.KernelOperator):
    num_classes, dtype = 3000, jnp.float32

    def matmul(self, x):
      return jnp.asarray(x, self.dtype) * jnp.nan

  with pytest.raises(ValueError, match="non-finite eigenvalues"), \
      pytest.warns(st.ConvergenceWarning):
    st.spectral_codebook(Broken(), 4)


def test_blas_runs_on_one_thread_while_a_codebook_is_built(monkeypatch):
  threadpoolctl = pytest.importorskip("threadpoolctl")
  from spectral_targets import _eigensolvers
  seen = []
  original = _eigensolvers.host_eigenmodes

  def spy(op):
    seen.append([lib["num_threads"] for lib in
                 threadpoolctl.threadpool_info()
                 if lib["user_api"] == "blas"])
    return original(op)

  monkeypatch.setattr(_eigensolvers, "host_eigenmodes", spy)
  st.spectral_codebook(st.flat(5), 2)
  assert seen and seen[0] and all(n == 1 for n in seen[0])


def test_separating_dimension_inputs():
  edges = st.random_hierarchy(60, seed=2)
  dense = st.double_center(st.from_hierarchy(edges))
  assert st.separating_dimension(dense) == ref.separating_dimension(
      np.asarray(dense), 128 * np.finfo(np.float32).eps,
      np.sqrt(np.finfo(np.float32).eps))
  # An operator is made dense: the same answer.
  assert st.separating_dimension(st.from_hierarchy(edges, implicit=True)) \
      == st.separating_dimension(st.from_hierarchy(edges))
  with pytest.raises(TypeError, match="needs a concrete kernel"):
    jax.jit(st.separating_dimension)(dense)
  with pytest.raises(ValueError, match="degeneracy_rtol must be a positive"):
    st.separating_dimension(dense, degeneracy_rtol=0.0)
  with pytest.raises(ValueError, match="square"):
    st.separating_dimension(np.ones((2, 3)))

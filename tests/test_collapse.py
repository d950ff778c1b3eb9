
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import given
from hypothesis import strategies as hs

import spectral_targets as st
from spectral_targets import _class_statistics as cs

# -- NumPy float64 references, written from the definitions ------------------

def ref_collapse(Z, y, C, W=None, b=None):
  Z = np.asarray(Z, np.float64)
  between, within = ref.class_covariances(Z, y, C)
  present = [c for c in range(C) if np.any(y == c)]
  K = len(present)
  means = np.stack([Z[y == c].mean(0) for c in present])
  M = means - Z.mean(0)
  nc1 = np.trace(within @ np.linalg.pinv(between, hermitian=True)) / K
  U = M / np.linalg.norm(M, axis=1, keepdims=True)
  G = U @ U.T
  etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
  nc2 = np.linalg.norm(G / np.linalg.norm(G) - etf)
  norms = np.linalg.norm(M, axis=1)
  out = dict(nc1=nc1, nc2=nc2, nc2_equinorm=norms.std() / norms.mean())
  if W is not None:
    Wp = np.asarray(W, np.float64)[present]
    out["nc3"] = np.linalg.norm(Wp / np.linalg.norm(Wp) - M / np.linalg.norm(M))
    scores = Z @ np.asarray(W, np.float64).T + (0 if b is None else b)
    full = np.full((C, Z.shape[1]), np.nan)
    full[present] = means
    d = np.array([[np.linalg.norm(z - full[c]) if c in present else np.inf
                   for c in range(C)] for z in Z])
    out["nc4"] = np.mean(scores.argmax(1) == d.argmin(1))
  return out


def _data(seed, N=120, D=6, C=5, spread=1.0, offset=0.0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C, size=N)
  centres = rng.normal(size=(C, D)) * 3
  Z = centres[y] + spread * rng.normal(size=(N, D)) + offset
  return Z.astype(np.float32), y


def test_class_covariances_reference():
  Z, y = _data(0)
  between, within = st.class_covariances(Z, y, 5)
  rb, rw = ref.class_covariances(Z, y, 5)
  np.testing.assert_allclose(between, rb, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(within, rw, rtol=1e-4, atol=1e-4)
  f = jax.jit(st.class_covariances, static_argnums=2)
  np.testing.assert_allclose(f(Z, y, 5)[1], within, rtol=1e-5, atol=1e-6)


def test_stable_with_large_offsets():
  # Means far from 0 against a small spread: raw sums of squares would
  # cancel in float32; centred scatter does not.
  Z, y = _data(1, spread=1e-2, offset=1e3)
  _, within = st.class_covariances(Z, y, 5)
  _, rw = ref.class_covariances(Z, y, 5)
  np.testing.assert_allclose(within, rw, rtol=2e-2, atol=1e-7)
  stats = st.ClassStatistics.zeros(5, 6)
  for chunk in np.array_split(np.arange(len(y)), 7):
    stats = stats.update(Z[chunk], y[chunk])
  np.testing.assert_allclose(stats.covariances()[1], rw, rtol=2e-2, atol=1e-7)


@given(seed=hs.integers(0, 2**31), chunks=hs.integers(1, 9))
def test_chunked_equals_one_shot(seed, chunks):
  Z, y = _data(seed, N=90)
  one = st.class_covariances(Z, y, 5)
  stats = st.ClassStatistics.zeros(5, 6)
  for chunk in np.array_split(np.random.default_rng(seed).permutation(90),
                              chunks):
    stats = stats.update(Z[chunk], y[chunk])
  for a, b in zip(stats.covariances(), one):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(stats.counts, np.bincount(y, minlength=5))
  # merge is the same as sequential updates, in either order.
  half = len(y) // 2
  a = st.ClassStatistics.zeros(5, 6).update(Z[:half], y[:half])
  b = st.ClassStatistics.zeros(5, 6).update(Z[half:], y[half:])
  for x, w in zip(b.merge(a).covariances(), one):
    np.testing.assert_allclose(x, w, rtol=1e-4, atol=1e-4)


def test_statistics_are_a_jittable_pytree():
  Z, y = _data(2)
  update = jax.jit(st.ClassStatistics.update)
  stats = update(st.ClassStatistics.zeros(5, 6), Z, y)
  assert len(jax.tree_util.tree_leaves(stats)) == 3
  np.testing.assert_allclose(stats.means[y[0]], Z[y == y[0]].mean(0),
                             rtol=1e-5)
  # One compiled scan over chunks.
  chunks = (Z[:120].reshape(4, 30, 6), y[:120].reshape(4, 30))
  scanned, _ = jax.lax.scan(lambda s, b: (s.update(*b), None),
                            st.ClassStatistics.zeros(5, 6), chunks)
  np.testing.assert_allclose(scanned.covariances()[1],
                             st.class_covariances(Z, y, 5)[1], rtol=1e-4,
                             atol=1e-5)


@given(seed=hs.integers(0, 2**31), C=hs.integers(2, 9), D=hs.integers(1, 12))
def test_between_rank_at_most_c_minus_1(seed, C, D):
  Z, y = _data(seed, N=60, D=D, C=C)
  between, _ = st.class_covariances(Z, y, C)
  lam = np.linalg.eigvalsh(np.asarray(between, np.float64))
  assert np.sum(lam > 1e-4 * max(lam.max(), 1e-12)) <= C - 1


def test_collapse_metrics_reference():
  Z, y = _data(3)
  W = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
  b = np.random.default_rng(4).normal(size=5).astype(np.float32)
  m = st.collapse_metrics(Z, y, 5, classifier=W, bias=b)
  want = ref_collapse(Z, y, 5, W, b)
  for k, val in want.items():
    assert float(getattr(m, k)) == pytest.approx(val, rel=1e-3, abs=1e-5), k
  assert int(m.num_present) == 5
  assert int(m.prototype_modes) == 4
  bt, wt = ref.class_covariances(Z, y, 5)
  np.testing.assert_allclose(m.between_spectrum,
                             np.sort(np.linalg.eigvalsh(bt))[::-1], atol=1e-3)
  np.testing.assert_allclose(m.within_spectrum,
                             np.sort(np.linalg.eigvalsh(wt))[::-1], atol=1e-3)
  no_w = st.collapse_metrics(Z, y, 5)
  assert no_w.nc3 is None and no_w.nc4 is None
  assert float(no_w.nc1) == pytest.approx(float(m.nc1))


def test_empty_class_is_left_out_not_nan():
  Z, y = _data(5)
  keep = y != 2
  m = st.collapse_metrics(Z[keep], y[keep], 5)
  want = ref_collapse(Z[keep], y[keep], 5)
  assert int(m.num_present) == 4
  for k, val in want.items():
    assert float(getattr(m, k)) == pytest.approx(val, rel=1e-3, abs=1e-5), k
  # Relabelled onto 4 classes, the metrics are the same.
  relabel = np.array([0, 1, -1, 2, 3])[y[keep]]
  m4 = st.collapse_metrics(Z[keep], relabel, 4)
  assert float(m4.nc1) == pytest.approx(float(m.nc1), rel=1e-4)
  assert float(m4.nc2) == pytest.approx(float(m.nc2), rel=1e-4)
  between, within = st.class_covariances(Z[keep], y[keep], 5)
  assert np.all(np.isfinite(between)) and np.all(np.isfinite(within))


@pytest.mark.parametrize("C", [3, 4, 10])
def test_collapse_to_simplex_etf(C):
  etf = st.spectral_codebook(st.flat(C), C - 1)
  y = jnp.repeat(jnp.arange(C), 40)
  noise = jax.random.normal(jax.random.key(C), (len(y), C - 1))
  values = []
  for eps in (1e-1, 1e-2, 1e-3):
    m = st.collapse_metrics(etf[y] + eps * noise, y, C, classifier=etf)
    values.append((float(m.nc1), float(m.nc2), float(m.nc3), float(m.nc4)))
  nc1, nc2, nc3, nc4 = values[-1]
  assert nc1 < 1e-5 and nc2 < 1e-2 and nc3 < 1e-2 and nc4 == 1.0
  assert values[0][0] > values[1][0] > values[2][0]  # NC1 -> 0


@given(seed=hs.integers(0, 2**31), shift=hs.floats(-10, 10))
def test_invariant_to_rotation_and_translation(seed, shift):
  Z, y = _data(seed, N=80, D=4, C=4)
  W = np.random.default_rng(seed + 1).normal(size=(4, 4)).astype(np.float32)
  R, _ = np.linalg.qr(np.random.default_rng(seed + 2).normal(size=(4, 4)))
  R = R.astype(np.float32)
  a = st.collapse_metrics(Z, y, 4, classifier=W)
  # Rotate features and classifier together; translate the features (the
  # NC4 bias compensates the translation).
  t = np.float32(shift) * np.ones(4, np.float32)
  b = -(W @ R) @ t
  rotated = st.collapse_metrics(Z @ R + t, y, 4, classifier=W @ R, bias=b)
  for k in ("nc1", "nc2", "nc2_equinorm", "nc3", "nc4"):
    assert float(getattr(rotated, k)) == pytest.approx(
        float(getattr(a, k)), rel=2e-3, abs=2e-4), k


def test_from_statistics_and_errors():
  Z, y = _data(6)
  stats = st.ClassStatistics.zeros(5, 6).update(Z, y)
  m = st.collapse_metrics_from_statistics(stats)
  assert float(m.nc1) == pytest.approx(float(st.collapse_metrics(Z, y, 5).nc1),
                                       rel=1e-5)
  assert m.nc4 is None
  with pytest.raises(ValueError, match="at least 2 classes"):
    st.collapse_metrics(Z, np.zeros_like(y), 5)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    st.class_covariances(Z, y + 1, 5)
  with pytest.raises(ValueError, match=r"labels must have shape \(120,\)"):
    st.class_covariances(Z, y[:3], 5)
  with pytest.raises(TypeError, match="features must have a floating"):
    st.class_covariances(Z.astype(int), y, 5)
  with pytest.raises(ValueError, match="features must have rank 2"):
    st.class_covariances(Z[0], y[:1], 5)
  with pytest.raises(ValueError, match=r"classifier must have shape \(5, 6\)"):
    st.collapse_metrics(Z, y, 5, classifier=np.ones((5, 5)))
  with pytest.raises(ValueError, match="features must have 6 columns"):
    stats.update(Z[:, :3], y)
  with pytest.raises(ValueError, match="cannot merge"):
    stats.merge(st.ClassStatistics.zeros(4, 6))
  with pytest.raises(TypeError, match="stats must be a ClassStatistics"):
    st.collapse_metrics_from_statistics((1, 2))


# -- the within-class product, blocked, and its accuracy ----------------------

def _large(kind, seed=0, N=4000, D=8, C=10):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C, size=N)
  noise = rng.normal(size=(N, D))
  if kind == "offset":   # a large common offset: 1e3 + N(0, 1)
    Z = 1e3 + noise
  else:                  # class means spread over 1e3 against unit noise
    Z = 1e3 * rng.normal(size=(C, D))[y] + noise
  return Z.astype(np.float32), y


@pytest.mark.parametrize("kind", ["offset", "spread"])
@pytest.mark.parametrize("block_bytes", [None, 7 * 8 * 4],
                         ids=["one-block", "blocks-of-7-rows"])
def test_within_accurate_at_large_offset_and_class_spread(kind, block_bytes,
                                                          monkeypatch):
  # ZᵀZ − Σ n_c μ_c μ_cᵀ would lose every digit here in float32 (ZᵀZ is
  # ~1e6 times Σ_W); centring by the class means keeps ~1e-6.
  if block_bytes:
    monkeypatch.setattr(cs, "BLOCK_BYTES", block_bytes)
  Z, y = _large(kind)
  between, within = st.class_covariances(Z, y, 10)
  rb, rw = ref.class_covariances(Z, y, 10)
  assert np.abs(np.asarray(within) - rw).max() <= 1e-5 * np.abs(rw).max()
  # Σ_B is as accurate as the class means, whose float32 spacing near 1e3
  # is 6e-5 (Σ_B itself is ~1e-3 for the common offset).
  scale = max(np.abs(rb).max(), np.abs(rw).max())
  assert np.abs(np.asarray(between) - rb).max() <= 1e-4 * scale
  stats = st.ClassStatistics.zeros(10, 8)
  for chunk in np.array_split(np.arange(len(y)), 5):
    stats = stats.update(Z[chunk], y[chunk])
  got = np.asarray(stats.covariances()[1])
  assert np.abs(got - rw).max() <= 1e-5 * np.abs(rw).max()


@pytest.mark.parametrize("rows", [1, 7, 30, 120, 1000])
def test_blocked_product_equals_one_product(rows, monkeypatch):
  # Blocks of `rows` rows (with and without a remainder, one block, and
  # more rows per block than there are rows) give the same statistics.
  Z, y = _data(7)
  want = st.class_covariances(Z, y, 5)
  monkeypatch.setattr(cs, "BLOCK_BYTES", rows * Z.shape[1] * 4)
  got = st.class_covariances(Z, y, 5)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jitted = jax.jit(st.class_covariances, static_argnums=2)(Z, y, 5)
  np.testing.assert_allclose(jitted[1], want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [7, 1000])
def test_within_gradient(rows, monkeypatch):
  # d tr(R Σ_W)/dZ = (Z − M[y])(R + Rᵀ)/N: the class means' own derivative
  # drops out because the centred rows of a class sum to zero.
  monkeypatch.setattr(cs, "BLOCK_BYTES", rows * 6 * 4)
  Z, y = _data(8)
  R = np.random.default_rng(8).normal(size=(6, 6))
  grad = jax.grad(lambda Z: jnp.sum(st.class_covariances(Z, y, 5)[1] * R))(Z)
  Z64 = Z.astype(np.float64)
  means = np.stack([Z64[y == k].mean(0) for k in range(5)])
  want = (Z64 - means[y]) @ (R + R.T) / len(y)
  np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5)


def test_blocked_product_needs_no_copy_of_the_features():
  # The compiled program's temporaries stay far below one N × D copy.
  N, D = 100_000, 64
  Z = jnp.zeros((N, D))
  y = jnp.zeros((N,), jnp.int32)
  compiled = jax.jit(st.class_covariances, static_argnums=2).lower(
      Z, y, 10).compile()
  assert compiled.memory_analysis().temp_size_in_bytes < N * D * 4 / 4


def test_statistics_methods_reject_wrong_types():
  Z, y = _data(9)
  stats = st.ClassStatistics.zeros(5, 6)
  with pytest.raises(TypeError, match="other must be a ClassStatistics"):
    stats.merge(3)
  with pytest.raises(TypeError, match="other must be a ClassStatistics"):
    stats.merge((stats.counts, stats.means, stats.scatter))
  for bad in (None, "features", object()):
    with pytest.raises(TypeError, match="features must be a(n| numeric) array"):
      stats.update(bad, y)
    with pytest.raises(TypeError, match="labels must be a(n| numeric) array"):
      stats.update(Z, bad)
  with pytest.raises(TypeError, match="labels must have an integer dtype"):
    stats.update(Z, y.astype(np.float32))
  with pytest.raises(TypeError, match="axis_name must be a mesh axis name"):
    stats.all_reduce(3)
  with pytest.raises(TypeError, match="axis_name must be a mesh axis name"):
    stats.all_reduce(("batch", None))
  with pytest.raises(TypeError, match="num_classes must be an int"):
    st.ClassStatistics.zeros("5", 6)
  with pytest.raises(TypeError, match="dim must be an int"):
    st.ClassStatistics.zeros(5, 6.0)
  with pytest.raises(TypeError, match="dtype must be a floating dtype"):
    st.ClassStatistics.zeros(5, 6, dtype=jnp.int32)
  with pytest.raises(TypeError, match="dtype must be a floating dtype"):
    st.ClassStatistics.zeros(5, 6, dtype="no such dtype")
  with pytest.raises(TypeError, match="num_classes must be an int"):
    st.class_covariances(Z, y, 5.0)
  with pytest.raises(TypeError, match="classifier must be a(n| numeric) array"):
    st.collapse_metrics(Z, y, 5, classifier="W")
  with pytest.raises(TypeError, match="bias must be a(n| numeric) array"):
    st.collapse_metrics(Z, y, 5, classifier=np.ones((5, 6)), bias=object())


def test_vmapped_metrics_run_one_eigendecomposition_at_a_time():
  """Under vmap on CPU, two batched eigh calls running at once can deadlock
  jaxlib's two-thread pool: collapse_metrics decomposes Σ_B once (spectrum
  and pseudo-inverse) and Σ_W only after it."""
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(3, 60, 5)), jnp.float32)
  y = jnp.asarray(np.arange(60) % 4)
  fn = jax.vmap(lambda f: st.collapse_metrics(f, y, 4).nc1)

  def every(f):
    m = st.collapse_metrics(f, y, 4)
    return m.nc1, m.between_spectrum, m.within_spectrum

  text = jax.jit(jax.vmap(every)).lower(z).as_text()
  assert text.count("custom_call @lapack_ssyevd_ffi") == 2
  assert "optimization_barrier" in text
  for i in range(3):
    between, within = (np.asarray(a, np.float64)
                       for a in st.class_covariances(z[i], y, 4))
    # Σ_B has rank C - 1 = 3 of 5: its null space is rounding noise.
    ref = np.trace(within @ np.linalg.pinv(between, rtol=1e-5,
                                           hermitian=True)) / 4
    np.testing.assert_allclose(fn(z)[i], ref, rtol=1e-4)

"""top_k_distillation_loss against brute force: the stored top-k scattered
into a row of -inf and distilled with distillation_loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st

N, D, V, K = 9, 5, 12, 4
RNG = np.random.default_rng(2)
H = RNG.normal(size=(N, D))
W = RNG.normal(size=(V, D))
VALUES = 2 * RNG.normal(size=(N, K))
VALUES[0, 2] = -np.inf  # a position with fewer than k stored classes
INDICES = np.stack([RNG.choice(V, K, replace=False) for _ in range(N)])
MASK = RNG.random(N) > 0.25
COT = RNG.normal(size=N)


def _scattered(values, indices):
  t = np.full((len(values), V), -np.inf)
  np.put_along_axis(t, indices, values, -1)
  return t


def _brute_force(h, w, values, indices, tau):
  t = _scattered(values, indices)
  return jnp.where(MASK, st.distillation_loss(h @ w.T, t, temperature=tau),
                   0)


@pytest.mark.parametrize("tau, chunk_size", [(0.5, 4), (1.0, None),
                                             (3.0, 2)])
def test_against_brute_force_float64(tau, chunk_size):
  with jax.enable_x64(True):
    h, w = jnp.asarray(H), jnp.asarray(W)

    def fused(h, w):
      return st.top_k_distillation_loss(h, w, VALUES, INDICES,
                                        temperature=tau, where=MASK,
                                        chunk_size=chunk_size)

    got, got_g = jax.jit(jax.value_and_grad(
        lambda *a: fused(*a) @ COT, argnums=(0, 1)))(h, w)
    want, want_g = jax.value_and_grad(
        lambda *a: _brute_force(*a, VALUES, INDICES, tau) @ COT,
        argnums=(0, 1))(h, w)
    np.testing.assert_allclose(got, want, rtol=1e-11)
    for g, w_ in zip(got_g, want_g):
      np.testing.assert_allclose(g, w_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jax.jit(fused)(h, w),
                               _brute_force(h, w, VALUES, INDICES, tau),
                               rtol=1e-11, atol=1e-14)


def test_tail_bucket_precision():
  # A student with almost all its mass on the teacher's classes: the tail
  # mass (~1e-9) is computed by its own log-sum-exp, not as 1 − Σ q.
  w = np.zeros((V, D))
  w[:K, 0] = 1.0
  h = np.zeros((1, D))
  h[0, 0] = 25.0
  values = np.zeros((1, K))
  indices = np.arange(K)[None]
  got = st.top_k_distillation_loss(h.astype(np.float32),
                                   w.astype(np.float32), values, indices)
  # KL = -log(1 - q_tail), q_tail = (V - K) e^-25 / (K + (V - K) e^-25).
  tail = (V - K) * np.exp(-25.0) / (K + (V - K) * np.exp(-25.0))
  np.testing.assert_allclose(got, [-np.log1p(-tail)], rtol=1e-5)


def test_all_classes_equals_full_distillation():
  indices = np.stack([RNG.permutation(V) for _ in range(N)])
  t = 2 * RNG.normal(size=(N, V))
  values = np.take_along_axis(t, indices, -1)
  got = st.top_k_distillation_loss(H, W, values, indices, temperature=2.0)
  want = st.distillation_loss(H @ W.T, t, temperature=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_bf16_student():
  h, w = jnp.asarray(H, jnp.bfloat16), jnp.asarray(W, jnp.bfloat16)
  got = st.top_k_distillation_loss(h, w, VALUES, INDICES, where=MASK)
  assert got.dtype == jnp.float32
  want = _brute_force(np.asarray(h, np.float64), np.asarray(w, np.float64),
                      VALUES, INDICES, 1.0)
  np.testing.assert_allclose(got, want, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(teacher_indices=np.tile([0, 1, 1, 2], (N, 1))), ValueError,
     "teacher_indices must hold distinct classes"),
    (dict(teacher_indices=INDICES + V), ValueError,
     r"teacher_indices must lie in \[0, 12\)"),
    (dict(teacher_indices=INDICES[:, :2]), ValueError,
     "teacher_indices must have the shape"),
    (dict(teacher_indices=INDICES.astype(float)), TypeError,
     "teacher_indices must have an integer"),
    (dict(teacher_values=VALUES[:3]), ValueError,
     "teacher_values must have shape"),
    (dict(student_weight=W[:, :2]), ValueError, "student_hidden has D = 5"),
    (dict(temperature=-1.0), ValueError, "temperature must be"),
])
def test_bad_input(kwargs, error, match):
  args = dict(student_hidden=H, student_weight=W, teacher_values=VALUES,
              teacher_indices=INDICES) | kwargs
  with pytest.raises(error, match=match):
    st.top_k_distillation_loss(
        args.pop("student_hidden"), args.pop("student_weight"),
        args.pop("teacher_values"), args.pop("teacher_indices"), **args)


def test_backward_in_vocabulary_blocks_and_reduced_form(monkeypatch):
  monkeypatch.setattr(st._vocabulary_chunks, "CHUNK_ELEMENTS", 8)
  with jax.enable_x64(True):
    h, w = jnp.asarray(H), jnp.asarray(W)
    f = lambda h, w, **kw: st.top_k_distillation_loss(
        h, w, VALUES, INDICES, temperature=2.0, where=MASK, chunk_size=4,
        **kw)
    got = jax.grad(lambda *a: f(*a) @ COT, argnums=(0, 1))(h, w)
    want = jax.grad(lambda *a: _brute_force(*a, VALUES, INDICES, 2.0) @ COT,
                    argnums=(0, 1))(h, w)
    for g, w_ in zip(got, want):
      np.testing.assert_allclose(g, w_, rtol=1e-9, atol=1e-12)
    got = jax.grad(lambda *a: f(*a, reduction="mean"), argnums=(0, 1))(h, w)
    want = jax.grad(lambda *a: _brute_force(*a, VALUES, INDICES, 2.0).sum()
                    / MASK.sum(), argnums=(0, 1))(h, w)
    for g, w_ in zip(got, want):
      np.testing.assert_allclose(g, w_, rtol=1e-9, atol=1e-12)

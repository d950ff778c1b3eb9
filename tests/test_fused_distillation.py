"""fused_linear_distillation_loss against the naive divergences of the full
logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st
import vocabulary_reference as ref

N, D, E, V = 9, 5, 4, 12
RNG = np.random.default_rng(1)
HS = RNG.normal(size=(N, D))
WS = RNG.normal(size=(V, D))
HT = RNG.normal(size=(N, E))
WT = RNG.normal(size=(V, E))
MASK = RNG.random(N) > 0.3
COT = RNG.normal(size=N)
KINDS = ["forward", "reverse", "jensen_shannon"]


def _fused(kind, tau, beta=0.3, **kw):
  def f(hs, ws, ht, wt):
    return st.fused_linear_distillation_loss(
        hs, ws, ht, wt, temperature=tau, divergence=kind, beta=beta, **kw)
  return f


def _naive(kind, tau, beta=0.3, where=None):
  def f(hs, ws, ht, wt):
    out = ref.divergence(hs @ ws.T, ht @ wt.T, tau, kind, beta)
    return out if where is None else jnp.where(where, out, 0)
  return f


def _value_and_grads(f, *args):
  return jax.jit(jax.value_and_grad(lambda *a: f(*a) @ COT,
                                    argnums=(0, 1, 2, 3)))(*args)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tau, chunk_size", [(0.25, 4), (1.0, None),
                                             (4.0, 2)])
def test_values_and_gradients_float64(kind, tau, chunk_size):
  with jax.enable_x64(True):
    args = tuple(map(jnp.asarray, (HS, WS, HT, WT)))
    fused = _fused(kind, tau, where=MASK, chunk_size=chunk_size)
    naive = _naive(kind, tau, where=MASK)
    np.testing.assert_allclose(jax.jit(fused)(*args), naive(*args),
                               rtol=1e-11, atol=1e-13)
    got, got_g = _value_and_grads(fused, *args)
    want, want_g = _value_and_grads(naive, *args)
    np.testing.assert_allclose(got, want, rtol=1e-11)
    for g, w in zip(got_g[:2], want_g[:2]):
      np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # No gradient into the teacher.
    for g in got_g[2:]:
      np.testing.assert_array_equal(g, 0)


def test_forward_equals_distillation_loss():
  got = st.fused_linear_distillation_loss(HS, WS, HT, WT, temperature=2.0,
                                          chunk_size=4)
  want = st.distillation_loss(HS @ WS.T, HT @ WT.T, temperature=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_large_temperature_keeps_float32_precision(kind):
  # At τ = 1e3 the textbook formula in float32 is off; the fused loss keeps
  # float32 precision against the float64 reference, gradient included.
  tau = 1e3
  args32 = tuple(np.asarray(a, np.float32) for a in (HS, WS, HT, WT))
  with jax.enable_x64(True):
    args64 = tuple(jnp.asarray(a, jnp.float64) for a in args32)
    want, want_g = _value_and_grads(_naive(kind, tau), *args64)
  got, got_g = _value_and_grads(_fused(kind, tau, chunk_size=4), *args32)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  for g, w in zip(got_g[:2], want_g[:2]):
    np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * np.abs(w).max())


def test_teacher_minus_inf_logit():
  # Class 0 is ruled out by the teacher: a weight row of (-inf, 0, ...) on
  # features whose first entry is positive gives a logit of -inf.
  ht = np.abs(HT) + 0.1
  wt = WT.copy()
  wt[0] = 0
  wt[0, 0] = -np.inf
  t = ht @ np.where(np.isinf(wt), 0, wt).T
  t[:, 0] = -np.inf
  with jax.enable_x64(True):
    fused = _fused("forward", 1.5, chunk_size=4)
    got, got_g = _value_and_grads(fused, HS, WS, ht, wt)
    naive = lambda hs, ws: ref.divergence(hs @ ws.T, t, 1.5, "forward")
    want, want_g = jax.value_and_grad(lambda *a: naive(*a) @ COT,
                                      argnums=(0, 1))(HS, WS)
    np.testing.assert_allclose(got, want, rtol=1e-11)
    for g, w in zip(got_g[:2], want_g):
      np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # The JSD stays finite (0 log 0 = 0); the reverse KL is +inf.
    js = _fused("jensen_shannon", 1.5)(HS, WS, ht, wt)
    np.testing.assert_allclose(
        js, ref.divergence(HS @ WS.T, t, 1.5, "jensen_shannon", 0.3),
        rtol=1e-11)
    assert np.isinf(_fused("reverse", 1.5)(HS, WS, ht, wt)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_and_fully_masked(kind):
  bf = tuple(jnp.asarray(a, jnp.bfloat16) for a in (HS, WS, HT, WT))
  fused = _fused(kind, 2.0, where=MASK, chunk_size=4)
  got = jax.jit(fused)(*bf)
  assert got.dtype == jnp.float32
  want = _naive(kind, 2.0, where=MASK)(
      *(np.asarray(a, np.float64) for a in bf))
  np.testing.assert_allclose(got, want, rtol=2e-2, atol=1e-3)
  np.testing.assert_array_equal(got[~MASK], 0)
  g = jax.grad(lambda hs: fused(hs, *bf[1:]).sum())(bf[0])
  assert g.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(g, np.float32)[~MASK], 0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(student_weight=WS[:, :3]), ValueError, "student_hidden has D = 5"),
    (dict(teacher_weight=WT[:5]), ValueError, "same number of classes V"),
    (dict(teacher_hidden=HT[:4]), ValueError, "same positions"),
    (dict(divergence="kl"), ValueError, "divergence must be one of"),
    (dict(divergence="jensen_shannon", beta=1.0), ValueError,
     r"beta must lie in \(0, 1\)"),
    (dict(temperature=0.0), ValueError, "temperature must be"),
    (dict(chunk_size=-2), ValueError, "chunk_size must be >= 1"),
    (dict(where=np.ones(3, bool)), ValueError, "where must have"),
])
def test_bad_input(kwargs, error, match):
  args = dict(student_hidden=HS, student_weight=WS, teacher_hidden=HT,
              teacher_weight=WT) | kwargs
  with pytest.raises(error, match=match):
    st.fused_linear_distillation_loss(
        args.pop("student_hidden"), args.pop("student_weight"),
        args.pop("teacher_hidden"), args.pop("teacher_weight"), **args)


@pytest.mark.parametrize("kind", KINDS)
def test_backward_in_vocabulary_blocks_and_reduced_form(kind, monkeypatch):
  # Small tiles force the backward pass into blocks of W's rows (V = 12:
  # blocks of 2 with chunks of 4 positions); the reduced form is the mean.
  monkeypatch.setattr(st._vocabulary_chunks, "CHUNK_ELEMENTS", 8)
  with jax.enable_x64(True):
    args = tuple(map(jnp.asarray, (HS, WS, HT, WT)))
    got, got_g = _value_and_grads(_fused(kind, 2.0, where=MASK,
                                         chunk_size=4), *args)
    want, want_g = _value_and_grads(_naive(kind, 2.0, where=MASK), *args)
    for g, w in zip(got_g[:2], want_g[:2]):
      np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    mean = jax.value_and_grad(
        lambda *a: _fused(kind, 2.0, where=MASK, chunk_size=4,
                          reduction="mean")(*a), argnums=(0, 1))(*args)
    naive_mean = jax.value_and_grad(
        lambda *a: _naive(kind, 2.0, where=MASK)(*a).sum() / MASK.sum(),
        argnums=(0, 1))(*args)
    np.testing.assert_allclose(mean[0], naive_mean[0], rtol=1e-11)
    for g, w in zip(mean[1], naive_mean[1]):
      np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)

"""fused_linear_cross_entropy against the naive loss of the full logits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import spectral_targets as st
import vocabulary_reference as ref

N, D, V = 11, 5, 13
RNG = np.random.default_rng(0)
H = RNG.normal(size=(N, D))
W = RNG.normal(size=(V, D))
B = RNG.normal(size=V)
Y = RNG.integers(0, V, size=N)
MASK = RNG.random(N) > 0.3
COT = RNG.normal(size=N)


def _grads(f, *args):
  return jax.jit(jax.grad(lambda *a: f(*a) @ COT, argnums=(0, 1, 2)))(*args)


@pytest.mark.parametrize("chunk_size", [1, 4, None, N + 3])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_values_and_gradients_float64(chunk_size, smoothing):
  # chunk_size 4 leaves an uneven last chunk (11 = 4 + 4 + 3).
  with jax.enable_x64(True):
    h, w, b = map(jnp.asarray, (H, W, B))

    def fused(h, w, b):
      return st.fused_linear_cross_entropy(
          h, w, Y, bias=b, label_smoothing=smoothing, where=MASK,
          chunk_size=chunk_size)

    def naive(h, w, b):
      return jnp.where(MASK, ref.cross_entropy(h, w, Y, b, smoothing), 0)

    got = jax.jit(fused)(h, w, b)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, naive(h, w, b), rtol=1e-12, atol=1e-12)
    for g, want in zip(_grads(fused, h, w, b), _grads(naive, h, w, b)):
      np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


def test_check_grads_numerical():
  with jax.enable_x64(True):
    f = lambda h, w: st.fused_linear_cross_entropy(h, w, Y, chunk_size=3)
    check_grads(f, (jnp.asarray(H), jnp.asarray(W)), order=1, modes="rev")


def test_equals_optax_and_batch_shape():
  logits = H @ W.T
  want = optax.softmax_cross_entropy_with_integer_labels(logits, Y)
  got = st.fused_linear_cross_entropy(H.astype(np.float32),
                                      W.astype(np.float32), Y)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # (..., D) positions keep their shape.
  got = st.fused_linear_cross_entropy(H[:10].reshape(2, 5, D), W,
                                      Y[:10].reshape(2, 5), chunk_size=3)
  assert got.shape == (2, 5)
  np.testing.assert_allclose(got.reshape(-1), want[:10], rtol=1e-5)


def test_codebook_head_equivalence():
  # A unit-row codebook with a scale: the codebook head's loss, gradients
  # with respect to the features and the (learnable) scale included.
  codes = np.asarray(st.spectral_codebook(st.graded(V, 2.0), 6))
  z = RNG.normal(size=(N, 6)).astype(np.float32)

  def naive(z, s):
    return optax.softmax_cross_entropy_with_integer_labels(
        st.codebook_logits(z, codes, scale=s), Y) @ COT

  def fused(z, s):
    return st.fused_linear_cross_entropy(z, codes, Y, scale=s,
                                         chunk_size=4) @ COT

  want, want_g = jax.value_and_grad(naive, argnums=(0, 1))(z, 8.0)
  got, got_g = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))(z, 8.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(got_g, want_g):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_masked_positions_give_zero_and_no_gradient():
  h = H.copy()
  h[~MASK] = np.nan  # whatever a masked position holds stays out
  loss, (gh, gw) = jax.value_and_grad(
      lambda h, w: st.fused_linear_cross_entropy(h, w, Y, where=MASK,
                                                 chunk_size=4).sum(),
      argnums=(0, 1))(h, W)
  assert np.isfinite(loss) and np.isfinite(gw).all()
  np.testing.assert_array_equal(gh[~MASK], 0)
  per = st.fused_linear_cross_entropy(h, W, Y, where=MASK)
  np.testing.assert_array_equal(per[~MASK], 0)
  # NaN in a position that is kept propagates.
  assert np.isnan(st.fused_linear_cross_entropy(h, W, Y)).any()


def test_bf16_inputs_accumulate_in_float32():
  h = jnp.asarray(H, jnp.bfloat16)
  w = jnp.asarray(W, jnp.bfloat16)
  got = jax.jit(lambda h, w: st.fused_linear_cross_entropy(h, w, Y))(h, w)
  assert got.dtype == jnp.float32
  want = ref.cross_entropy(np.asarray(h, np.float64),
                           np.asarray(w, np.float64), Y)
  np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
  gh, gw = jax.grad(lambda h, w: st.fused_linear_cross_entropy(
      h, w, Y).sum(), argnums=(0, 1))(h, w)
  assert gh.dtype == gw.dtype == jnp.bfloat16


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(weight=W[:, :3]), ValueError, "D = 5"),
    (dict(labels=Y[:4]), ValueError, "labels must have"),
    (dict(labels=np.full(N, V)), ValueError, r"labels must lie in \[0, 13\)"),
    (dict(labels=Y.astype(float)), TypeError, "labels must have an integer"),
    (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
    (dict(chunk_size=2.5), TypeError, "chunk_size must be an int"),
    (dict(where=MASK[:3]), ValueError, "where must have the positions'"),
    (dict(where=MASK.astype(int)), TypeError, "where must be a boolean"),
    (dict(bias=B[:3]), ValueError, "bias must have shape"),
    (dict(scale=-1.0), ValueError, "scale must be"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing must lie"),
    (dict(hidden=np.ones((N, D), int)), TypeError, "hidden must have a float"),
    (dict(axis_name="vocab"), ValueError, "axis_name 'vocab' is not"),
])
def test_bad_input(kwargs, error, match):
  args = dict(hidden=H, weight=W, labels=Y) | kwargs
  with pytest.raises(error, match=match):
    st.fused_linear_cross_entropy(args.pop("hidden"), args.pop("weight"),
                                  args.pop("labels"), **args)


def test_backward_in_vocabulary_blocks(monkeypatch):
  # Small tiles force the backward pass into blocks of W's rows (V = 12:
  # blocks of 2 with chunks of 4 positions).
  monkeypatch.setattr(st._vocabulary_chunks, "CHUNK_ELEMENTS", 8)
  with jax.enable_x64(True):
    h, w, b = map(jnp.asarray, (H, W[:12], B[:12]))
    y = Y % 12

    def fused(h, w, b):
      return st.fused_linear_cross_entropy(h, w, y, bias=b, where=MASK,
                                           label_smoothing=0.1, chunk_size=4)

    def naive(h, w, b):
      return jnp.where(MASK, ref.cross_entropy(h, w, y, b, 0.1), 0)

    for g, want in zip(_grads(fused, h, w, b), _grads(naive, h, w, b)):
      np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [3, None])
def test_reduced_form_is_the_mean(chunk_size):
  with jax.enable_x64(True):
    h, w, b = map(jnp.asarray, (H, W, B))

    def per(h, w, b):
      return st.fused_linear_cross_entropy(
          h, w, Y, bias=b, where=MASK,
          chunk_size=chunk_size).sum() / MASK.sum()

    def mean(h, w, b):
      return st.fused_linear_cross_entropy(
          h, w, Y, bias=b, where=MASK, chunk_size=chunk_size,
          reduction="mean")

    want, want_g = jax.value_and_grad(per, argnums=(0, 1, 2))(h, w, b)
    got, got_g = jax.jit(jax.value_and_grad(lambda *a: 2 * mean(*a),
                                            argnums=(0, 1, 2)))(h, w, b)
    np.testing.assert_allclose(got, 2 * want, rtol=1e-12)
    for g, w_ in zip(got_g, want_g):
      np.testing.assert_allclose(g, 2 * w_, rtol=1e-10, atol=1e-13)
    # No position kept: 0, with a zero gradient.
    none = np.zeros(N, bool)
    assert st.fused_linear_cross_entropy(h, w, Y, where=none,
                                         reduction="mean") == 0
    with pytest.raises(ValueError, match="reduction must be"):
      st.fused_linear_cross_entropy(h, w, Y, reduction="sum")

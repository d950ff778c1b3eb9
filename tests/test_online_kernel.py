"""OnlineKernel against a NumPy reference of online label smoothing's update
(Zhang et al. 2021, the authors' training loop) on a toy stream."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as hs

import spectral_targets as st

C = 5


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


class OLSReference:
  """The paper's loop, one example at a time: a correctly classified
  example adds its softmax to its class's row; at the epoch's end each row
  is divided by its count (one-hot here for a class never counted, where
  the authors' code puts 1/C)."""

  def __init__(self, C, lam=0.5):
    self.C, self.lam = C, lam
    self.matrix = np.eye(C)          # soft labels in use this epoch
    self.start_epoch()

  def start_epoch(self):
    self.sums = np.zeros((self.C, self.C))
    self.count = np.zeros(self.C)

  def step(self, logits, targets):
    p = _softmax(logits)
    loss = np.zeros(len(targets))
    for k, (pk, t) in enumerate(zip(p, targets)):
      loss[k] = (-(1 - self.lam) * np.log(pk[t])
                 - self.lam * np.sum(self.matrix[t] * np.log(pk)))
      if np.argsort(-pk, kind="stable")[0] == t:
        self.sums[t] += pk
        self.count[t] += 1
    return loss

  def end_epoch(self):
    for c in range(self.C):
      self.matrix[c] = (self.sums[c] / self.count[c] if self.count[c] > 0.5
                        else np.eye(self.C)[c])
    self.start_epoch()


def _stream(seed, epochs=3, batches=4, batch=16, C=C, sharpness=1.5):
  """Logits whose class means overlap, so some examples are misclassified."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(C, C)) * sharpness + np.eye(C) * 2
  for _ in range(epochs):
    epoch = []
    for _ in range(batches):
      y = rng.integers(0, C, size=batch)
      z = centres[y] + rng.normal(size=(batch, C))
      epoch.append((z.astype(np.float32), y))
    yield epoch


@jax.jit
def _ols_step(state, P, logits, labels, lam=0.5):
  targets = (1 - lam) * jax.nn.one_hot(labels, P.shape[0]) + lam * P[labels]
  loss = optax.softmax_cross_entropy(logits, targets)
  return state.update(jax.nn.softmax(logits), labels), loss


def test_ols_training_loop_matches_reference():
  ref = OLSReference(C)
  state, P = st.OnlineKernel.init(C), jnp.eye(C)
  for epoch in _stream(0):
    for z, y in epoch:
      state, loss = _ols_step(state, P, z, y)
      np.testing.assert_allclose(loss, ref.step(z, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state.counts, ref.count)
    np.testing.assert_allclose(state.sums, ref.sums, rtol=1e-5, atol=1e-6)
    ref.end_epoch()
    P, state = state.distributions(), state.reset()
    np.testing.assert_allclose(P, ref.matrix, rtol=1e-5, atol=1e-7)
  assert 0 < ref.matrix.diagonal().min() < 1   # a real, non-trivial P


def test_empty_class_falls_back_to_one_hot():
  state = st.OnlineKernel.init(4)
  np.testing.assert_array_equal(state.distributions(), np.eye(4))
  np.testing.assert_array_equal(state.kernel(), np.eye(4))
  # Class 3 never appears, class 2 only misclassified.
  p = _softmax([[3., 0, 0, 0], [0, 3., 0, 0], [3., 0, 0, 0]])
  state = state.update(p, np.array([0, 1, 2]))
  P, S = np.asarray(state.distributions()), np.asarray(state.kernel())
  assert np.all(np.isfinite(P)) and np.all(np.isfinite(S))
  np.testing.assert_array_equal(P[2:], np.eye(4)[2:])
  np.testing.assert_allclose(P[:2], p[:2], rtol=1e-6)
  np.testing.assert_allclose(S, (P + P.T) / 2)


def test_kernel_is_from_confusion_of_the_soft_counts():
  state = st.OnlineKernel.init(C)
  for z, y in next(_stream(1, sharpness=0.5)):
    state = state.update(jax.nn.softmax(z), y, correct_only=False)
  S = state.kernel()
  assert np.all(np.asarray(state.counts) > 0)
  np.testing.assert_allclose(S, S.T)
  np.testing.assert_allclose(S, st.from_confusion(state.sums), rtol=1e-5)
  np.testing.assert_allclose(state.distributions().sum(axis=1), 1, rtol=1e-6)


def test_correct_only_false_counts_every_example():
  z, y = next(_stream(2))[0]
  p = jax.nn.softmax(z)
  state = st.OnlineKernel.init(C).update(p, y, correct_only=False)
  np.testing.assert_array_equal(state.counts, np.bincount(y, minlength=C))
  want = np.zeros((C, C))
  np.add.at(want, y, np.asarray(p, np.float64))
  np.testing.assert_allclose(state.sums, want, rtol=1e-5)


@given(seed=hs.integers(0, 2**31), cut=hs.integers(0, 16))
def test_chunks_merge_and_where_agree_with_one_shot(seed, cut):
  z, y = next(_stream(seed))[0]
  p = jax.nn.softmax(z)
  one = st.OnlineKernel.init(C).update(p, y)
  chunked = st.OnlineKernel.init(C).update(p[:cut], y[:cut]).update(
      p[cut:], y[cut:])
  merged = st.OnlineKernel.init(C).update(p[:cut], y[:cut]).merge(
      st.OnlineKernel.init(C).update(p[cut:], y[cut:]))
  for other in (chunked, merged):
    np.testing.assert_array_equal(other.counts, one.counts)
    np.testing.assert_allclose(other.sums, one.sums, rtol=1e-5, atol=1e-6)
  mask = np.arange(16) < cut
  masked = st.OnlineKernel.init(C).update(p, y, where=mask)
  sliced = st.OnlineKernel.init(C).update(p[:cut], y[:cut])
  np.testing.assert_array_equal(masked.counts, sliced.counts)
  np.testing.assert_allclose(masked.sums, sliced.sums, rtol=1e-6)


def test_jit_traced_options_and_no_gradient():
  z, y = next(_stream(3))[0]
  p = jax.nn.softmax(z)
  update = jax.jit(st.OnlineKernel.update)
  state = st.OnlineKernel.init(C)
  for flag in (True, False):
    got = update(state, p, y, where=y != 0, correct_only=jnp.bool_(flag))
    want = state.update(p, y, where=y != 0, correct_only=flag)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-6)
  g = jax.grad(lambda p: state.update(p, y, correct_only=False)
               .sums.sum())(p)
  np.testing.assert_array_equal(g, 0)
  jax.jit(lambda s: (s.distributions(), s.kernel(), s.reset()))(state)


def test_low_precision_probs_accumulate_in_float32():
  z, y = next(_stream(4))[0]
  p = jax.nn.softmax(jnp.asarray(z, jnp.bfloat16))
  state = st.OnlineKernel.init(C).update(p, y, correct_only=False)
  assert state.sums.dtype == jnp.float32
  np.testing.assert_allclose(
      state.sums, st.OnlineKernel.init(C).update(
          p.astype(jnp.float32), y, correct_only=False).sums, rtol=1e-6)


def test_nan_reaches_the_state_under_jit():
  p = np.full((2, 3), 1 / 3, np.float32)
  p[1] = [np.nan, 0.5, 0.5]
  state = jax.jit(st.OnlineKernel.update)(st.OnlineKernel.init(3), p,
                                          np.array([0, 2]))
  # Row 1's argmax is not its label, yet its NaN is counted for class 2.
  assert np.isnan(np.asarray(state.sums)[2]).any()
  assert np.isnan(np.asarray(state.kernel())).any()


@pytest.mark.parametrize("call,error,match", [
    (lambda s: s.update(np.array([[2.0, -1.0, 0.5]]), [0]), ValueError,
     r"probs must hold probabilities in \[0, 1\] .* not the logits.* row 0"),
    (lambda s: s.update(np.array([[np.nan, 0.5, 0.5]]), [0]), ValueError,
     "probs must hold probabilities"),
    (lambda s: s.update(np.full((1, 4), 0.25), [0]), ValueError,
     r"probs must have shape \(N, 3\)"),
    (lambda s: s.update(np.full((2, 3), 1 / 3), [0]), ValueError,
     r"labels must have shape \(2,\)"),
    (lambda s: s.update(np.full((1, 3), 1 / 3), [3]), ValueError,
     r"labels must lie in \[0, 3\)"),
    (lambda s: s.update(np.full((1, 3), 1 / 3), [0], where=[1]), TypeError,
     "where must be a boolean mask"),
    (lambda s: s.update(np.full((1, 3), 1 / 3), [0], where=[True, False]),
     ValueError, r"where must have shape \(1,\)"),
    (lambda s: s.update(np.full((1, 3), 1 / 3), [0], correct_only=1),
     TypeError, "correct_only must be a bool"),
    (lambda s: s.update(np.ones((1, 3), int), [0]), TypeError,
     "probs must have a floating dtype"),
    (lambda s: s.merge(3), TypeError, "other must be an OnlineKernel"),
    (lambda s: s.merge(st.OnlineKernel.init(4)), ValueError,
     "cannot merge a state of 4 classes into one of 3"),
    (lambda s: st.OnlineKernel.init(0), ValueError, "num_classes must be >= 1"),
    (lambda s: st.OnlineKernel.init(3, jnp.int32), TypeError,
     "dtype must be a floating dtype"),
])
def test_errors(call, error, match):
  with pytest.raises(error, match=match):
    call(st.OnlineKernel.init(3))


def test_shape_errors_fire_under_jit():
  update = jax.jit(functools.partial(st.OnlineKernel.update))
  with pytest.raises(ValueError, match=r"probs must have shape \(N, 3\)"):
    update(st.OnlineKernel.init(3), jnp.ones((2, 4)) / 4, jnp.zeros(2, int))

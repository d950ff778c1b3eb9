"""CORAL's loss, grade distribution and prediction against float64 loops
over the K - 1 binary tasks and hand cases; the NNX head."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

import spectral_targets as st
from spectral_targets.nnx import CoralHead


def sigmoid64(g):
  g = np.asarray(g, np.float64)
  return np.where(g >= 0, 1 / (1 + np.exp(-np.abs(g))),
                  np.exp(-np.abs(g)) / (1 + np.exp(-np.abs(g))))


def reference_loss(g, y, lam=None):
  """-sum_k lam_k [t_k log s_k + (1 - t_k) log(1 - s_k)], a loop over k."""
  g = np.asarray(g, np.float64)
  lam = np.ones(g.shape[-1]) if lam is None else np.asarray(lam, np.float64)
  out = np.zeros(g.shape[0])
  for i in range(g.shape[0]):
    for k in range(g.shape[1]):
      s = sigmoid64(g[i, k])
      t = float(y[i] > k)
      out[i] -= lam[k] * (t * np.log(s) + (1 - t) * np.log1p(-s))
  return out


def reference_probabilities(g):
  """P(y = k) = P(y > k - 1) - P(y > k), from the float64 sigmoids."""
  s = sigmoid64(g)
  above = np.concatenate([np.ones((len(g), 1)), s, np.zeros((len(g), 1))], 1)
  return above[:, :-1] - above[:, 1:]


@pytest.mark.parametrize("jitted", [False, True])
def test_loss_matches_the_loop(jitted):
  rng = np.random.default_rng(0)
  g = rng.normal(size=(50, 6)) * 3
  y = rng.integers(0, 7, size=50)
  lam = rng.uniform(0.5, 2, size=6)
  fn = jax.jit(st.coral_loss) if jitted else st.coral_loss
  np.testing.assert_allclose(fn(g.astype(np.float32), y),
                             reference_loss(g, y), rtol=1e-5)
  np.testing.assert_allclose(
      fn(g.astype(np.float32), y, importance_weights=lam),
      reference_loss(g, y, lam), rtol=1e-5)


def test_loss_hand_case_and_extremes():
  # K = 4, y = 1: t = (1, 0, 0): softplus(-2) + softplus(0) + softplus(-2).
  got = st.coral_loss(np.array([[2.0, 0.0, -2.0]]), np.array([1]))
  assert float(got[0]) == pytest.approx(2 * np.log1p(np.exp(-2)) + np.log(2),
                                        rel=1e-6)
  # Confident logits: exact in log space, no overflow.
  big = np.array([[100.0, -100.0]], np.float32)
  assert float(st.coral_loss(big, np.array([1]))[0]) == pytest.approx(
      0, abs=1e-30)
  assert float(st.coral_loss(big, np.array([2]))[0]) == pytest.approx(100)
  assert np.isnan(st.coral_loss(np.array([[np.nan, 0.0]]), np.array([0]))[0])
  assert st.coral_loss(jnp.asarray(big, jnp.bfloat16),
                       np.array([0])).dtype == jnp.float32


def test_loss_gradient():
  rng = np.random.default_rng(1)
  g, y = rng.normal(size=(5, 4)), rng.integers(0, 5, size=5)
  with jax.enable_x64():
    check_grads(lambda g: st.coral_loss(g, y), (jnp.asarray(g),), order=2)
    # d L / d g_k = sigma(g_k) - t_k.
    grad = jax.grad(lambda g: st.coral_loss(g, y).sum())(jnp.asarray(g))
    t = y[:, None] > np.arange(4)
    np.testing.assert_allclose(grad, sigmoid64(g) - t, rtol=1e-10)


def test_where_equals_slicing_and_masked_rows():
  rng = np.random.default_rng(2)
  g, y = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 6, 8)
  tasks = np.array([True, False, True, True, False])
  # Excluding tasks = a zero importance weight on them.
  np.testing.assert_allclose(st.coral_loss(g, y, where=tasks),
                             reference_loss(g, y, tasks.astype(float)),
                             rtol=1e-5)
  rows = np.arange(8) % 2 == 0
  out = st.coral_loss(g, y, where=rows)
  np.testing.assert_allclose(out[rows], reference_loss(g[rows], y[rows]),
                             rtol=1e-5)
  assert (np.asarray(out)[~rows] == 0).all()
  grad = jax.grad(lambda g: st.coral_loss(g, y, where=rows).sum())(g)
  assert np.isfinite(grad).all() and (np.asarray(grad)[~rows] == 0).all()


def test_axis_equals_moveaxis():
  rng = np.random.default_rng(3)
  g, y = rng.normal(size=(3, 4, 6)).astype(np.float32), rng.integers(
      0, 5, size=(3, 6))
  moved = np.moveaxis(g, 1, -1)
  np.testing.assert_allclose(st.coral_loss(g, y, axis=1),
                             st.coral_loss(moved, y), rtol=1e-6)
  np.testing.assert_allclose(st.coral_probabilities(g, axis=1),
                             np.moveaxis(st.coral_probabilities(moved), -1, 1),
                             rtol=1e-6)
  np.testing.assert_array_equal(st.coral_predictions(g, axis=1),
                                st.coral_predictions(moved))


def test_probabilities_match_the_differences():
  rng = np.random.default_rng(4)
  g = -np.sort(rng.normal(size=(100, 6)) * 4, axis=1)  # non-increasing
  p = np.asarray(jax.jit(st.coral_probabilities)(g.astype(np.float32)))
  np.testing.assert_allclose(p, reference_probabilities(g), atol=1e-6)
  np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
  assert (p >= 0).all()
  # Both sigmoids near 1: the difference keeps its relative precision.
  far = np.array([[30.0, 29.0]], np.float32)
  want = sigmoid64(-29.0) - sigmoid64(-30.0)
  assert float(st.coral_probabilities(far)[0, 1]) == pytest.approx(want,
                                                                  rel=1e-5)
  # Unordered logits are not rank-consistent: a negative entry says so.
  assert float(st.coral_probabilities(np.array([[-1.0, 1.0]]))[0, 1]) < 0
  # However far out of order: the differences, finite, with finite
  # gradients (the product form would be 0 * inf there).
  wild = np.array([[-200.0, 200.0, 0.0, 150.0, -150.0, 5.0]], np.float32)
  p = np.asarray(st.coral_probabilities(wild))
  np.testing.assert_allclose(p, reference_probabilities(wild), atol=1e-6)
  grad = jax.grad(lambda g: jnp.sum(st.coral_probabilities(g) ** 2))(wild)
  assert np.isfinite(np.asarray(grad)).all()


def test_predictions_count_and_equal_the_median():
  rng = np.random.default_rng(5)
  g = -np.sort(rng.normal(size=(300, 6)) * 3, axis=1).astype(np.float32)
  pred = np.asarray(st.coral_predictions(g))
  np.testing.assert_array_equal(pred, (g > 0).sum(1))
  median = st.posterior_median(st.coral_probabilities(g))
  clear = np.abs(g).min(1) > 1e-4
  np.testing.assert_array_equal(pred[clear], np.asarray(median)[clear])
  # A zero logit is a tie, counted "not above"; NaN has no grade.
  assert st.coral_predictions(np.array([[1.0, 0.0, -1.0], [np.nan, 0, 0]])
                              ).tolist() == [1, -1]


def test_errors_name_the_argument():
  g = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
    st.coral_loss(g, np.array([0, 4]))
  with pytest.raises(ValueError, match="labels must have the batch shape"):
    st.coral_loss(g, np.array([0, 1, 2]))
  with pytest.raises(ValueError, match=r"importance_weights must have shape"):
    st.coral_loss(g, np.array([0, 1]), importance_weights=np.ones(4))
  with pytest.raises(ValueError, match="importance_weights must be finite"):
    st.coral_loss(g, np.array([0, 1]), importance_weights=-np.ones(3))
  with pytest.raises(ValueError, match="K - 1 >= 1"):
    st.coral_probabilities(np.zeros((2, 0)))
  with pytest.raises(TypeError, match="labels must have an integer"):
    st.coral_loss(g, np.array([0.0, 1.0]))


def test_nnx_head_is_rank_consistent_and_trains():
  head = CoralHead(4, 6, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(head.bias[...], np.arange(5, 0, -1) / 5)
  rng = np.random.default_rng(6)
  z = rng.normal(size=(64, 4)).astype(np.float32)
  # Grades from a hidden score: learnable by one shared direction.
  y = np.digitize(z @ np.array([1.0, -1.0, 0.5, 0.0]), [-1.5, -0.5, 0, 0.5,
                                                       1.5]).astype(np.int32)
  opt = nnx.Optimizer(head, optax.adam(5e-2), wrt=nnx.Param)

  @nnx.jit
  def step(head, opt):
    loss, grads = nnx.value_and_grad(
        lambda m: st.coral_loss(m(z), y).mean())(head)
    opt.update(head, grads)
    return loss

  first = float(step(head, opt))
  for _ in range(200):
    last = float(step(head, opt))
  assert last < 0.5 * first
  logits = np.asarray(head(z))
  # One shared weight: every row is the same bias pattern shifted.
  np.testing.assert_allclose(logits - logits[:, :1],
                             np.broadcast_to(head.bias[...] - head.bias[0],
                                             logits.shape), atol=1e-5)
  assert (np.diff(np.asarray(head.bias[...])) <= 0).all()
  assert (np.asarray(st.coral_predictions(logits)) == y).mean() > 0.8
  with pytest.raises(ValueError,
                     match=r"features must have shape \(\.\.\., 4\)"):
    head(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="num_classes must be >= 2"):
    CoralHead(4, 1, rngs=nnx.Rngs(0))

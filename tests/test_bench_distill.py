"""The distill task's settings where distillation is known to work:
function matching (mixup inputs, consistent teaching) and a transfer set
(a pool the teacher labels). Both blocks end to end are checked on the
quick run's outputs (tests/test_bench.py: one run of the pipeline for every
task)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("mnist1d")

from spectral_targets.bench import (  # noqa: E402
  _config,
  _distill,
  _execute,
  _tasks,
  _training,
)


def _cfg(C, F, **kw):
  return _config.method_config(C, F, lr=1e-2, total_steps=10, **kw)


def test_mixup_targets_by_hand():
  """Mixed one-hot targets λ e_y + (1 − λ) e_y'; λ = 1 is one-hot."""
  y = np.array([0, 2, 1], np.int32)
  y2 = np.array([1, 2, 0], np.int32)
  lam = np.array([0.25, 0.6, 1.0], np.float32)
  online = np.eye(3, dtype=np.float32)
  q = np.asarray(_training.targets(_cfg(3, 2, mixup=1.0), y, online, y2,
                                   lam))
  expected = np.array([[0.25, 0.75, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  np.testing.assert_allclose(q, expected, atol=1e-7)
  np.testing.assert_array_equal(
      np.asarray(_training.targets(_cfg(3, 2), y, online)), np.eye(3)[y])


def test_mixup_draws_are_fixed_per_seed_and_uniform_beta():
  p0, l0 = _distill.mixup_draws(0, 3, 50)
  p0b, l0b = _distill.mixup_draws(0, 3, 50)
  p1, _ = _distill.mixup_draws(1, 3, 50)
  np.testing.assert_array_equal(p0, p0b)
  np.testing.assert_array_equal(l0, l0b)
  assert not np.array_equal(p0, p1) and not np.array_equal(p0[0], p0[1])
  assert p0.min() >= 0 and p0.max() < 50 and ((l0 > 0) & (l0 < 1)).all()
  with pytest.raises(ValueError, match="alpha"):
    _distill.mixup_draws(0, 3, 50, alpha=0.0)


class _LinearTeacher:
  """A stand-in teacher executor: logits x @ W, features x @ V."""

  def __init__(self, W, V):
    self.W, self.V = W, V

  def outputs_on(self, params, cfgs, runs, x):
    x = np.asarray(x, np.float64)
    return (x @ self.V).astype(np.float32), (x @ self.W).astype(np.float32)


def test_consistent_teaching_the_teacher_sees_the_input_the_step_trains_on():
  """The step's teacher target on a mixed batch is the teacher's output on
  exactly that batch's mixed input (by hand: λ x_i + (1 − λ) x_j); a model
  without mixup gets the clean batch and the clean teacher outputs."""
  rng = np.random.default_rng(0)
  S, n, D, C, F, E = 2, 6, 5, 3, 2, 3
  x = rng.normal(size=(S, n, D)).astype(np.float32)
  y = rng.integers(0, C, size=(S, n)).astype(np.int32)
  W, V = rng.normal(size=(D, C)), rng.normal(size=(D, F))
  draws = [_distill.mixup_draws(s, E, n) for s in range(S)]
  partner = np.stack([d[0] for d in draws], axis=1)
  lam = np.stack([d[1] for d in draws], axis=1)
  data = dataclasses.replace(_execute.SeedData(
      x, y, x[:, :1], y[:, :1], x[:, :1], y[:, :1], seeds=[0, 1],
      distances=np.zeros((S, C, C), np.float32)))
  logits, feats = _distill.mixed_teacher_outputs(
      _LinearTeacher(W, V), [(None, None, None, "logits"),
                             (None, None, None, "features")], data,
      partner, lam)
  assert logits.shape == (E, S, n, C) and feats.shape == (E, S, n, F)
  clean_logits = (x @ W).astype(np.float32)
  clean_feats = (x @ V).astype(np.float32)
  step_batch = jax.jit(_training.batch,
                       static_argnames=("distilled", "mixed"))
  idx = np.array([4, 0, 5, 2], np.int32)
  for e in range(E):
    for s in range(S):
      mix = (partner[e], lam[e], logits[e], feats[e])
      xb, yb, (t_logits, t_feats), y2, lb = step_batch(
          _cfg(C, F, mixup=1.0), s, idx, x, y, clean_logits, clean_feats,
          mix, distilled=True, mixed=True)
      j, l = partner[e, s, idx], lam[e, s, idx]
      by_hand = (l[:, None].astype(np.float64) * x[s, idx]
                 + (1 - l[:, None]) * x[s, j])
      np.testing.assert_allclose(np.asarray(xb), by_hand, rtol=1e-6,
                                 atol=1e-6)
      # Consistent: the target is the teacher on the step's own input.
      np.testing.assert_allclose(
          np.asarray(t_logits), np.asarray(xb, np.float64) @ W,
          rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(
          np.asarray(t_feats), np.asarray(xb, np.float64) @ V,
          rtol=1e-5, atol=1e-5)
      np.testing.assert_array_equal(np.asarray(y2), y[s, j])
      np.testing.assert_array_equal(np.asarray(lb), l)
      # A clean model in the same program: clean batch, clean teacher.
      xc, _, (c_logits, _), _, lc = step_batch(
          _cfg(C, F), s, idx, x, y, clean_logits, clean_feats, mix,
          distilled=True, mixed=True)
      np.testing.assert_array_equal(np.asarray(xc), x[s, idx])
      np.testing.assert_array_equal(np.asarray(c_logits),
                                    clean_logits[s, idx])
      assert (np.asarray(lc) == 1).all()
  # The mixed input the teacher saw is the step's, to float32 rounding:
  # the same function in two compiled programs (XLA may contract
  # λx + (1 − λ)x' into a fused multiply-add in one and not the other; a
  # 1-ulp difference was seen in CI).
  mixed = np.asarray(_distill._mixed(x, partner[0], lam[0]))
  xb = step_batch(_cfg(C, F, mixup=1.0), 1, idx, x, y, clean_logits,
                  clean_feats, (partner[0], lam[0], logits[0], feats[0]),
                  distilled=True, mixed=True)[0]
  np.testing.assert_allclose(np.asarray(xb), mixed[1, idx], rtol=1e-6,
                             atol=1e-7)


def test_the_pool_is_disjoint_from_every_split_and_differs_per_seed():
  pool0 = _tasks.mnist1d_pool(0, 300)
  pool1 = _tasks.mnist1d_pool(1, 300)
  assert pool0.shape == (300, 40) and pool0.dtype == np.float32
  assert not np.allclose(pool0, pool1)
  split = _tasks.mnist1d_split(0)
  for x in (split.x_train, split.x_val, split.x_test):
    gaps = np.abs(pool0[:, None, :] - x[None, :, :]).max(-1)
    assert gaps.min() > 1e-3
  # Standardised with the labelled training statistics: about N(0, 1).
  assert abs(float(pool0.mean())) < 0.2 and 0.7 < float(pool0.std()) < 1.3
  with pytest.raises(ValueError, match="size"):
    _tasks.mnist1d_pool(0, 0)


def test_transfer_data_labels_the_pool_by_the_teachers_argmax():
  rng = np.random.default_rng(1)
  S, n, m, C, F = 2, 4, 6, 3, 2
  data = _execute.SeedData(
      rng.normal(size=(S, n, 5)).astype(np.float32),
      rng.integers(0, C, (S, n)).astype(np.int32),
      np.zeros((S, 1, 5), np.float32), np.zeros((S, 1), np.int32),
      np.zeros((S, 1, 5), np.float32), np.zeros((S, 1), np.int32),
      seeds=[0, 1], distances=np.zeros((S, C, C), np.float32),
      teacher_logits=rng.normal(size=(S, n, C)).astype(np.float32),
      teacher_features=rng.normal(size=(S, n, F)).astype(np.float32))
  pool = rng.normal(size=(S, m, 5)).astype(np.float32)
  logits = rng.normal(size=(S, m, C)).astype(np.float32)
  feats = rng.normal(size=(S, m, F)).astype(np.float32)
  out = _distill.transfer_data(data, pool, logits, feats)
  np.testing.assert_array_equal(out.y_train[:, :n], data.y_train)
  for s in range(S):
    for i in range(m):
      assert out.y_train[s, n + i] == int(np.argmax(logits[s, i]))
  np.testing.assert_array_equal(out.x_train[:, n:], pool)
  np.testing.assert_array_equal(out.teacher_logits[:, n:], logits)
  np.testing.assert_array_equal(out.teacher_features[:, :n],
                                data.teacher_features)
  assert out.y_train.dtype == np.int32
  with pytest.raises(ValueError, match="differ"):
    _distill.transfer_data(data, pool, logits[:, :2], feats)

"""The ordinal baselines of the benchmark: CORAL and regression on the grade
index as heads of the one vmapped program, their scores, and how the report
shows the metrics that do not apply to a head without probabilities. The
ordinal task end to end is checked on the quick run's outputs
(tests/test_bench.py: one run of the pipeline for every task)."""

import math

import numpy as np
import pytest

from spectral_targets import bench

pytestmark = pytest.mark.skipif(bool(bench.missing_requirements()),
                                reason="bench extra not installed")

#: Features of the ordinal task's executor (C − 1, as ``executor_for``).
F = 6


def _ordinal_setup():
  from spectral_targets.bench import _run, _tasks
  task = _tasks.ordinal_task()
  return task, _run._draw(task, [0], True)


def _one_model(task, data, method, hp, *, seed=0):
  """(body, one model's params, its cfg) of ``method`` on ``task``."""
  import jax

  from spectral_targets.bench import _bodies, _methods, _training
  body = _bodies.make_body(task.body, F)
  ctx = _methods.Context(task.num_classes, F, epochs=2, total_steps=8,
                         kernel=task.kernel, codebooks={})
  cfg = _methods.METHODS[method].config(ctx, hp)
  params = _training.init_params(body, task.num_classes, F, [seed],
                                 data.x_train.shape[2:])
  return body, jax.tree_util.tree_map(lambda a: a[0], params), cfg


def _hand_features(body, params, x):
  return np.asarray(body.apply(params["body"], x), np.float64)


def test_coral_head_is_coral_loss_on_shared_weights_and_ordered_biases():
  """The program's CORAL head: its loss is ``coral_loss`` of g = z·w + b
  computed by hand (and CORAL's binary cross-entropies in NumPy), its
  gradient only reaches the body and CORAL's own parameters, its class
  logits are log ``coral_probabilities``, and the posterior median of
  their softmax is ``coral_predictions`` (biases ordered)."""
  import jax
  import jax.numpy as jnp

  import spectral_targets as st
  from spectral_targets.bench import _training
  task, data = _ordinal_setup()
  C = task.num_classes
  body, params, cfg = _one_model(task, data, "coral", {"lr": 1e-2})
  # coral-pytorch's starting biases: 1, (K − 2)/(K − 1), ..., 1/(K − 1).
  np.testing.assert_allclose(params["coral_b"],
                             np.arange(C - 1, 0, -1) / (C - 1), rtol=1e-6)
  # Spread the logits over every grade: ordered biases across the scores.
  rng = np.random.default_rng(1)
  params = dict(params, ordinal_w=params["ordinal_w"] * 3,
                coral_b=np.sort(rng.normal(0, 3, C - 1))[::-1].astype(
                    np.float32))
  x, y = data.x_train[0][:64], data.y_train[0][:64]
  online = np.eye(C, dtype=np.float32)
  z = _hand_features(body, params, x)
  g = z @ np.asarray(params["ordinal_w"], np.float64)[:, None] \
      + np.asarray(params["coral_b"], np.float64)
  t = y[:, None] > np.arange(C - 1)
  log_sig = -np.logaddexp(0, -g)
  log_one_minus = -np.logaddexp(0, g)
  by_hand = -(t * log_sig + (1 - t) * log_one_minus).sum(1)

  loss, _ = _training.loss_terms(body, params, cfg, x, y, online, None, 0)
  np.testing.assert_allclose(loss, by_hand, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(loss, st.coral_loss(g, y), rtol=1e-4,
                             atol=1e-5)

  def program_loss(p):
    return _training.loss_terms(body, p, cfg, x, y, online, None, 0)[0].mean()

  def hand_loss(p):
    zz = body.apply(p["body"], x)
    return st.coral_loss((zz @ p["ordinal_w"])[:, None] + p["coral_b"],
                         y).mean()

  grads = jax.grad(program_loss)(params)
  hand = jax.grad(hand_loss)(params)
  for name in ("body", "ordinal_w", "coral_b"):
    for a, b in zip(jax.tree_util.tree_leaves(grads[name]),
                    jax.tree_util.tree_leaves(hand[name])):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
  for name in ("dense_w", "dense_b", "class_vectors", "reg_b"):
    assert not np.asarray(grads[name]).any(), name

  _, logits, seen = _training.forward(body, params, cfg, x)
  np.testing.assert_allclose(seen, z, rtol=1e-5, atol=1e-6)  # raw features
  probs = np.asarray(jax.nn.softmax(logits), np.float64)
  np.testing.assert_allclose(probs, st.coral_probabilities(g), atol=1e-5)
  median = np.asarray(st.posterior_median(jnp.asarray(probs)))
  counted = (g > 0).sum(1)
  assert len(set(counted)) >= 3  # the check spans several grades
  np.testing.assert_array_equal(median, counted)
  np.testing.assert_array_equal(median, st.coral_predictions(g))


def test_coral_logits_stay_finite_when_a_grade_has_no_mass():
  """Biases out of order give a negative 'probability'; saturated logits an
  underflowing one: the class logits are floored, never -inf or NaN, so
  the zero-weighted heads of other models cannot make NaN either."""
  import jax

  from spectral_targets.bench import _training
  task, data = _ordinal_setup()
  body, params, cfg = _one_model(task, data, "coral", {"lr": 1e-2})
  C = task.num_classes
  x, y = data.x_train[0][:32], data.y_train[0][:32]
  wild = dict(params, coral_b=np.array([-200, 200, 0, 150, -150, 5][:C - 1],
                                       np.float32))
  _, logits, _ = _training.forward(body, wild, cfg, x)
  assert np.isfinite(np.asarray(logits)).all()
  one_hot_cfg = _one_model(task, data, "one-hot", {"lr": 1e-2})[2]
  online = np.eye(C, dtype=np.float32)
  grads = jax.grad(lambda p: _training.loss_terms(
      body, p, one_hot_cfg, x, y, online, None, 0)[0].mean())(wild)
  assert all(np.isfinite(np.asarray(g)).all()
             for g in jax.tree_util.tree_leaves(grads))


def test_regression_head_predicts_the_nearest_grade_clipped():
  """The program's regression head: squared error (r − y)² of the scalar
  r = z·w + b computed by hand; its argmax is r rounded to the nearest
  grade and clipped to [0, C − 1]."""
  import jax

  from spectral_targets.bench import _training
  task, data = _ordinal_setup()
  C = task.num_classes
  body, params, cfg = _one_model(task, data, "regression", {"lr": 1e-2})
  assert float(params["reg_b"]) == 0.0
  # Scores reaching below 0 and above C − 1, so that clipping is exercised.
  params = dict(params, ordinal_w=params["ordinal_w"] * 8,
                reg_b=np.float32((C - 1) / 2))
  x, y = data.x_train[0][:128], data.y_train[0][:128]
  z = _hand_features(body, params, x)
  r = z @ np.asarray(params["ordinal_w"], np.float64) + float(
      params["reg_b"])
  assert r.min() < -0.5 and r.max() > C - 0.5
  online = np.eye(C, dtype=np.float32)
  loss, _ = _training.loss_terms(body, params, cfg, x, y, online, None, 0)
  np.testing.assert_allclose(loss, (r - y) ** 2, rtol=1e-4, atol=1e-4)
  _, logits, seen = _training.forward(body, params, cfg, x)
  np.testing.assert_allclose(seen, z, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(logits).argmax(1),
                                np.clip(np.rint(r), 0, C - 1))
  grads = jax.grad(lambda p: _training.loss_terms(
      body, p, cfg, x, y, online, None, 0)[0].mean())(params)
  for name in ("dense_w", "dense_b", "class_vectors", "coral_b"):
    assert not np.asarray(grads[name]).any(), name
  assert np.asarray(grads["reg_b"]) == pytest.approx(
      np.mean(2 * (r - y)), rel=1e-3)


def test_scores_of_the_ordinal_heads():
  """Trained in one program with one-hot and scored: regression's
  probabilistic metrics are NaN and the rest finite, its MAE that of the
  rounded, clipped scalar; CORAL's are all finite, its biases ordered
  after training, and its posterior median's MAE is the MAE of CORAL's own
  rule ``coral_predictions``; NC1 is that of the raw training features."""
  import spectral_targets as st
  from spectral_targets.bench import _config, _methods, _pipeline
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task, data = _ordinal_setup()
  C = task.num_classes
  budget = _pipeline.Budget(seeds=1, epochs=2, batch_size=32)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=F, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    runs = [r for name, lr in (("one-hot", 3e-2), ("coral", 1e-2),
                               ("regression", 1e-2))
            for r in runner.runs(_methods.METHODS[name], [{"lr": lr}], [0],
                                 2)]
    params, cfgs = ex.train(runs, 2)
    scores = ex.score(params, cfgs, runs)
    train_features = ex.features(params, cfgs, runs, split="train")
    test_features = ex.features(params, cfgs, runs, split="test")
  one_hot, coral, regression = scores
  y_test, y_train = data.y_test[0], data.y_train[0]
  probabilistic = [k for k in one_hot if _config.needs_probabilities(k)]
  assert {"nll", "val_nll", "ece", "ece_calibrated", "temperature",
          "median_mae", "crm_accuracy", "crm_severity"} <= set(probabilistic)
  for k, v in regression.items():
    if k in probabilistic:
      assert math.isnan(v), k
    else:
      assert math.isfinite(v), k
  for score in (one_hot, coral):
    assert all(math.isfinite(v) for v in score.values())

  def head(i, name):
    return np.asarray(params[name][i], np.float64)

  z = test_features[2].astype(np.float64)
  r = z @ head(2, "ordinal_w") + float(head(2, "reg_b"))
  pred = np.clip(np.rint(r), 0, C - 1)
  assert regression["mae"] == pytest.approx(np.abs(pred - y_test).mean(),
                                            rel=1e-5)
  assert regression["accuracy"] == pytest.approx(np.mean(pred == y_test))

  b = head(1, "coral_b")
  assert (np.diff(b) <= 0).all(), b  # still rank-consistent
  g = test_features[1].astype(np.float64) @ head(1, "ordinal_w")[:, None] + b
  own = np.asarray(st.coral_predictions(g))
  assert coral["median_mae"] == pytest.approx(np.abs(own - y_test).mean(),
                                              rel=1e-5)
  for i, score in ((1, coral), (2, regression)):
    expected = st.collapse_metrics(train_features[i], y_train, C).nc1
    assert score["nc1"] == pytest.approx(float(expected), rel=1e-3)


def _selection(hp):
  from spectral_targets.bench import _tuning
  return _tuning.Selection(chosen=hp, trials=[dict(
      hp=hp, val_accuracy=[0.5], val_nll=[1.0], mean_val_accuracy=0.5,
      mean_val_nll=1.0)], at_edge=[])


def test_report_shows_probabilistic_metrics_of_regression_as_not_applicable():
  """No paired difference is formed on a metric regression has no value
  of (and none from a NaN); the markdown reads n/a there, numbers
  elsewhere."""
  from spectral_targets.bench import _methods, _pipeline, _report
  methods = [_methods.METHODS[n] for n in ("one-hot", "coral", "regression")]
  rng = np.random.default_rng(0)
  metrics = ("accuracy", "severity", "mae", "qwk", "median_mae", "nll",
             "ece", "ece_calibrated", "temperature", "crm_accuracy",
             "crm_severity", "nc1", "between_condition")
  per_method = {}
  for m in methods:
    rows = []
    for _ in range(3):
      row = {k: float(rng.uniform(0.1, 0.9)) for k in metrics}
      if not m.probabilistic:
        for k in ("median_mae", "nll", "ece", "ece_calibrated",
                  "temperature", "crm_accuracy", "crm_severity"):
          row[k] = float("nan")
      rows.append(row)
    per_method[m.name] = rows
  runner = _pipeline.TaskRunner.__new__(_pipeline.TaskRunner)
  selections = {m.name: _selection({"lr": 0.01}) for m in methods}
  out = runner.report(methods, selections, per_method, 2)
  reg = out["regression"]
  assert reg["probabilistic"] is False and out["coral"]["probabilistic"]
  assert set(reg["vs one-hot"]) == {"accuracy", "severity", "mae", "qwk"}
  assert set(reg["vs one-hot + CRM"]) == {"accuracy", "severity"}
  assert all(d["low"] is not None for d in reg["vs one-hot"].values())
  assert {"nll", "median_mae", "crm_accuracy"} <= set(
      out["coral"]["vs one-hot"])
  assert reg["summary"]["nll"]["mean"] is None
  report = dict(methods=out, ks=[])
  table = _report.methods_table(report)
  header = [c.strip() for c in table[0].split("|")]
  row = dict(zip(header, (c.strip() for c in next(
      line for line in table if line.startswith("| regression |")
  ).split("|"))))
  for column in ("NLL ↓", "ECE ↓", "ECE, T-scaled ↓",
                 "MAE, posterior median ↓"):
    assert row[column] == "n/a", column
  for column in ("accuracy ↑", "MAE ↓", "QWK ↑", "NC1 (train) ↓"):
    assert row[column][0].isdigit(), column
  coral_row = next(line for line in table if line.startswith("| coral |"))
  assert "n/a" not in coral_row
  paired = next(line for line in _report.paired_table(report)
                if line.startswith("| regression |"))
  cells = [c.strip() for c in paired.split("|")[2:-1]]
  assert cells[0][0] in "+-" and cells[2] == "n/a"
  crm = next(line for line in _report.crm_table(report)
             if line.startswith("| regression |"))
  cells = [c.strip() for c in crm.split("|")[2:-1]]
  assert cells[:2] == ["n/a", "n/a"] and cells[2][0] in "+-"
  assert cells[-2:] == ["n/a", "n/a"]
  assert "n/a: the metric reads predicted probabilities" in _report.LEGEND


@pytest.mark.parametrize("method", ["coral", "regression"])
def test_timed_step_is_the_programs_step(method):
  """``_timing`` writes CORAL and regression as a user would (a weight
  vector and biases on the features, ``coral_loss`` / squared error); one
  SGD step of it moves the parameters it keeps exactly as the gradient of
  the vmapped program's loss does; and the timing runs for them."""
  import jax
  import jax.numpy as jnp
  import optax

  from spectral_targets.bench import (
    _bodies,
    _methods,
    _pipeline,
    _timing,
    _training,
    _tuning,
  )
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task, data = _ordinal_setup()
  C = task.num_classes
  body, params, cfg = _one_model(task, data, method, {"lr": 1e-2})
  x, y = data.x_train[0][:32], data.y_train[0][:32]
  online = np.eye(C, dtype=np.float32)
  grads = jax.grad(lambda p: _training.loss_terms(
      body, p, cfg, x, y, online, None, 0)[0].mean())(params)
  m = _methods.METHODS[method]
  single = _bodies.make_body(task.body, F, single=True)
  step = _timing._step(single, C, F, m.head, m.timed_as[0], None,
                       optax.sgd(1.0))
  keep = {"body", "ordinal_w",
          "coral_b" if method == "coral" else "reg_b"}
  p = jax.tree_util.tree_map(
      jnp.asarray, {k: v for k, v in params.items() if k in keep})
  new, _, _ = step(p, optax.sgd(1.0).init(p), jnp.zeros((C, C)),
                   {"x": jnp.asarray(x), "y": jnp.asarray(y),
                    "knob": jnp.float32(0)})
  for name in keep:
    for a, b, g in zip(jax.tree_util.tree_leaves(new[name]),
                       jax.tree_util.tree_leaves(p[name]),
                       jax.tree_util.tree_leaves(grads[name])):
      np.testing.assert_allclose(np.asarray(b) - np.asarray(a), g,
                                 rtol=1e-3, atol=1e-6)
  budget = _pipeline.Budget(seeds=1, epochs=1, batch_size=32)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=F, batch_size=32,
                  programs=programs)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    methods = [_methods.METHODS["one-hot"], m]
    selections = {n.name: _tuning.Selection({"lr": 1e-2}, [], [])
                  for n in methods}
    ratios = _timing.step_time_ratios(task, runner, selections, methods,
                                      x=x, y=y, rounds=1, steps=2)
  assert set(ratios) == {"one-hot", method} and ratios["one-hot"] == 1.0
  assert math.isfinite(ratios[method]) and ratios[method] > 0

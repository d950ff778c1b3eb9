"""Reference points that put a task's numbers in context.

- MNIST-1D: the paper's one-hot baselines (Greydanus 2020: logistic
  regression ≈ 32%, MLP ≈ 68%, CNN ≈ 94%), trained and tuned by the same
  protocol as every method (learning rate on validation, tuning seeds);
  the CNN is the task's own one-hot row.
- Hierarchy tasks: two classifiers with no training loop, a nearest class
  mean and scikit-learn's multinomial logistic regression (regularisation
  chosen on the tuning seeds' validation split). The data are
  linear-Gaussian, so both are strong here.
- Ordinal tasks (diamonds): scikit-learn's gradient-boosted trees and a
  logistic regression on a fixed subsample of each seed's training rows.
"""

from __future__ import annotations

import numpy as np

from spectral_targets.bench import _methods, _stats

PAPER = {"logistic regression": ("linear", 0.32), "MLP": ("mlp-small", 0.68),
         "CNN": ("cnn", 0.94)}
#: The logistic regression and the MLP train longer than the task's budget
#: (they are cheap, and the paper's MLP needs it: ~0.64 after 25 epochs).
PAPER_EPOCHS = 100
#: Inverse regularisation strengths tried for the logistic regression.
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)


def paper_baselines(session, task, runner, main_reports) -> dict:
  """MNIST-1D's one-hot baselines against the paper's (none in a
  ``--quick`` run)."""
  if session.options.quick:
    return {}
  return {"MNIST-1D one-hot baselines against the paper (Greydanus 2020)":
          mnist1d_paper(session, task, runner, main_reports)}


def without_training_loop(session, task, runner, main_reports) -> dict:
  """A nearest class mean and a logistic regression on the task's data."""
  return {"Classifiers without a training loop": closed_form(
      task, runner, session.progress)}


def _row(label, values, paper):
  s = _stats.summary(values)
  text = f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["std"] is not None
                               else "")
  return f"| {label} | {text} | ~{paper:.2f} |"


def mnist1d_paper(session, task, runner, main_reports):
  one_hot = _methods.METHODS["one-hot"]
  block = {"table": ["| model | epochs | accuracy ↑ | paper |",
                     "|---|---|---|---|"],
           "per_seed": {}, "chosen": {}}
  for label, (body, paper) in PAPER.items():
    if body == task.body:  # the CNN row is the task's own one-hot method
      epochs = runner.budget.epochs
      acc = main_reports["one-hot"]["per_seed"]["accuracy"]
      block["chosen"][label] = main_reports["one-hot"]["chosen"]
    else:
      session.progress(f"{task.name}: reference {label}")
      sub = runner.sibling(body=body, methods=[one_hot])
      epochs = runner.budget.epochs if session.options.quick else PAPER_EPOCHS
      selections = sub.tune([one_hot], epochs)
      per_method = sub.evaluate([one_hot], selections, epochs)
      acc = [r["accuracy"] for r in per_method["one-hot"]]
      block["chosen"][label] = selections["one-hot"].chosen
    block["per_seed"][label] = acc
    block["table"].append(_row(f"{label} | {epochs}", acc, paper))
  return block


def closed_form(task, runner, progress) -> dict:
  """Nearest class mean and logistic regression on each evaluation seed."""
  from sklearn.linear_model import LogisticRegression
  progress(f"{task.name}: nearest class mean and logistic regression")
  data = runner.data
  ks = task.ks

  def scores(pred_scores, y, D):
    pred = pred_scores.argmax(-1)
    wrong = pred != y
    out = {"accuracy": float((~wrong).mean()),
           "severity": float(D[y[wrong], pred[wrong]].mean())
           if wrong.any() else 0.0}
    order = np.argsort(-pred_scores, axis=-1)
    for k in ks:
      out[f"hdist@{k}"] = float(D[y[:, None], order[:, :k]].mean())
    return out

  def ncm(i, x):
    X, y = data.x_train[i], data.y_train[i]
    C = task.num_classes
    means = np.stack([X[y == c].mean(0) for c in range(C)])
    # −|x − m|² expanded (no (N, C, D) array: the user's embeddings may
    # be wide and many).
    return (2 * x @ means.T - (means ** 2).sum(-1)[None]
            - (x ** 2).sum(-1)[:, None])

  def logistic(i, strength, x):
    model = LogisticRegression(C=strength, max_iter=300)
    model.fit(data.x_train[i], data.y_train[i])
    return model.decision_function(x)

  # Regularisation chosen on the tuning seeds' validation accuracy.
  tuning = [data.index(s) for s in runner.budget.tuning_seeds]
  val = {c: np.mean([(logistic(i, c, data.x_val[i]).argmax(-1)
                      == data.y_val[i]).mean() for i in tuning])
         for c in LOGISTIC_C}
  strength = max(val, key=val.__getitem__)
  rows: dict[str, list] = {"nearest class mean": [], "logistic regression": []}
  for s in runner.budget.eval_seeds:
    i = data.index(s)
    D = data.distances[i]
    rows["nearest class mean"].append(
        scores(ncm(i, data.x_test[i]), data.y_test[i], D))
    rows["logistic regression"].append(
        scores(logistic(i, strength, data.x_test[i]), data.y_test[i], D))
  metrics = list(rows["nearest class mean"][0])
  table = ["| classifier | " + " | ".join(
      f"{k} {_stats.arrow(k)}" for k in metrics) + " |",
           "|---" * (len(metrics) + 1) + "|"]
  points = {}
  for label, per_seed in rows.items():
    cells = []
    for k in metrics:
      s = _stats.summary([r[k] for r in per_seed])
      cells.append(f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}"
                                         if s["std"] is not None else ""))
    table.append(f"| {label} | " + " | ".join(cells) + " |")
    points[label] = {k: float(np.mean([r[k] for r in per_seed]))
                     for k in ("accuracy", "severity")}
  return {"table": table, "points": points, "per_seed": rows,
          "logistic_C": strength,
          "logistic_C_validation": {str(k): float(v) for k, v in val.items()}}


def ordinal_references(session, task, runner, main_reports) -> dict:
  """scikit-learn's ``HistGradientBoostingClassifier`` (default settings)
  and a multinomial logistic regression (C = 1) on each evaluation seed of
  an ordinal task, scored as the methods are (accuracy, MAE, QWK, the
  posterior median's MAE) and paired against one-hot. They fit the very
  training rows the methods train on (the diamonds tasks' 10,000 a seed:
  ``_diamonds.TRAIN_ROWS``). ``--quick`` runs the logistic regression only
  (the trees are the slow part)."""
  from sklearn.ensemble import HistGradientBoostingClassifier
  from sklearn.linear_model import LogisticRegression
  session.progress(f"{task.name}: gradient-boosted trees and logistic "
                   "regression")
  data, C = runner.data, task.num_classes
  models = {
      "gradient-boosted trees": lambda: HistGradientBoostingClassifier(
          random_state=0),
      "logistic regression": lambda: LogisticRegression(C=1.0,
                                                        max_iter=500)}
  if session.options.quick:
    del models["gradient-boosted trees"]
  rows: dict[str, dict[str, list]] = {k: {} for k in models}
  for s in runner.budget.eval_seeds:
    i = data.index(s)
    x, y = data.x_train[i], data.y_train[i]
    y_test = data.y_test[i]
    for label, make in models.items():
      model = make().fit(x, y)
      p = np.zeros((len(y_test), C))
      p[:, model.classes_] = model.predict_proba(data.x_test[i])
      for k, v in _ordinal_scores(p, y_test).items():
        rows[label].setdefault(k, []).append(v)
  metrics = ("accuracy", "mae", "median_mae", "qwk")
  table = ["| classifier | " + " | ".join(
      f"{k} {_stats.arrow(k)}" for k in metrics)
      + " | Δ accuracy vs one-hot | Δ MAE vs one-hot |",
           "|---" * (len(metrics) + 3) + "|"]
  paired: dict = {}
  one_hot = main_reports["one-hot"]["per_seed"]
  for label, per_seed in rows.items():
    paired[label] = {k: _stats.paired_difference(per_seed[k], one_hot[k])
                     for k in metrics}
    cells = []
    for k in metrics:
      s = _stats.summary(per_seed[k])
      cells.append(f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}"
                                         if s["std"] is not None else ""))
    cells += [_interval(paired[label][k]) for k in ("accuracy", "mae")]
    table.append(f"| {label} | " + " | ".join(cells) + " |")
  n = int(data.y_train.shape[1])
  return {"Classifiers without a neural network (scikit-learn, on the "
          f"methods' {n:,} training rows a seed)": {
              "table": table, "per_seed": rows, "vs one-hot": paired,
              "training_rows": n}}


def _interval(d) -> str:
  if d["mean"] is None:
    return "—"
  if d["low"] is None:
    return f"{d['mean']:+.3f}"
  return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _ordinal_scores(p: np.ndarray, y: np.ndarray) -> dict:
  """Accuracy, MAE and QWK of the argmax of ``p`` (N, C), and the MAE of
  its posterior median, as the scorer computes them."""
  import spectral_targets as st
  pred = p.argmax(1)
  return {"accuracy": float((pred == y).mean()),
          "mae": float(st.mean_absolute_error(pred, y)),
          "median_mae": float(st.mean_absolute_error(
              st.posterior_median(p.astype(np.float32)), y)),
          "qwk": float(st.quadratic_weighted_kappa(pred, y))}

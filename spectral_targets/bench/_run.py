"""Running the benchmark: teachers, kernels, codebooks, scale selection, the
vmapped training of every method and seed, evaluation, step timing."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets._logits import unit_rows
from spectral_targets.bench import _models as m
from spectral_targets.bench._tasks import Task

METHODS = ("one-hot", "smooth-labels", "simplex", "spectral",
           "spectral-small", "kernel-soft-labels", "kd", "sa-kd")
METHOD_NOTES = {
    "one-hot": "Dense head, softmax cross-entropy (the baseline)",
    "smooth-labels": "Dense head, optax.smooth_labels targets (alpha = 0.1)",
    "simplex": "fixed codebook head, flat kernel, d = C - 1 (simplex ETF)",
    "spectral": "fixed codebook head of the task's kernel, d = C - 1",
    "spectral-small": "fixed codebook head of the task's kernel, small d",
    "kernel-soft-labels": "Dense head, kernel_soft_labels targets "
                          "(alpha = 0.1, temperature 0.1)",
    "kd": "Dense-head student, 0.5 CE + 0.5 distillation_loss from a larger "
          "one-hot Dense teacher (temperature 4)",
    "sa-kd": "spectral-codebook student, 0.5 CE + 0.5 "
             "soft_assignment_distillation_loss from a larger codebook-head "
             "teacher trained on one-hot labels",
}
METRICS = ("accuracy", "severity", "hdist@k", "nll", "ece", "nc1",
           "step_time_ratio")
SOFT_LABEL_ALPHA, SOFT_LABEL_TEMPERATURE = 0.1, 0.1
SCALES = (8.0, 16.0, 32.0)
#: Progress messages TaskRun.run sends per task.
PHASES = 6


@dataclasses.dataclass
class Budget:
  seeds: int
  epochs: int
  batch_size: int = 128
  scales: tuple[float, ...] = SCALES
  timing_rounds: int = 5
  timing_steps: int = 20


def _pad(codes, F):
  codes = np.asarray(codes, np.float32)
  out = np.zeros((codes.shape[0], F), np.float32)
  out[:, :codes.shape[1]] = codes
  mask = np.zeros(F, np.float32)
  mask[:codes.shape[1]] = 1
  return out, mask


def _config(C, F, *, codebook=None, mask=None, scale=16.0,
            target_kernel=None, alpha=0.0, w_kd=0.0, w_sa=0.0):
  return m.MethodConfig(
      mask=jnp.ones(F) if mask is None else jnp.asarray(mask),
      codebook=jnp.zeros((C, F)) if codebook is None else jnp.asarray(
          codebook),
      scale=jnp.asarray(scale, jnp.float32),
      is_codebook=jnp.asarray(0.0 if codebook is None else 1.0),
      target_kernel=(jnp.zeros((C, C)) if target_kernel is None
                     else jnp.asarray(target_kernel, jnp.float32)),
      target_temperature=jnp.asarray(SOFT_LABEL_TEMPERATURE),
      alpha=jnp.asarray(alpha, jnp.float32),
      w_ce=jnp.asarray(1.0 - w_kd - w_sa, jnp.float32),
      w_kd=jnp.asarray(w_kd, jnp.float32),
      w_sa=jnp.asarray(w_sa, jnp.float32))


def _stack(items):
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *items)


class TaskRun:
  """Everything the benchmark does for one task."""

  def __init__(self, task: Task, budget: Budget,
               progress: Callable[[str], None] = lambda s: None,
               on_epoch: Callable[[int], None] | None = None):
    self.task, self.budget, self.progress = task, budget, progress
    self.on_epoch = on_epoch
    self.C = task.num_classes
    self.F = self.C - 1
    self.body = m.make_body(task.body, self.F)
    self.teacher_body = m.make_body(task.body, self.F, teacher=True)
    as_j = lambda a: jnp.asarray(a)  # noqa: E731
    self.x, self.y = as_j(task.x_train), as_j(task.y_train)
    self.x_val, self.y_val = as_j(task.x_val), as_j(task.y_val)
    self.x_test, self.y_test = as_j(task.x_test), as_j(task.y_test)
    self.seed_keys = [jax.random.key(1000 + s) for s in range(budget.seeds)]

  # -- training -------------------------------------------------------------

  def _train(self, body, cfgs, seeds, teacher_logits=None,
             teacher_features=None, x=None, y=None):
    x = self.x if x is None else x
    y = self.y if y is None else y
    M, n = len(seeds), x.shape[0]
    shuffle_keys = jnp.stack([self.seed_keys[s] for s in seeds])
    params = m.init_params(body, self.C, self.F, [1000 + s for s in seeds], x)
    tl = (jnp.zeros((M, n, self.C)) if teacher_logits is None
          else teacher_logits)
    tf = (jnp.zeros((M, n, self.F)) if teacher_features is None
          else teacher_features)
    return m.train(body, params, _stack(cfgs), shuffle_keys, x, y, tl, tf,
                   epochs=self.budget.epochs,
                   batch_size=min(self.budget.batch_size, n),
                   on_epoch=self.on_epoch)

  def run(self) -> dict:
    task, C, F, S = self.task, self.C, self.F, self.budget.seeds
    seeds = list(range(S))
    report = dict(description=task.description, num_classes=C,
                  train=int(len(task.y_train)), val=int(len(task.y_val)),
                  test=int(len(task.y_test)), small_d=task.small_d, k=task.k,
                  epochs=self.budget.epochs, seeds=S)

    self.progress(f"{task.name}: one-hot teachers")
    dense = _config(C, F)
    teachers = self._train(self.teacher_body, [dense] * S, seeds)
    t_cfgs = _stack([dense] * S)
    # One prediction program for every split: train, validation, test.
    splits = np.cumsum([len(task.y_train), len(task.y_val)])
    x_all = jnp.concatenate([self.x, self.x_val, self.x_test])
    t_feats_all, t_logits_all = m.predict(self.teacher_body, teachers, t_cfgs,
                                          x_all)
    t_logits, t_val_feats, t_test = (t_logits_all[:, :splits[0]],
                                     t_feats_all[:, splits[0]:splits[1]],
                                     t_logits_all[:, splits[1]:])

    if task.kernel is None:
      # Estimated from the seed-0 teacher's class means on the validation
      # split: nothing is fitted on the test split.
      kernel = np.asarray(st.from_class_means(t_val_feats[0], self.y_val, C),
                          np.float64)
      report["kernel"] = ("estimated: cosine similarity of a one-hot "
                          "teacher's class means on the validation split")
      distances = 1 - kernel
    else:
      kernel, distances = task.kernel, task.distances
      report["kernel"] = "true (the structure the data were built on)"

    centred = st.double_center(kernel)
    simplex, simplex_mask = _pad(st.spectral_codebook(st.flat(C), C - 1), F)
    full, full_mask = _pad(st.spectral_codebook(centred, C - 1), F)
    small, small_mask = _pad(st.spectral_codebook(centred, task.small_d), F)

    self.progress(f"{task.name}: codebook scale on validation")
    if len(self.budget.scales) > 1:
      scale_cfgs = [_config(C, F, codebook=full, mask=full_mask, scale=s)
                    for s in self.budget.scales]
      trained = self._train(self.body, scale_cfgs, [0] * len(scale_cfgs))
      _, logits = m.predict(self.body, trained, _stack(scale_cfgs),
                            self.x_val)
      val_acc = np.asarray((logits.argmax(-1) == self.y_val).mean(-1))
      chosen = dict(zip(map(str, self.budget.scales), map(float, val_acc)))
    else:  # --quick: nothing to choose from
      val_acc, chosen = np.zeros(1), {str(self.budget.scales[0]): None}
    scale = float(self.budget.scales[int(np.argmax(val_acc))])
    report["scale"] = scale
    report["scale_validation_accuracy"] = chosen

    self.progress(f"{task.name}: codebook teachers")
    cb_teacher_cfg = _config(C, F, codebook=full, mask=full_mask, scale=scale)
    cb_teachers = self._train(self.teacher_body, [cb_teacher_cfg] * S, seeds)
    t_feats = m.predict(self.teacher_body, cb_teachers,
                        _stack([cb_teacher_cfg] * S), x_all)[0][:, :splits[0]]
    report["teacher_accuracy"] = _mean_std(
        np.asarray((t_test.argmax(-1) == self.y_test).mean(-1)))

    configs = {
        "one-hot": dense,
        "smooth-labels": _config(C, F, alpha=SOFT_LABEL_ALPHA),
        "simplex": _config(C, F, codebook=simplex, mask=simplex_mask,
                           scale=scale),
        "spectral": _config(C, F, codebook=full, mask=full_mask, scale=scale),
        "spectral-small": _config(C, F, codebook=small, mask=small_mask,
                                  scale=scale),
        "kernel-soft-labels": _config(C, F, target_kernel=kernel,
                                      alpha=SOFT_LABEL_ALPHA),
        "kd": _config(C, F, w_kd=0.5),
        "sa-kd": _config(C, F, codebook=full, mask=full_mask, scale=scale,
                         w_sa=0.5),
    }
    assert tuple(configs) == METHODS
    cfgs = [configs[name] for name in METHODS for _ in seeds]
    seed_of = [s for _ in METHODS for s in seeds]
    self.progress(f"{task.name}: {len(METHODS)} methods x {S} seeds")
    students = self._train(self.body, cfgs, seed_of,
                           teacher_logits=t_logits[jnp.asarray(seed_of)],
                           teacher_features=t_feats[jnp.asarray(seed_of)])

    self.progress(f"{task.name}: evaluation")
    feats, logits = m.predict(self.body, students, _stack(cfgs), self.x_test)
    scores = _evaluate(feats, logits, self.y_test, jnp.asarray(distances),
                       C, task.k)
    scores = {k: np.asarray(v) for k, v in scores.items()}
    per_model = [{k: float(v[i]) for k, v in scores.items()}
                 for i in range(len(cfgs))]
    self.progress(f"{task.name}: train-step timing")
    ratios = self.step_time_ratios(configs, teachers)
    methods = {}
    for j, name in enumerate(METHODS):
      rows = per_model[j * S:(j + 1) * S]
      values = {k: [r[k] for r in rows] for k in rows[0]}
      values["step_time_ratio"] = [ratios[name]] * S
      methods[name] = dict(note=METHOD_NOTES[name], per_seed=values,
                           mean={k: float(np.mean(x)) for k, x in
                                 values.items()},
                           std={k: float(np.std(x)) for k, x in
                                values.items()})
    report["methods"] = methods
    if task.name == "mnist1d":
      report["reference"] = self.mnist1d_reference(
          methods["one-hot"]["per_seed"]["accuracy"])
    return report

  # -- timing -----------------------------------------------------------------

  def step_time_ratios(self, configs, teachers) -> dict:
    """Seconds per training step of each method, relative to one-hot.

    Each method gets its own compiled single-model step, written the way a
    user would (a Dense layer, or ``codebook_logits`` with a d-dim
    codebook, plus its loss), on the same batch; the methods are timed in
    interleaved rounds in this process and the medians compared.
    """
    batch = min(self.budget.batch_size, self.x.shape[0])
    x, y = self.x[:batch], self.y[:batch]
    teacher = jax.tree_util.tree_map(lambda a: a[0], teachers)
    # Trace every step (Python, serial), then compile them two at a time:
    # XLA's compiler is single-threaded and releases the GIL.
    lowered = {name: self._step(name, configs[name], teacher, x, y)
               for name in METHODS}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      compiled = dict(zip(lowered, pool.map(lambda item: item[0].compile(),
                                            lowered.values())))
    steps = {name: (compiled[name], state)
             for name, (_, state) in lowered.items()}
    times = {name: [] for name in METHODS}
    for _ in range(self.budget.timing_rounds):
      for name, (fn, state) in steps.items():
        state = fn(*state)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(self.budget.timing_steps):
          state = fn(*state)
        jax.block_until_ready(state)
        times[name].append((time.perf_counter() - t0)
                           / self.budget.timing_steps)
        steps[name] = (fn, state)
    base = float(np.median(times["one-hot"]))
    return {name: float(np.median(t)) / base for name, t in times.items()}

  def _step(self, name, cfg, teacher, x, y):
    C = self.C
    codebook = np.asarray(cfg.codebook)[:, np.asarray(cfg.mask) > 0]
    d = codebook.shape[1] if float(cfg.is_codebook) else self.F
    body = m.make_body(self.task.body, d)
    params = jax.tree_util.tree_map(
        lambda a: a[0], m.init_params(body, C, d, [0], x))
    if float(cfg.is_codebook):
      params = {"body": params["body"]}
    tx = m.optimizer(1000)
    tcfg = cfg  # the teacher's head is never used for features
    kernel = jnp.asarray(cfg.target_kernel)
    W = jnp.asarray(codebook)
    scale = float(cfg.scale)

    def logits_of(p, xb):
      z = body.apply(p["body"], xb)
      if "dense_w" in p:
        return z, z @ p["dense_w"] + p["dense_b"]
      return z, st.codebook_logits(z, W, scale=scale)

    def loss(p, xb, yb):
      z, logits = logits_of(p, xb)
      if name == "smooth-labels":
        return optax.softmax_cross_entropy(logits, optax.smooth_labels(
            jax.nn.one_hot(yb, C), SOFT_LABEL_ALPHA)).mean()
      if name == "kernel-soft-labels":
        return optax.softmax_cross_entropy(logits, st.kernel_soft_labels(
            yb, kernel, temperature=SOFT_LABEL_TEMPERATURE,
            alpha=SOFT_LABEL_ALPHA)).mean()
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
      if name == "kd":
        _, t_logits = m.forward(self.teacher_body, teacher, tcfg, xb)
        ce = 0.5 * ce + 0.5 * st.distillation_loss(
            logits, t_logits, temperature=m.KD_TEMPERATURE)
      if name == "sa-kd":
        t_feats, _ = m.forward(self.teacher_body, teacher, tcfg, xb)
        ce = 0.5 * ce + 0.5 * st.soft_assignment_distillation_loss(
            scale * unit_rows(z), scale * unit_rows(t_feats[:, :d]),
            unit_rows(W), temperature=m.KD_TEMPERATURE)
      return ce.mean()

    @m.jit
    def step(p, opt):
      g = jax.grad(loss)(p, x, y)
      updates, opt = tx.update(g, opt, p)
      return optax.apply_updates(p, updates), opt

    state = (params, tx.init(params))
    return step.lower(*state), state

  # -- MNIST-1D reference points ----------------------------------------------

  def mnist1d_reference(self, cnn_accuracy) -> dict:
    """One-hot logistic regression, MLP and CNN (the one-hot method's
    body) on MNIST-1D, against the paper's figures (32%, 68%, 94%)."""
    self.progress(f"{self.task.name}: reference models")
    out = {"CNN": dict(accuracy=_mean_std(cnn_accuracy), paper=0.94)}
    C, F, S = self.C, self.F, self.budget.seeds
    for label, body, paper in (
        ("logistic regression", m.MLP(width=1, depth=0, features=F), 0.32),
        ("MLP", m.make_body("mlp", F), 0.68)):
      cfgs = [_config(C, F)] * S
      trained = self._train(body, cfgs, list(range(S)))
      _, logits = m.predict(body, trained, _stack(cfgs), self.x_test)
      acc = np.asarray((logits.argmax(-1) == self.y_test).mean(-1))
      out[label] = dict(accuracy=_mean_std(acc), paper=paper)
    return out


@functools.partial(jax.jit, static_argnums=(4, 5))
def _evaluate(feats, logits, y, distances, num_classes, k):
  """Every metric of every model (leading axis) in one compiled program."""

  def one(z, logits):
    probs = jax.nn.softmax(logits)
    pred = logits.argmax(-1)
    return {
        "accuracy": (pred == y).mean(),
        "severity": st.mistake_severity(pred, y, distances),
        "hdist@k": st.hierarchical_distance_at_k(logits, y, distances, k=k),
        "nll": optax.softmax_cross_entropy_with_integer_labels(logits,
                                                               y).mean(),
        "ece": st.expected_calibration_error(probs, y),
        "nc1": st.collapse_metrics(z, y, num_classes).nc1,
    }

  return jax.vmap(one)(feats, logits)


def _mean_std(values):
  values = np.asarray(values, np.float64)
  return dict(mean=float(values.mean()), std=float(values.std()))

"""Running the benchmark: teachers, kernels, codebooks, scale selection, the
vmapped training of every method and seed, evaluation, step timing."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import numpy as np
import optax

import spectral_targets as st
from spectral_targets._numerics import unit_rows
from spectral_targets.bench import _models as m
from spectral_targets.bench._compile import Compiler
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
  """How much one task trains and times.

  ``fast_compile`` (``--quick``) compiles every program at XLA backend
  optimisation level 0: about a third less compile time for slower code, a
  win when most of a run is compiling. ``mnist1d_reference``: also train
  the one-hot logistic regression and MLP of the MNIST-1D paper.
  """
  seeds: int
  epochs: int
  batch_size: int = 128
  scales: tuple[float, ...] = SCALES
  timing_rounds: int = 5
  timing_steps: int = 20
  fast_compile: bool = False
  mnist1d_reference: bool = True


_FAST = {"xla_backend_optimization_level": 0}


def _f32(value):
  return np.asarray(value, np.float32)


def _pad(codes, F):
  codes = _f32(codes)
  out = np.zeros((codes.shape[0], F), np.float32)
  out[:, :codes.shape[1]] = codes
  mask = np.zeros(F, np.float32)
  mask[:codes.shape[1]] = 1
  return out, mask


def _config(C, F, *, codebook=None, mask=None, scale=16.0,
            target_kernel=None, alpha=0.0, w_kd=0.0, w_sa=0.0):
  """A method as host arrays (float32, never weak-typed, so one compiled
  program serves every method)."""
  return m.MethodConfig(
      mask=_f32(np.ones(F) if mask is None else mask),
      codebook=_f32(np.zeros((C, F)) if codebook is None else codebook),
      scale=_f32(scale),
      is_codebook=_f32(codebook is not None),
      target_kernel=_f32(np.zeros((C, C)) if target_kernel is None
                         else target_kernel),
      target_temperature=_f32(SOFT_LABEL_TEMPERATURE),
      alpha=_f32(alpha), w_ce=_f32(1.0 - w_kd - w_sa), w_kd=_f32(w_kd),
      w_sa=_f32(w_sa))


def _stack(items):
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *items)


def _spec(tree):
  return jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def _accuracy(logits, y):
  """Per-model accuracy of (M, N, C) logits, on the host."""
  return (np.asarray(logits).argmax(-1) == np.asarray(y)).mean(-1)


class TaskRun:
  """Everything the benchmark does for one task.

  Every program the task runs (trainers, predictors, the scoring, the
  timed steps) is submitted to a ``Compiler`` first and compiled on worker
  threads while the main thread trains; data stay NumPy arrays on the host
  between programs, so nothing compiles eagerly in between.
  """

  def __init__(self, task: Task, budget: Budget,
               progress: Callable[[str], None] = lambda s: None,
               on_epoch: Callable[[int], None] | None = None,
               programs: Compiler | None = None):
    self.task, self.budget, self.progress = task, budget, progress
    self.on_epoch = on_epoch
    self.C = task.num_classes
    self.F = self.C - 1
    self.body = m.make_body(task.body, self.F)
    self.teacher_body = m.make_body(task.body, self.F, teacher=True)
    self._single_teacher = m.make_body(task.body, self.F, teacher=True,
                                       single=True)
    self.x, self.y = task.x_train, task.y_train
    self.x_val, self.y_val = task.x_val, task.y_val
    self.x_test, self.y_test = task.x_test, task.y_test
    # One prediction program for every split of the teachers.
    self.x_all = np.concatenate([self.x, self.x_val, self.x_test])
    self.splits = np.cumsum([len(self.y), len(self.y_val)])
    self.batch = min(budget.batch_size, len(self.y))
    self.programs = programs
    self._submitted = False

  @property
  def _reference(self):
    return self.task.name == "mnist1d" and self.budget.mnist1d_reference

  def _key(self, *parts):
    return (self.task.name, *parts)

  def _options(self):
    return _FAST if self.budget.fast_compile else None

  # -- programs ---------------------------------------------------------------

  def _submit_train(self, body, count):
    key = self._key("train", body, count)
    if key in self.programs:
      return
    C, F, n = self.C, self.F, len(self.y)
    self.programs.submit(
        key, m.trainer(body, self.budget.epochs, self.batch, n),
        m.param_specs(body, C, F, count, self.x),
        _spec(_stack([_config(C, F)] * count)),
        jax.ShapeDtypeStruct((count,), np.int32), self.x, self.y,
        jax.ShapeDtypeStruct((count, n, C), np.float32),
        jax.ShapeDtypeStruct((count, n, F), np.float32),
        options=self._options())

  def _submit_predict(self, body, count, x):
    key = self._key("predict", body, count, len(x))
    if key not in self.programs:
      self.programs.submit(
          key, m.predictor(body), m.param_specs(body, self.C, self.F, count,
                                                self.x),
          _spec(_stack([_config(self.C, self.F)] * count)),
          jax.ShapeDtypeStruct(x.shape, x.dtype),
          options=self._options())

  def submit(self):
    """Queues every program of the task on its compiler, in the order the
    task needs them (``run`` does this if it was not done before)."""
    if self._submitted:
      return
    self._submitted = True
    S, M = self.budget.seeds, len(METHODS) * self.budget.seeds
    self._submit_train(self.teacher_body, S)
    self._submit_predict(self.teacher_body, S, self.x_all)
    scales = len(self.budget.scales)
    if scales > 1:
      self._submit_train(self.body, scales)
      self._submit_predict(self.body, scales, self.x_val)
    self._submit_train(self.body, M)
    self.programs.submit(
        self._key("score"), _scorer(self.body, self.C, self.task.k),
        m.param_specs(self.body, self.C, self.F, M, self.x),
        _spec(_stack([_config(self.C, self.F)] * M)), self.x_test,
        self.y_test, jax.ShapeDtypeStruct((self.C, self.C), np.float32),
        options=self._options())
    # Methods whose steps differ only in data (simplex and spectral: the
    # same codebook head and loss, another codebook) share one program.
    self._steps = {}
    for name in METHODS:
      program = self._step_program(name)
      if program not in self._steps:
        self._steps[program] = self._step(*program)
        fn, args = self._steps[program]
        self.programs.submit(self._key("step", *program), fn, *_spec(args),
                             options=self._options())
    if self._reference:
      for body in self._reference_bodies().values():
        self._submit_train(body, S)
        self._submit_predict(body, S, self.x_test)

  # -- training ---------------------------------------------------------------

  def _train(self, body, cfgs, seeds, teacher_logits=None,
             teacher_features=None):
    M, n = len(seeds), len(self.y)
    params = m.init_params(body, self.C, self.F, [1000 + s for s in seeds],
                           self.x)
    tl = (np.zeros((M, n, self.C), np.float32) if teacher_logits is None
          else teacher_logits)
    tf = (np.zeros((M, n, self.F), np.float32) if teacher_features is None
          else teacher_features)
    m.set_epoch_callback(self.on_epoch)
    try:
      return self.programs[self._key("train", body, M)](
          params, _stack(cfgs), np.asarray([1000 + s for s in seeds],
                                           np.int32), self.x, self.y, tl, tf)
    finally:
      m.set_epoch_callback(None)

  def _predict(self, body, params, cfgs, x):
    """Host (features, logits) of every model on x."""
    feats, logits = self.programs[self._key("predict", body, len(cfgs),
                                            len(x))](
        params, _stack(cfgs), x)
    return np.asarray(feats), np.asarray(logits)

  def run(self) -> dict:
    """Trains, evaluates and times every method; returns the task's
    report."""
    if self.programs is None:
      with Compiler() as programs:
        self.programs = programs
        try:
          return self.run()
        finally:
          self.programs = None
    self.submit()
    try:
      return self._run()
    finally:
      self.programs.forget(self.task.name)

  def _run(self) -> dict:
    task, C, F, S = self.task, self.C, self.F, self.budget.seeds
    seeds = list(range(S))
    report = dict(description=task.description, num_classes=C,
                  train=int(len(task.y_train)), val=int(len(task.y_val)),
                  test=int(len(task.y_test)), small_d=task.small_d, k=task.k,
                  epochs=self.budget.epochs, seeds=S)
    n, n_val = self.splits

    self.progress(f"{task.name}: one-hot teachers")
    dense = _config(C, F)
    teachers = self._train(self.teacher_body, [dense] * S, seeds)
    t_feats_all, t_logits_all = self._predict(self.teacher_body, teachers,
                                              [dense] * S, self.x_all)
    t_logits, t_val_feats, t_test = (t_logits_all[:, :n],
                                     t_feats_all[:, n:n_val],
                                     t_logits_all[:, n_val:])

    distances: np.ndarray | None
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
      _, logits = self._predict(self.body, trained, scale_cfgs, self.x_val)
      val_acc = _accuracy(logits, self.y_val)
      chosen: dict[str, float | None] = dict(
          zip(map(str, self.budget.scales), map(float, val_acc)))
    else:  # --quick: nothing to choose from
      val_acc, chosen = np.zeros(1), {str(self.budget.scales[0]): None}
    scale = float(self.budget.scales[int(np.argmax(val_acc))])
    report["scale"] = scale
    report["scale_validation_accuracy"] = chosen

    self.progress(f"{task.name}: codebook teachers")
    cb_teacher_cfg = _config(C, F, codebook=full, mask=full_mask, scale=scale)
    cb_teachers = self._train(self.teacher_body, [cb_teacher_cfg] * S, seeds)
    t_feats = self._predict(self.teacher_body, cb_teachers,
                            [cb_teacher_cfg] * S, self.x_all)[0][:, :n]
    report["teacher_accuracy"] = _mean_std(_accuracy(t_test, self.y_test))

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
    seed_of = np.asarray([s for _ in METHODS for s in seeds])
    self.progress(f"{task.name}: {len(METHODS)} methods x {S} seeds")
    students = self._train(self.body, cfgs, list(seed_of),
                           teacher_logits=t_logits[seed_of],
                           teacher_features=t_feats[seed_of])

    self.progress(f"{task.name}: evaluation")
    assert self.programs is not None  # run() set it
    scores = self.programs[self._key("score")](
        students, _stack(cfgs), self.x_test, self.y_test, _f32(distances))
    scores = {k: np.asarray(v) for k, v in scores.items()}
    per_model = [{k: float(v[i]) for k, v in scores.items()}
                 for i in range(len(cfgs))]
    self.progress(f"{task.name}: train-step timing")
    ratios = self.step_time_ratios(configs)
    methods: dict[str, dict] = {}
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
    if self._reference:
      report["reference"] = self.mnist1d_reference(
          methods["one-hot"]["per_seed"]["accuracy"])
    return report

  # -- timing -----------------------------------------------------------------

  def step_time_ratios(self, configs) -> dict:
    """Seconds per training step of each method, relative to one-hot.

    Each method has its own compiled single-model step, written the way a
    user would (a Dense layer, or ``codebook_logits`` with a d-dim
    codebook, plus its loss), on the same batch, from freshly initialised
    parameters (student and, for the distillation methods, teacher); the
    methods are timed in interleaved rounds (in a shuffled order each
    round) in this process and the medians compared. Compilation of later tasks' programs is waited out
    first, so no background work shares the cores with the timings.
    """
    assert self.programs is not None  # run() set it
    self.programs.wait()
    teacher = jax.tree_util.tree_map(lambda a: a[0], m.init_params(
        self._single_teacher, self.C, self.F, [1], self.x))
    steps = {}
    for name in METHODS:
      cfg = configs[name]
      program = self._step_program(name)
      batch = self._steps[program][1][2]
      batch = dict(batch, x=self.x[:self.batch], y=self.y[:self.batch])
      if "W" in batch:
        batch.update(W=cfg.codebook[:, cfg.mask > 0], scale=cfg.scale)
      if "kernel" in batch:
        batch.update(kernel=cfg.target_kernel)
      if "teacher" in batch:
        batch.update(teacher=teacher)
      d = program[2]
      params = jax.tree_util.tree_map(lambda a: a[0], m.init_params(
          m.make_body(self.task.body, d, single=True), self.C, d, [0],
          self.x))
      if "W" in batch:
        params = {"body": params["body"]}
      state = (params, m.initial_state(m.optimizer(1000), params))
      steps[name] = (self.programs[self._key("step", *program)], state,
                     batch)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    # A fresh method order every round (fixed seed): no method always runs
    # right after the same neighbour.
    order = np.random.default_rng(0)
    for _ in range(self.budget.timing_rounds):
      for name in order.permutation(METHODS):
        fn, state, batch = steps[name]
        state = fn(*state, batch)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(self.budget.timing_steps):
          state = fn(*state, batch)
        jax.block_until_ready(state)
        times[name].append((time.perf_counter() - t0)
                           / self.budget.timing_steps)
        steps[name] = (fn, state, batch)
    base = float(np.median(times["one-hot"]))
    return {name: float(np.median(t)) / base for name, t in times.items()}

  def _step_program(self, name):
    """(head, loss, d) of a method's training step: "dense" or
    "codebook"; the loss; the feature width a user's model has."""
    codebook = name in ("simplex", "spectral", "spectral-small", "sa-kd")
    loss = "one-hot" if name in ("simplex", "spectral",
                                 "spectral-small") else name
    d = self.task.small_d if name == "spectral-small" else self.F
    return ("codebook" if codebook else "dense", loss, d)

  def _step(self, head, loss_name, d):
    """(jitted step, example arguments) of a single-model training step,
    ``step(params, opt_state, batch) -> (params, opt_state)``, written as a
    user would: a Dense layer or ``codebook_logits`` on the body's d
    features, plus the method's loss. The batch holds the data and whatever
    the loss reads (codebook W and its scale, the target kernel, the
    teacher's parameters)."""
    C = self.C
    body = m.make_body(self.task.body, d, single=True)
    tx = m.optimizer(1000)
    codebook = head == "codebook"
    params = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
        m.param_specs(body, C, d, 1, self.x))
    if codebook:
      params = {"body": params["body"]}
    batch = {"x": self.x[:self.batch], "y": self.y[:self.batch]}
    if codebook:
      batch.update(W=jax.ShapeDtypeStruct((C, d), np.float32),
                   scale=jax.ShapeDtypeStruct((), np.float32))
    if loss_name == "kernel-soft-labels":
      batch.update(kernel=jax.ShapeDtypeStruct((C, C), np.float32))
    if loss_name in ("kd", "sa-kd"):
      batch.update(teacher=jax.tree_util.tree_map(
          lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
          m.param_specs(self._single_teacher, C, self.F, 1, self.x)))
    dense_cfg = _config(C, self.F)  # the teacher's head is a Dense layer

    def logits_of(p, b):
      z = body.apply(p["body"], b["x"])
      if codebook:
        return z, st.codebook_logits(z, b["W"], scale=b["scale"])
      return z, z @ p["dense_w"] + p["dense_b"]

    def loss(p, b):
      z, logits = logits_of(p, b)
      yb = b["y"]
      if loss_name == "smooth-labels":
        return optax.softmax_cross_entropy(logits, optax.smooth_labels(
            jax.nn.one_hot(yb, C), SOFT_LABEL_ALPHA)).mean()
      if loss_name == "kernel-soft-labels":
        return optax.softmax_cross_entropy(logits, st.kernel_soft_labels(
            yb, b["kernel"], temperature=SOFT_LABEL_TEMPERATURE,
            alpha=SOFT_LABEL_ALPHA)).mean()
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
      if loss_name == "kd":
        _, t_logits = m.forward(self._single_teacher, b["teacher"], dense_cfg,
                                b["x"])
        ce = 0.5 * ce + 0.5 * st.distillation_loss(
            logits, t_logits, temperature=m.KD_TEMPERATURE)
      if loss_name == "sa-kd":
        t_feats, _ = m.forward(self._single_teacher, b["teacher"], dense_cfg,
                               b["x"])
        ce = 0.5 * ce + 0.5 * st.soft_assignment_distillation_loss(
            b["scale"] * unit_rows(z), b["scale"] * unit_rows(t_feats[:, :d]),
            unit_rows(b["W"]), temperature=m.KD_TEMPERATURE)
      return ce.mean()

    def step(p, opt, b):
      g = jax.grad(loss)(p, b)
      updates, opt = tx.update(g, opt, p)
      return optax.apply_updates(p, updates), opt

    return jax.jit(step), (params, jax.eval_shape(tx.init, params), batch)

  # -- MNIST-1D reference points ----------------------------------------------

  def _reference_bodies(self):
    return {"logistic regression": m.MLP(width=1, depth=0, features=self.F),
            "MLP": m.make_body("mlp", self.F)}

  def mnist1d_reference(self, cnn_accuracy) -> dict:
    """One-hot logistic regression, MLP and CNN (the one-hot method's
    body) on MNIST-1D, against the paper's figures (32%, 68%, 94%)."""
    self.progress(f"{self.task.name}: reference models")
    out = {"CNN": dict(accuracy=_mean_std(cnn_accuracy), paper=0.94)}
    S = self.budget.seeds
    papers = {"logistic regression": 0.32, "MLP": 0.68}
    for label, body in self._reference_bodies().items():
      cfgs = [_config(self.C, self.F)] * S
      trained = self._train(body, cfgs, list(range(S)))
      _, logits = self._predict(body, trained, cfgs, self.x_test)
      out[label] = dict(accuracy=_mean_std(_accuracy(logits, self.y_test)),
                        paper=papers[label])
    return out


@functools.lru_cache(maxsize=None)
def _scorer(body, num_classes, k):
  """The jitted ``(params, cfgs, x, y, distances) -> metrics``: every
  model's (leading axis) test predictions and every metric of them, in one
  compiled program."""

  def one(params, cfg, x, y, distances):
    z, logits = m.forward(body, params, cfg, x)
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

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))


def _mean_std(values):
  values = np.asarray(values, np.float64)
  return dict(mean=float(values.mean()), std=float(values.std()))

"""The ``distill`` task: distillation across a real capacity gap.

On MNIST-1D (the ``mnist1d`` task's data, the same seeds), a wide CNN
teacher is trained at a strong, tuned recipe (a longer budget, the learning
rate chosen on the tuning seeds' validation split) and two small students
learn from it: a narrow CNN and the MNIST-1D paper's MLP. Teachers are
trained once per seed (tuning seeds included) and their outputs on the
training split are cached for the run.

Two teachers per seed: a Dense-head one-hot teacher (its logits feed KD and
DKD), and a teacher with the spectral codebook head of that seed's kernel
(the kernel estimated from the one-hot teacher's class means on the
validation split), whose features feed soft-assignment KD. Both teachers'
test accuracies are reported. Every student method is tuned by the common
protocol, and its gain is the paired difference against its control: KD and
DKD against the one-hot student, soft-assignment KD against the same
spectral-codebook student without distillation.

That is the setting where distillation is known to be weak (the teacher
memorises its training inputs, so its outputs there carry little beyond the
labels). Two settings where it is known to work follow, each on the MLP
student (the student of issue 21's replication) and each against the
controls that lack only its ingredient; everything about them (T, the
mixup α, the schedules, the pool size, the controls, the seeds) was fixed
before any run, and only the learning rate and each method's own knobs are
tuned, by the common protocol:

- **function matching** (Beyer et al. 2022, "Knowledge distillation: a
  good teacher is patient and consistent"): the student matches the
  teacher's distribution at T = 1 on mixup'd inputs, the teacher seeing
  exactly the input the student sees (consistent), on a long schedule
  (``FM_EPOCHS``, the replication's 200). The partner and λ ~ Beta(α, α)
  (α = ``MIXUP_ALPHA``) of every (epoch, example) are drawn per seed before
  training and the teachers' outputs precomputed on those very inputs
  (``mixed_teacher_outputs``). Controls: mixup with hard labels (the mixed
  one-hot targets λ e_y + (1 − λ) e_y') and plain one-hot, at the same
  schedule; plain KD (clean inputs, its T and weight tuned) beside them.
  The soft-assignment analogue distils the codebook teacher's soft
  assignments at τ = 1 on the same mixed inputs, against the same codebook
  student with mixup and hard labels. DKD is left out: it splits the
  teacher's distribution at one target class, and a mixed input has two.
- **a transfer set** (Hinton et al. 2015's transfer set; the unlabelled
  data of Ba & Caruana 2014 and of Beyer et al.): ``POOL_FACTOR`` times the
  labelled set in fresh MNIST-1D inputs per seed (``_tasks.mnist1d_pool``,
  disjoint from every split), labelled by the teacher. The student trains
  on labelled ∪ pool, the true labels on the labelled part and the
  teacher's argmax on the pool; KD, DKD (target class: that label) and
  soft-assignment KD add the teachers' soft outputs. Controls: the same
  data with hard labels only (``pseudo-labels``: what soft targets add
  beyond more labelled data; ``spectral`` for the codebook student), and
  the labelled set alone (``one-hot``), trained for the same number of
  optimiser steps (more epochs of a smaller set).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from spectral_targets.bench import (
  _methods,
  _pipeline,
  _stats,
  _tasks,
  _training,
)
from spectral_targets.bench._bodies import BODIES

TEACHER_BODY = "cnn-wide"
STUDENTS = ("cnn-narrow", "mlp-small")
TEACHER_EPOCHS = 50
TEACHER_LEARNING_RATES = (5e-3, 1e-2, 2e-2)
#: The codebook teacher's scale grid (its learning rate is the one-hot
#: teacher's).
TEACHER_SCALES = (4.0, 8.0, 16.0, 32.0)
STUDENT_METHODS = ("one-hot", "smooth-labels", "kd", "dkd", "spectral",
                   "sa-kd")

#: The student of the two settings where distillation is known to work.
SETTING_STUDENT = "mlp-small"
#: Function matching's schedule (issue 21's replication: 200 epochs).
FM_EPOCHS = 200
#: λ ~ Beta(α, α): α = 1 draws λ uniformly on [0, 1].
MIXUP_ALPHA = 1.0
#: Function matching's block: the method, its controls, and plain KD.
FM_METHODS = ("one-hot", "mixup", "function-matching", "kd",
              "spectral-mixup", "sa-function-matching")
#: The transfer pool holds this many times the labelled training set.
POOL_FACTOR = 4
#: Epochs over labelled ∪ pool (the labelled-only control takes as many
#: optimiser steps: ``POOL_FACTOR + 1`` times the epochs).
TRANSFER_EPOCHS = 10
#: The transfer set's block; "one-hot" is the labelled set alone.
TRANSFER_METHODS = ("one-hot", "pseudo-labels", "kd", "dkd", "spectral",
                    "sa-kd")
#: The seed stream of the mixup draws (partner, λ) per (seed, epoch).
MIX_STREAM = 21


def mixup_draws(seed: int, epochs: int, n: int, alpha: float = MIXUP_ALPHA
                ) -> tuple[np.ndarray, np.ndarray]:
  """(partner, λ), each (epochs, n): for every epoch and training example
  of seed ``seed`` a uniformly drawn partner index and λ ~ Beta(α, α), from
  ``np.random.default_rng((MIX_STREAM, seed, epoch))`` (fixed before
  training: the same for every model of that seed).

  Example: ``partner, lam = mixup_draws(0, 200, 3500)``.
  """
  if epochs < 1 or n < 1:
    raise ValueError(f"epochs and n must be >= 1, got {epochs} and {n}.")
  if not alpha > 0:
    raise ValueError(f"alpha must be > 0, got {alpha}.")
  partner = np.empty((epochs, n), np.int32)
  lam = np.empty((epochs, n), np.float32)
  for e in range(epochs):
    rng = np.random.default_rng((MIX_STREAM, seed, e))
    partner[e] = rng.integers(0, n, size=n)
    lam[e] = rng.beta(alpha, alpha, size=n)
  return partner, lam


@jax.jit
def _mixed(x, partner, lam):
  """Every seed's mixed training inputs (``x``: (S, n, ...), ``partner``,
  ``lam``: (S, n)) by ``_training.mix_inputs``, the step's own function."""
  return jax.vmap(lambda xs, j, l: _training.mix_inputs(xs, xs[j], l))(
      x, partner, lam)


def mixed_teacher_outputs(ex, teachers, data, partner, lam):
  """The teachers' outputs on the mixed training inputs of every epoch:
  ``teachers`` is ``[(params, cfgs, runs, take)]`` (one run per seed of
  ``data``, in its order; ``take`` "logits" or "features"); ``partner``,
  ``lam``: (E, S, n). Returns one (E, S, n, ·) array per teacher."""
  def epoch(e):
    x = _mixed(data.x_train, partner[e], lam[e])
    outs = []
    for params, cfgs, runs, take in teachers:
      z, logits = ex.outputs_on(params, cfgs, runs, x)
      outs.append(logits if take == "logits" else z)
    return outs

  per_epoch = _pipeline.side_by_side(epoch, range(partner.shape[0]))
  return [np.stack([o[k] for o in per_epoch]).astype(np.float32)
          for k in range(len(teachers))]


def transfer_data(data, pool, pool_logits, pool_features):
  """``data`` (its teacher outputs on the labelled training set) with
  the pool appended to its training split: inputs labelled ∪ pool (S, n +
  m, ...), labels the true ones then the teacher's argmax on the pool (the
  pseudo-labels), and the teachers' logits and features on all of it.

  Example: ``transfer_data(data, pool, logits, features)`` with ``pool``
  (S, m, ...), ``logits`` (S, m, C), ``features`` (S, m, F).
  """
  if data.teacher_logits is None or data.teacher_features is None:
    raise ValueError("data carries no teacher outputs on its training set.")
  if not (pool.shape[:2] == pool_logits.shape[:2] == pool_features.shape[:2]):
    raise ValueError(f"pool {pool.shape}, pool_logits {pool_logits.shape} "
                     f"and pool_features {pool_features.shape} differ in "
                     "their (seed, example) axes.")
  pseudo = np.asarray(pool_logits).argmax(-1).astype(np.int32)
  cat = lambda a, b: np.concatenate([a, np.asarray(b, a.dtype)], axis=1)
  return dataclasses.replace(
      data, x_train=cat(data.x_train, pool), y_train=cat(data.y_train, pseudo),
      teacher_logits=cat(data.teacher_logits, pool_logits),
      teacher_features=cat(data.teacher_features, pool_features))


def _draw_pools(seeds, size):
  return np.stack([_tasks.mnist1d_pool(s, size) for s in seeds])


def _runner(session, task, data, methods, budget, teacher, progress):
  """A TaskRunner of the setting student on ``data`` sharing the teacher
  runner's kernels and codebooks."""
  if session.options.quick:
    # One compiled size for every stage of a smoke run (compiling
    # dominates it): one model per method and tuning seed, as many as the
    # evaluation trains at two seeds (a rung of two cells is two chunks).
    budget = dataclasses.replace(
        budget, chunk=len(budget.tuning_seeds) * len(methods))
  ex = _pipeline.executor_for(session, task, data, body=SETTING_STUDENT,
                              batch_size=budget.batch_size)
  runner = _pipeline.TaskRunner(task, budget, methods, data, ex, progress)
  runner.kernels, runner.codebooks, runner.small_d = (
      teacher.kernels, teacher.codebooks, teacher.small_d)
  return runner


def _block(runners_and_methods, reference):
  """Tunes and evaluates each (runner, epochs) and reports all the
  methods together (paired on the same evaluation seeds)."""
  selections: dict = {}
  per_method: dict = {}
  methods: list = []
  for runner, epochs in runners_and_methods:
    chosen = runner.tune(runner.methods, epochs)
    selections.update(chosen)
    per_method.update(runner.evaluate(runner.methods, chosen, epochs))
    methods += runner.methods
  return reference.report(methods, selections, per_method, None)


def _wanted(names, options, keep):
  return [n for n in names if not options.methods or n in options.methods
          or n in keep]


def run(session, task) -> dict:
  """The distill task's report: teachers' accuracies and one block of
  methods per student (``task``: the mnist1d data)."""
  options, data = session.options, session.data(task)
  # Progress lines name this task, not the data set it reuses.
  task = dataclasses.replace(task, name="distill")
  budget = options.budget(task)
  seeds = data.seeds
  n = data.y_train.shape[1]
  # The pools are drawn on the data thread while the teachers train.
  pools = session.background(_draw_pools, list(seeds), POOL_FACTOR * n)
  teacher_budget = dataclasses.replace(
      budget, epochs=2 if options.quick else TEACHER_EPOCHS,
      learning_rates=budget.learning_rates[:1] if options.quick
      else TEACHER_LEARNING_RATES)
  ex = _pipeline.executor_for(session, task, data, body=TEACHER_BODY,
                              batch_size=budget.batch_size)
  one_hot = _methods.METHODS["one-hot"]
  spectral = dataclasses.replace(_methods.METHODS["spectral"],
                                 knobs={"scale": TEACHER_SCALES})
  teacher = _pipeline.TaskRunner(task, teacher_budget, [one_hot, spectral],
                                 data, ex, session.progress)
  epochs = teacher_budget.epochs

  # One-hot teachers: the learning rate tuned, then one teacher per seed.
  session.progress(f"{task.name}: one-hot teachers")
  chosen = teacher.tune([teacher.methods[0]])["one-hot"]
  runs = teacher.runs(one_hot, [chosen.chosen], seeds, epochs)
  params, cfgs = teacher.train(runs, epochs)
  scores = ex.score(params, cfgs, runs)
  teacher.kernels_from(runs, params, cfgs)
  teacher.build_codebooks()
  logits = ex.logits(params, cfgs, runs, split="train")

  # Codebook teachers at the one-hot teachers' learning rate, scale tuned.
  session.progress(f"{task.name}: codebook teachers")
  cb_chosen = teacher.tune([teacher.methods[1]],
                           learning_rates=(chosen.chosen["lr"],))["spectral"]
  cb_runs = teacher.runs(teacher.methods[1], [cb_chosen.chosen], seeds,
                         epochs)
  cb_params, cb_cfgs = teacher.train(cb_runs, epochs)
  cb_scores = ex.score(cb_params, cb_cfgs, cb_runs)
  features = ex.features(cb_params, cb_cfgs, cb_runs, split="train")

  eval_rows = [i for i, r in enumerate(runs) if r.seed in budget.eval_seeds]
  report = dict(
      description="MNIST-1D distillation: a wide CNN teacher, narrow CNN and "
                  "MLP students",
      construction=f"{task.construction}; teachers: {BODIES[TEACHER_BODY][1]}"
                   f", {epochs} epochs, learning rate from "
                   f"{list(teacher_budget.learning_rates)} on the tuning "
                   "seeds",
      num_classes=task.num_classes, seeds=budget.seeds,
      tuning_seeds=list(budget.tuning_seeds), ks=list(task.ks),
      distance_unit=task.distance_unit,
      teachers={
          "one-hot": dict(chosen=chosen.chosen, at_edge=chosen.at_edge,
                          accuracy=_stats.summary(
                              [scores[i]["accuracy"] for i in eval_rows])),
          "spectral codebook": dict(
              chosen=cb_chosen.chosen, at_edge=cb_chosen.at_edge,
              accuracy=_stats.summary(
                  [cb_scores[i]["accuracy"] for i in eval_rows]))},
      students={})
  data.teacher_logits = np.asarray(logits, np.float32)
  data.teacher_features = np.asarray(features, np.float32)

  methods = [_methods.METHODS[n] for n in STUDENT_METHODS
             if not options.methods or n in options.methods
             or n in ("one-hot", "spectral")]
  for body in STUDENTS:
    session.progress(f"{task.name}: student {body}")
    student = teacher.sibling(body=body, methods=methods, budget=budget,
                              progress=lambda msg, b=body: session.progress(
                                  f"{msg} [{b}]"))
    selections = student.tune(student.methods)
    per_method = student.evaluate(student.methods, selections, budget.epochs)
    report["students"][body] = dict(
        body=BODIES[body][1], epochs=budget.epochs,
        sizes=f"{data.y_train.shape[1]} / {data.y_val.shape[1]} / "
              f"{data.y_test.shape[1]}",
        methods=student.report(student.methods, selections, per_method,
                               budget.epochs))
  report["settings"] = {}
  # Each block's programs go before the next compiles its own (see
  # ``Compiler.release_used``).
  session.programs.release_used()
  report["settings"]["function matching"] = _function_matching(
      session, task, budget, data, teacher, ex, (params, cfgs, runs),
      (cb_params, cb_cfgs, cb_runs))
  session.programs.release_used()
  report["settings"]["transfer set"] = _transfer_set(
      session, task, budget, data, teacher, ex, pools.result(),
      (params, cfgs, runs), (cb_params, cb_cfgs, cb_runs))
  return report


def _progress(session, label):
  return lambda msg: session.progress(f"{msg} [{label}]")


def _function_matching(session, task, budget, data, teacher, ex, one_hot,
                       codebook) -> dict:
  """Function matching's block (see the module docstring)."""
  options = session.options
  epochs = 2 if options.quick else FM_EPOCHS
  session.progress(f"{task.name}: function matching: teachers on "
                   f"{epochs} epochs of mixed inputs")
  n = data.y_train.shape[1]
  draws = [mixup_draws(s, epochs, n) for s in data.seeds]
  partner = np.stack([d[0] for d in draws], axis=1)
  lam = np.stack([d[1] for d in draws], axis=1)
  methods = [_methods.METHODS[m] for m in _wanted(
      FM_METHODS, options, ("one-hot", "mixup", "spectral-mixup"))]
  # The teachers' forwards on every epoch's mixed inputs are most of the
  # setting's cost: the codebook teacher's only where a method reads it.
  codebook_read = any(m.needs_teacher == "codebook" for m in methods)
  outs = mixed_teacher_outputs(
      ex, [(*one_hot, "logits")]
      + ([(*codebook, "features")] if codebook_read else []), data,
      partner, lam)
  logits = outs[0]
  features = outs[1] if codebook_read else np.broadcast_to(
      np.zeros((1, 1, 1, data.teacher_features.shape[-1]), np.float32),
      logits.shape[:-1] + data.teacher_features.shape[-1:])
  mixed = dataclasses.replace(data, mix_partner=partner, mix_lambda=lam,
                              mixed_logits=logits, mixed_features=features)
  fm_budget = dataclasses.replace(budget, epochs=epochs)
  runner = _runner(session, task, mixed, methods, fm_budget, teacher,
                   _progress(session, "function matching"))
  return dict(
      description="function matching (Beyer et al. 2022, \"Knowledge "
                  "distillation: a good teacher is patient and "
                  "consistent\"): the student matches the teacher's "
                  "distribution at T = 1 on mixup'd inputs, the teacher "
                  "seeing exactly the student's mixed input, on a long "
                  "schedule; issue 21's replication: MLP student 0.678 → "
                  "0.744 at 200 epochs",
      body=BODIES[SETTING_STUDENT][1], epochs=epochs,
      sizes=f"{n} / {data.y_val.shape[1]} / {data.y_test.shape[1]}",
      setting=dict(temperature=1.0, mixup_alpha=MIXUP_ALPHA,
                   partner="uniform over the training set, drawn per "
                           "(seed, epoch, example) before training",
                   epochs=epochs),
      controls="mixup with hard labels (λ e_y + (1 − λ) e_y') and plain "
               "one-hot at the same schedule (spectral-mixup for the "
               "codebook student); plain KD on clean inputs beside them",
      left_out={"dkd": "DKD splits the teacher's distribution into the "
                       "target class and the rest; a mixed input has two "
                       "label classes (weights λ, 1 − λ) and choosing one "
                       "would distil a class that may be the minority of "
                       "the input, so DKD is not run here (it is in the "
                       "transfer set, target: the pseudo-label)"},
      methods=_block([(runner, epochs)], runner))


def _transfer_set(session, task, budget, data, teacher, ex, pool, one_hot,
                  codebook) -> dict:
  """The transfer set's block (see the module docstring)."""
  options = session.options
  epochs = 2 if options.quick else TRANSFER_EPOCHS
  session.progress(f"{task.name}: transfer set: the teachers label "
                   f"{pool.shape[1]} inputs a seed")
  _, pool_logits = ex.outputs_on(*one_hot, pool)
  pool_features, _ = ex.outputs_on(*codebook, pool)
  transfer = transfer_data(data, pool, pool_logits, pool_features)
  kd, dkd, sa_kd = (dataclasses.replace(_methods.METHODS[m], control=c)
                    for m, c in (("kd", "pseudo-labels"),
                                 ("dkd", "pseudo-labels"),
                                 ("sa-kd", "spectral")))
  dkd = dataclasses.replace(dkd, note=dkd.note + "; target class: the true "
                            "label, on the pool the teacher's argmax")
  rows = {
      "pseudo-labels": dataclasses.replace(
          _methods.METHODS["one-hot"], name="pseudo-labels",
          note="Dense head, cross-entropy on labelled ∪ pool: true labels, "
               "and the teacher's argmax on the pool (hard labels only)"),
      "kd": kd, "dkd": dkd,
      "spectral": dataclasses.replace(
          _methods.METHODS["spectral"], control="pseudo-labels",
          note=_methods.METHODS["spectral"].note + ", on labelled ∪ pool "
               "with the pseudo-labels (the control of sa-kd)"),
      "sa-kd": sa_kd}
  names = _wanted(TRANSFER_METHODS, options,
                  ("one-hot", "pseudo-labels", "spectral"))
  t_budget = dataclasses.replace(budget, epochs=epochs)
  progress = _progress(session, "transfer set")
  runner = _runner(session, task, transfer,
                   [rows[m] for m in names if m != "one-hot"], t_budget,
                   teacher, progress)
  # The labelled set alone, for as many optimiser steps.
  n, big = data.y_train.shape[1], transfer.y_train.shape[1]
  steps = runner.steps_per_epoch * epochs
  labelled_epochs = max(1, round(steps / (n // min(budget.batch_size, n))))
  alone = _runner(session, task, data, [dataclasses.replace(
      _methods.METHODS["one-hot"],
      note="Dense head, cross-entropy on the labelled set alone, for as "
           "many optimiser steps as the transfer-set students")],
      dataclasses.replace(budget, epochs=labelled_epochs), teacher, progress)
  return dict(
      description="a transfer set (Hinton et al. 2015; unlabelled inputs "
                  "the teacher labels): fresh MNIST-1D inputs, "
                  f"{POOL_FACTOR}x the labelled set, drawn per seed",
      body=BODIES[SETTING_STUDENT][1], epochs=epochs,
      sizes=f"{n} labelled + {big - n} pool / {data.y_val.shape[1]} / "
            f"{data.y_test.shape[1]}",
      setting=dict(pool_factor=POOL_FACTOR, pool_size=big - n,
                   epochs=epochs, labelled_only_epochs=labelled_epochs),
      controls="pseudo-labels: the same labelled ∪ pool with the teacher's "
               "hard labels (spectral for the codebook student); one-hot: "
               f"the labelled set alone for {labelled_epochs} epochs, as "
               "many optimiser steps",
      left_out={},
      methods=_block([(alone, labelled_epochs), (runner, epochs)],
                     runner))

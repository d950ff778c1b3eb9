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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spectral_targets.bench import _methods, _pipeline, _stats
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


def run(session, task) -> dict:
  """The distill task's report: teachers' accuracies and one block of
  methods per student (``task``: the mnist1d data)."""
  options, data = session.options, session.data(task)
  # Progress lines name this task, not the data set it reuses.
  task = dataclasses.replace(task, name="distill")
  budget = options.budget(task)
  seeds = data.seeds
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
  return report

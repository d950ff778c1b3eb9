"""A whole benchmark run: every task, its references, the budget curve.

``run(names, options, ...)`` builds each task's data (on a background
thread), queues its programs for compilation, and runs the tasks in order
(``_pipeline.TaskRunner``); it returns one report per task.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np

from spectral_targets.bench import (
  QUICK_TRAIN_LIMIT,
  _distill,
  _methods,
  _pipeline,
  _references,
  _shift,
  _tasks,
  _timing,
)
from spectral_targets.bench._compile import Compiler
from spectral_targets.bench._execute import SeedData
from spectral_targets.bench._bodies import BODIES

#: The methods of every task (hierarchy tasks add ``hxe``).
MAIN_METHODS = ("one-hot", "smooth-labels", "kernel-soft-labels", "cosine",
                "random-codebook", "simplex", "spectral", "spectral-small",
                "online-soft-labels", "online-codebook")
#: Training budgets of the MNIST-1D budget curve (its main budget is one).
BUDGET_CURVE = (5, 100)
BUDGET_METHODS = ("one-hot", "cosine", "simplex", "spectral")
#: Batch size per task.
BATCH = {"mnist1d": 64}


@dataclasses.dataclass
class Options:
  """What the command line sets.

  seeds: evaluation seeds per task; quick: a smoke run; epochs: override
  every task's budget; methods: restrict the methods (one-hot and cosine,
  the references of the paired differences, are always kept).
  """
  seeds: int = 5
  quick: bool = False
  epochs: int | None = None
  methods: tuple[str, ...] | None = None
  search: str = "cross"

  def budget(self, task) -> _pipeline.Budget:
    epochs = self.epochs or task.epochs
    if self.quick:
      return _pipeline.Budget(
          seeds=self.seeds, epochs=self.epochs or 2, batch_size=64,
          learning_rates=(1e-2, 2e-2), knob_grids=False, chunk=16,
          search=self.search)
    return _pipeline.Budget(seeds=self.seeds, epochs=epochs,
                            batch_size=BATCH.get(task.name, 128),
                            search=self.search)




def task_methods(task, options: Options) -> list:
  names = list(MAIN_METHODS)
  if task.tree is not None:
    names.insert(3, "hxe")
  if options.methods:
    keep = set(options.methods) | {"one-hot", "cosine"}
    names = [n for n in names if n in keep]
  return [_methods.METHODS[n] for n in names]


def _draw(task, seeds, quick):
  splits = [task.draw(s) for s in seeds]
  if quick:
    splits = [_tasks.subsample(s, QUICK_TRAIN_LIMIT) for s in splits]
  C = task.num_classes
  distances = (np.zeros((len(seeds), C, C)) if task.distances is None
               else np.broadcast_to(task.distances, (len(seeds), C, C)))
  return SeedData.stack(seeds, splits, distances)


#: The tasks, in the order they run and are reported. ``distill`` uses the
#: mnist1d task's data; ``hierarchy-shift`` reuses the hierarchy task's
#: results as its ρ = 0 when both run.
TASK_ORDER = ("mnist1d", "digits", "hierarchy", "ordinal", "distill",
              "hierarchy-shift")


def run(names, options: Options, *, progress, on_epoch,
        on_task=lambda name, report: None) -> dict:
  """Runs the tasks ``names``; returns {name: report} (and hands each to
  ``on_task`` as it finishes)."""
  base = {"distill": "mnist1d", "hierarchy-shift": "hierarchy"}
  tasks = {}
  for name in names:
    task = _tasks.TASKS[base.get(name, name)]()
    tasks[name] = (dataclasses.replace(task, epochs=options.epochs)
                   if options.epochs else task)
  reports = {}
  with Compiler() as programs, concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix="bench-data") as pool:

    def draw(task, seeds):
      return pool.submit(_draw, task, seeds, options.quick)

    drawn = {}
    for name, task in tasks.items():
      if name == "hierarchy-shift":
        continue
      budget = options.budget(task)
      key = base.get(name, name)
      if key not in drawn:
        drawn[key] = draw(task, list(budget.tuning_seeds) + budget.eval_seeds)
    kw = dict(programs=programs, progress=progress, on_epoch=on_epoch)
    for name, task in tasks.items():
      if name == "distill":
        reports[name] = _distill.run(
            task, options, dataclasses.replace(drawn["mnist1d"].result()),
            **kw)
      elif name == "hierarchy-shift":
        reports[name] = {"shift": _shift.run(
            options, draw=lambda t, s: draw(t, s).result(),
            hierarchy_report=reports.get("hierarchy"), **kw)}
      else:
        reports[name] = run_task(task, options,
                                 dataclasses.replace(drawn[name].result()),
                                 **kw)
      on_task(name, reports[name])
  return reports


def run_task(task, options: Options, data: SeedData, *, programs, progress,
             on_epoch) -> dict:
  budget = options.budget(task)
  runner = _pipeline.runner_for(task, options, task_methods(task, options),
                                data, programs=programs, progress=progress,
                                on_epoch=on_epoch)
  selections, method_reports = runner.run()
  d = data
  report = dict(
      description=task.description, construction=task.construction,
      num_classes=task.num_classes, body=BODIES[task.body][1],
      sizes=f"{d.y_train.shape[1]} / {d.y_val.shape[1]} / "
            f"{d.y_test.shape[1]}",
      epochs=budget.epochs, seeds=budget.seeds,
      tuning_seeds=list(budget.tuning_seeds), ks=list(task.ks),
      distance_unit=task.distance_unit,
      kernel="true: given with the task" if task.kernel is not None else
             "estimated per seed: cosine similarity of a one-hot model's "
             "class means on the validation split",
      small_d={str(s): runner.small_d[s] for s in budget.eval_seeds},
      left_out=runner.notes, methods=method_reports, references={})
  if not options.quick:
    progress(f"{task.name}: step timing")
    first = data.index(budget.eval_seeds[0])
    ratios = _timing.step_time_ratios(
        task, runner, selections, runner.methods,
        x=data.x_train[first][:budget.batch_size],
        y=data.y_train[first][:budget.batch_size], rounds=8, steps=25)
    for name, r in method_reports.items():
      r["summary"]["step_time_ratio"] = {"mean": ratios[name], "std": None,
                                         "n": 1}
  report["references"] = _references.for_task(
      task, options, runner, method_reports, programs, progress, on_epoch)
  if task.name == "mnist1d":
    report["budget_curve"] = budget_curve(runner, options, method_reports,
                                          progress)
  return report


def budget_curve(runner, options, main_reports, progress) -> dict:
  """Accuracy and NLL of a few methods after each budget, each budget
  tuned on its own; the main budget's figures come from the main run."""
  methods = [m for m in runner.methods if m.name in BUDGET_METHODS]
  budgets = (1, 3) if options.quick else BUDGET_CURVE
  curve = {str(runner.budget.epochs): {
      m.name: {"summary": {k: main_reports[m.name]["summary"][k]
                           for k in ("accuracy", "nll")},
               "chosen": main_reports[m.name]["chosen"]} for m in methods}}
  for epochs in budgets:
    progress(f"{runner.task.name}: budget curve, {epochs} epochs")
    _, reports = runner.run(methods, epochs)
    curve[str(epochs)] = {
        name: {"summary": {k: r["summary"][k] for k in ("accuracy", "nll")},
               "chosen": r["chosen"], "at_edge": r["at_edge"],
               "per_seed": {k: r["per_seed"][k] for k in ("accuracy",
                                                          "nll")}}
        for name, r in reports.items()}
  return curve

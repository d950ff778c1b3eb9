"""The benchmark's tasks, in the order they run and are reported: one row
each, carrying how it runs.

A row names its data (a ``_tasks`` recipe, drawn once per run and shared by
rows with the same data) and its ``run(session, task) -> report`` hook.
Most tasks run ``Standard``: every method tuned and evaluated on the task's
body, step timing, then the row's references and extras. Adding a task is
adding a row here (``_run`` and the command line read the names from
``TASKS``).

Two tasks read data the user brings: ``cifar100`` (the official archive,
from ``--data-dir``; a row of ``TASKS`` that runs only when named) and
``user`` (the ``--data`` file; ``rows`` adds its row). ``rows`` binds both
to the run's inputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from spectral_targets.bench import (
  _cifar100,
  _diamonds,
  _distill,
  _methods,
  _pipeline,
  _references,
  _shift,
  _tasks,
  _timing,
  _user_data,
)
from spectral_targets.bench._bodies import BODIES
from spectral_targets.bench._budget_curve import budget_curve

if TYPE_CHECKING:
  from spectral_targets.bench._run import Session

#: The methods of a standard task.
MAIN_METHODS = ("one-hot", "smooth-labels", "kernel-soft-labels", "cosine",
                "random-codebook", "simplex", "spectral", "spectral-small",
                "online-soft-labels", "online-codebook")
#: A task with a class tree adds hierarchical cross-entropy.
TREE_METHODS = MAIN_METHODS[:3] + ("hxe",) + MAIN_METHODS[3:]
#: The methods of an ordinal task: the spectral codebook of its graded
#: kernel is the horseshoe; SORD the field's soft-label baseline, CORAL and
#: regression on the grade index its ordinal baselines.
ORDINAL_METHODS = ("one-hot", "kernel-soft-labels", "sord", "coral",
                   "regression", "cosine", "simplex", "spectral")
#: Epochs of hierarchy-400 (400 training samples a class).
HIERARCHY_400_EPOCHS = 5
#: The methods of hierarchy-400, the data-size axis: the learned heads,
#: the fixed codebooks (random, simplex, spectral) and the losses that read
#: the taxonomy, the comparisons that tell a fixed head's regularisation
#: from its structure. Label smoothing, the small spectral codebook and the
#: online methods run at 40 a class only (ten times the data made this task
#: 16 of the default run's minutes with all eleven).
HIERARCHY_400_METHODS = ("one-hot", "kernel-soft-labels", "hxe", "cosine",
                         "random-codebook", "simplex", "spectral")
#: The references of the paired differences: always run.
ALWAYS = ("one-hot", "cosine")

#: ``hook(session, task, runner, main_reports)`` of a standard task.
Extra = Callable[..., object]


@dataclasses.dataclass(frozen=True)
class Standard:
  """How a standard task runs: ``methods`` tuned and evaluated on the
  task's body (``_pipeline.TaskRunner``), their step times (not with
  ``--quick``), then ``references`` (each returns ``{title: block}``) and
  ``extras`` (report key -> hook); ``crm``: report every method under
  CRM's expected-cost decision against one-hot + CRM (a task whose
  distances are a real taxonomy's)."""
  methods: tuple[str, ...] = MAIN_METHODS
  references: tuple[Extra, ...] = ()
  extras: tuple[tuple[str, Extra], ...] = ()
  crm: bool = False

  def __call__(self, session: Session, task) -> dict:
    options = session.options
    data = session.data(task)
    budget = options.budget(task)
    names = [n for n in self.methods if not options.methods
             or n in options.methods or n in ALWAYS]
    runner = _pipeline.runner_for(session, task,
                                  [_methods.METHODS[n] for n in names], data)
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
        left_out=runner.notes, methods=method_reports, references={},
        crm=self.crm)
    if not options.quick:
      session.progress(f"{task.name}: step timing")
      first = data.index(budget.eval_seeds[0])
      ratios = _timing.step_time_ratios(
          task, runner, selections, runner.methods,
          x=data.x_train[first][:budget.batch_size],
          y=data.y_train[first][:budget.batch_size], rounds=8, steps=25)
      for name, r in method_reports.items():
        r["summary"]["step_time_ratio"] = {"mean": ratios[name], "std": None,
                                           "n": 1}
    for references in self.references:
      report["references"].update(references(session, task, runner,
                                             method_reports))
    for key, extra in self.extras:
      report[key] = extra(session, task, runner, method_reports)
    return report


@dataclasses.dataclass(frozen=True)
class BenchTask:
  """One task of the suite.

  Attributes:
    name: id on the command line and in the report.
    run: ``run(session, task) -> report``.
    data: the ``_tasks`` recipe of its data (``task``), or None where the
      task draws its own (``session.draw``).
    default: whether a run without ``--tasks`` runs it (``--quick`` runs
      every task that needs no input).
    needs: the ``run_benchmark`` argument its data come from (cifar100:
      ``data_dir``), or None; such a task runs only when named.
  """
  name: str
  run: Callable[[Session, _tasks.Task | None], dict]
  data: Callable[[], _tasks.Task] | None = None
  default: bool = True
  needs: str | None = None


def _user_run(session: Session, task) -> dict:
  """The user task: the standard methods (with hierarchical cross-entropy
  when the file came with a hierarchy), a nearest class mean and a
  logistic regression as references, and the CRM block when the
  distances are the user's (a hierarchy, a kernel or distances in the
  file) rather than 1 − an estimated kernel."""
  return Standard(TREE_METHODS if task.tree is not None else MAIN_METHODS,
                  references=(_references.without_training_loop,),
                  crm=task.distances is not None)(session, task)


def rows(*, data=None, hierarchy=None, body: str | None = None,
         data_dir=None) -> dict[str, BenchTask]:
  """``TASKS`` with the cifar100 row reading ``data_dir`` and, given the
  user's ``data`` file (with its ``hierarchy`` file and probe ``body``),
  the ``user`` row last. The recipes read nothing until called."""
  out = dict(TASKS)
  out["cifar100"] = dataclasses.replace(
      TASKS["cifar100"],
      data=functools.partial(_cifar100.cifar100_task, data_dir))
  if data is not None:
    out[_user_data.TASK_NAME] = BenchTask(
        _user_data.TASK_NAME, _user_run, functools.partial(
            _user_data.user_task, data, hierarchy=hierarchy,
            body=body or "linear"), default=False, needs="data")
  return out


TASKS = {t.name: t for t in (
    BenchTask("mnist1d", Standard(
        references=(_references.paper_baselines,),
        extras=(("budget_curve", budget_curve),)), _tasks.mnist1d_task),
    BenchTask("digits", Standard(), _tasks.digits_task),
    BenchTask("hierarchy", Standard(
        TREE_METHODS, references=(_references.without_training_loop,),
        crm=True),
        _tasks.hierarchy_task),
    # The data-size axis: ten times the training samples a class (the
    # epochs cut to 5: about 1.7 times the sample-steps of 40 a class x 30
    # epochs).
    BenchTask("hierarchy-400", Standard(
        HIERARCHY_400_METHODS, references=(_references.without_training_loop,),
        crm=True), lambda: _tasks.hierarchy_task(
            epochs=HIERARCHY_400_EPOCHS, name="hierarchy-400",
            train_per_class=400)),
    BenchTask("ordinal", Standard(ORDINAL_METHODS), _tasks.ordinal_task,
              default=False),
    BenchTask("diamonds-colour", Standard(
        ORDINAL_METHODS, references=(_references.ordinal_references,)),
              lambda: _diamonds.diamonds_task("colour")),
    BenchTask("diamonds-price-decile", Standard(
        ORDINAL_METHODS, references=(_references.ordinal_references,)),
              lambda: _diamonds.diamonds_task("price-decile")),
    # The mnist1d task's data; a wide teacher and two small students.
    BenchTask("distill", _distill.run, _tasks.mnist1d_task),
    # Reuses the hierarchy task's report as its ρ = 0 when both run. Not in
    # the default run (three more hierarchy tasks, 11 of its minutes, for a
    # question the issues' budget does not cover): ``--tasks hierarchy
    # hierarchy-shift``; its recording is results/hierarchy-shift.json.
    BenchTask("hierarchy-shift", _shift.run, default=False),
    # The official archive, from --data-dir (nothing is downloaded).
    # No references: a logistic regression on 45,000 x 3,072 pixels would
    # outlast the methods.
    BenchTask("cifar100", Standard(TREE_METHODS, crm=True),
              _cifar100.cifar100_task, default=False, needs="data_dir"),
)}

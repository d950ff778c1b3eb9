"""A whole benchmark run: the tasks of ``_suite`` in order.

``run_benchmark`` is the command: it checks the arguments, runs the tasks
(``run``) and writes the report. ``run(names, options, ...)`` draws every
task's data on a background thread, then runs the tasks in order, each by
its row's hook (``_suite.BenchTask.run``) with the ``Session`` they share;
it returns one report per task.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import os
import pathlib
import platform
import sys
import time
from typing import Any

import numpy as np

from spectral_targets.bench import (
  _pipeline,
  _suite,
  _tasks,
  _tuning,
  _user_data,
)
from spectral_targets.bench._compile import Compiler
from spectral_targets.bench._execute import SeedData
from spectral_targets.bench._methods import METHODS
from spectral_targets.bench._tasks import InputError

BENCH_REQUIREMENTS = ("mnist1d", "sklearn", "threadpoolctl", "tqdm", "matplotlib")
INSTALL_HINT = ('pip install "spectral-targets[bench]"   (from a checkout: '
                'pip install -e ".[bench]")')
#: --quick trains on about this many samples per task.
QUICK_TRAIN_LIMIT = 300


@dataclasses.dataclass
class Options:
  """What the command line sets.

  seeds: evaluation seeds per task; quick: a smoke run; epochs: override
  every task's budget; methods: restrict the methods (one-hot and cosine,
  the references of the paired differences, are always kept); search: how
  hyperparameters are searched (``_tuning.SEARCHES``).
  """
  seeds: int = 5
  quick: bool = False
  epochs: int | None = None
  methods: tuple[str, ...] | None = None
  search: str = "halving"

  def budget(self, task) -> _pipeline.Budget:
    epochs = self.epochs or task.epochs
    if self.quick:
      return _pipeline.Budget(
          seeds=self.seeds, epochs=self.epochs or 2, batch_size=64,
          learning_rates=(1e-2, 2e-2), knob_grids=False, chunk=16,
          search=self.search, eta=2, edges=False, pad_to_chunk=True,
          rank_after=0)
    return _pipeline.Budget(seeds=self.seeds, epochs=epochs,
                            batch_size=task.batch_size, search=self.search)


def _draw(task, seeds, quick):
  splits = [task.draw(s) for s in seeds]
  if quick:
    splits = [_tasks.subsample(s, QUICK_TRAIN_LIMIT) for s in splits]
  C = task.num_classes
  distances = (np.zeros((len(seeds), C, C)) if task.distances is None
               else np.broadcast_to(task.distances, (len(seeds), C, C)))
  return SeedData.stack(seeds, splits, distances)


class Session:
  """What the tasks of one run share: the options, the compiler, the
  progress hooks, the data drawn (each task's once, on a background
  thread) and the reports of the tasks that ran."""

  def __init__(self, options: Options, programs: Compiler, pool, *,
               progress, on_epoch):
    self.options, self.programs, self._pool = options, programs, pool
    self.progress, self.on_epoch = progress, on_epoch
    self.reports: dict[str, dict] = {}
    self._drawn: dict[str, concurrent.futures.Future] = {}

  def draw(self, task, seeds) -> concurrent.futures.Future:
    """The ``SeedData`` of ``task`` on ``seeds``, drawn in the background."""
    return self._pool.submit(_draw, task, seeds, self.options.quick)

  def background(self, fn, *args) -> concurrent.futures.Future:
    """``fn(*args)`` on the data thread (host work that can overlap
    training, e.g. drawing a transfer pool)."""
    return self._pool.submit(fn, *args)

  def prefetch(self, task):
    """Starts drawing ``task``'s data on its tuning and evaluation seeds
    (once per task name)."""
    if task.name not in self._drawn:
      budget = self.options.budget(task)
      self._drawn[task.name] = self.draw(
          task, list(budget.tuning_seeds) + budget.eval_seeds)

  def data(self, task) -> SeedData:
    """``task``'s data (a fresh ``SeedData`` per call: runners write their
    kernels' distances and teacher outputs into it)."""
    self.prefetch(task)
    return dataclasses.replace(self._drawn[task.name].result())


def recipes(names, options: Options, rows=None) -> list[tuple]:
  """``[(row, task), ...]``: the rows ``names`` of ``rows`` (default
  ``_suite.TASKS``), in its order, with their data recipes built (None for
  a row that draws its own). A recipe of the user's data (``user``,
  ``cifar100``) reads and checks it here, raising ``_tasks.InputError``
  before any training."""
  rows = _suite.TASKS if rows is None else rows
  out = []
  for row in (row for name, row in rows.items() if name in names):
    task = row.data() if row.data is not None else None
    if task is not None and options.epochs:
      task = dataclasses.replace(task, epochs=options.epochs)
    out.append((row, task))
  return out


def run(names, options: Options, *, progress, on_epoch,
        on_task=lambda name, report: None, rows=None,
        prepared=None) -> dict:
  """Runs the tasks ``names`` (in ``rows`` order, default
  ``_suite.TASKS``; or the ``prepared`` ``recipes``); returns {name:
  report} (and hands each to ``on_task`` as it finishes)."""
  if prepared is None:
    prepared = recipes(names, options, rows)
  rows = [row for row, _ in prepared]
  tasks = [task for _, task in prepared]
  with Compiler() as programs, concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix="bench-data") as pool:
    session = Session(options, programs, pool, progress=progress,
                      on_epoch=on_epoch)
    for task in tasks:
      if task is not None:
        session.prefetch(task)
    for row, task in zip(rows, tasks):
      started = time.perf_counter()
      report = row.run(session, task)
      # Seconds from this task's start to its report (background
      # compilation and data drawing overlap the task before it).
      report["wall_s"] = round(time.perf_counter() - started, 1)
      session.reports[row.name] = report
      on_task(row.name, report)
      # The programs of a finished task go (the kernel's memory maps of
      # a whole run's programs exceed what Linux allows a process).
      programs.release_used()
  return session.reports


def missing_requirements() -> list[str]:
  import importlib.util
  return [name for name in BENCH_REQUIREMENTS
          if importlib.util.find_spec(name) is None]


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


class _Progress:
  """Progress on stderr: tqdm bars on a terminal, one plain line per phase
  otherwise (CI logs get no carriage returns or cursor movement)."""

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self.start = time.perf_counter()
    if self.tty:
      from tqdm.auto import tqdm
      self.bar = tqdm(unit="epoch", desc="bench", file=self.stream,
                      leave=False)

  def phase(self, message: str):
    if self.tty:
      self.bar.set_description_str(message)
    else:
      elapsed = time.perf_counter() - self.start
      print(f"[{elapsed:6.0f} s] {message}", file=self.stream, flush=True)

  def epoch(self):
    if self.tty:
      self.bar.update(1)

  def close(self):
    if self.tty:
      self.bar.close()


def run_benchmark(*, tasks=None, seeds: int = 5, quick: bool = False,
                  epochs: int | None = None, methods=None,
                  search: str = "halving",
                  out: str | os.PathLike = "bench-results",
                  data: str | os.PathLike | None = None,
                  hierarchy: str | os.PathLike | None = None,
                  body: str | None = None,
                  data_dir: str | os.PathLike | None = None,
                  command: str = "", echo=print) -> dict:
  """Runs the benchmark and writes ``results.json``, ``results.md`` and the
  figures into ``out``; returns the results dict.

  ``quick`` is a smoke test of the whole pipeline, not evidence: tiny
  training sets, two epochs, two learning rates, no knob grids, no steps
  beyond a grid's end (a choice at an end stays flagged ``at_edge``), no
  step timing, every batch of models padded to one compiled size, every
  program compiled at XLA's backend optimisation level 0; its report says
  so at the top (and halves after one epoch of its two: η = 2).
  ``search`` is how hyperparameters are chosen on validation (see
  ``_tuning``): ``"halving"`` (successive halving over every combination of
  the grids, η = 3), ``"grid"`` (every combination at the full budget;
  slower) or ``"cross"`` (learning rate, then the method's knobs, then the
  learning rates next to the choice).

  The user's own data: ``data``, an ``.npz`` file (``_user_data``), adds
  the ``user`` task (the same protocol on a ``body`` probe, ``"linear"``
  by default or ``"mlp"``; ``hierarchy``: a ``PARENT CHILD`` file over its
  classes); without ``tasks`` it is the only task run. ``data_dir`` holds
  the official CIFAR-100 archive the ``cifar100`` task reads (that task
  runs only when named in ``tasks``). Unusable inputs raise
  ``_tasks.InputError`` (naming the argument) before any training.
  """
  missing = missing_requirements()
  if missing:
    raise ModuleNotFoundError(
        f"the benchmark needs {', '.join(missing)}; install them with: "
        f"{INSTALL_HINT}")
  rows = _suite.rows(data=data, hierarchy=hierarchy, body=body,
                     data_dir=data_dir)
  order = list(rows)
  user = [_user_data.TASK_NAME] if data is not None else []
  names = (list(tasks) + user if tasks else user if user
           else [n for n in order if rows[n].needs is None] if quick
           else [n for n in order if rows[n].default])
  unknown = [n for n in names if n not in order]
  if unknown:
    raise ValueError(f"unknown task(s) {unknown}; choose from "
                     f"{[n for n in order if n not in user]}.")
  names = [n for n in order if n in names]
  if data is None:
    for argument, value in (("hierarchy", hierarchy), ("body", body)):
      if value is not None:
        raise InputError(argument, f"--{argument} describes the --data "
                         "file's task; pass --data FILE too")
  if data_dir is not None and "cifar100" not in names:
    raise InputError("data_dir", "only the cifar100 task reads --data-dir; "
                     "name it: --tasks cifar100")
  if methods:
    bad = [m for m in methods if m not in METHODS]
    if bad:
      raise ValueError(f"unknown method(s) {bad}; choose from "
                       f"{list(METHODS)}.")
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}.")
  if epochs is not None and epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  if search not in _tuning.SEARCHES:
    raise ValueError(f"search must be one of {list(_tuning.SEARCHES)}, got "
                     f"{search!r}.")

  import flax
  import jax
  import optax

  import spectral_targets
  from spectral_targets.bench import _report, _training

  started = time.perf_counter()
  options = Options(seeds=seeds, quick=quick, epochs=epochs,
                         methods=tuple(methods) if methods else None,
                         search=search)
  # The user's data are read and checked here, before any training.
  prepared = recipes(names, options, rows)
  meta: dict[str, Any] = dict(
      search=search,
      command=command or "spectral-targets bench", quick=quick, seeds=seeds,
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      machine=f"{cpu_name()}, {os.cpu_count()} cores, "
              f"{jax.devices()[0].platform}",
      versions=f"spectral_targets {spectral_targets.__version__}, jax "
               f"{jax.__version__}, optax {optax.__version__}, flax "
               f"{flax.__version__}, python {sys.version.split()[0]}",
      recipe=_training.RECIPE,
      methods={name: m.note for name, m in METHODS.items()})
  inputs = {k: str(v) for k, v in (("data", data), ("hierarchy", hierarchy),
                                   ("body", body), ("data_dir", data_dir))
            if v is not None}
  if inputs:
    meta["inputs"] = inputs
  if quick:
    echo(_report.SMOKE_BANNER + "\n")
  echo("\n".join(_report.legend(meta["methods"])))
  progress = _Progress()
  # BLAS on one thread for the whole run. JAX's CPU LAPACK kernels (eigh,
  # svd: the scorer's collapse metrics, refresh_codebook's procrustes)
  # call OpenBLAS, whose own threads fight XLA's for the cores: on 2 cores
  # a 99 x 99 procrustes took 0.5 s with two BLAS threads and 1-10 ms with
  # one. threadpoolctl comes with scikit-learn (the bench extra).
  finished_tasks: dict[str, dict] = {}

  def finished(name, report):
    # Printed as it finishes, and kept on disk: a run stopped part-way
    # leaves results.partial.json with the tasks it finished.
    echo(_report.section(name, report))
    finished_tasks[name] = report
    _report.write_partial(pathlib.Path(out), {
        "meta": dict(meta, wall_time=f"{time.perf_counter() - started:.0f} s"
                     " (so far)"), "tasks": finished_tasks})

  import threadpoolctl
  try:
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
      reports = run(names, options, prepared=prepared,
                    progress=progress.phase, on_epoch=progress.epoch,
                    on_task=finished)
  finally:
    progress.close()
  meta["wall_time"] = f"{time.perf_counter() - started:.0f} s"
  results = {"meta": meta, "tasks": reports}
  paths = _report.write(pathlib.Path(out), results)
  echo("wrote " + ", ".join(str(p) for p in paths))
  return results

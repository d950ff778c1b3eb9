"""The main job: codebook heads and distillation benchmarked against one-hot.

``spectral-targets bench`` (or ``python -m spectral_targets bench``) runs
``run_benchmark``; it needs the ``bench`` extra (mnist1d, scikit-learn,
tqdm, matplotlib).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import os
import pathlib
import platform
import sys

BENCH_REQUIREMENTS = ("mnist1d", "sklearn", "tqdm", "matplotlib")
#: --quick trains on at most this many samples per task (a smoke test).
QUICK_TRAIN_LIMIT = 500
INSTALL_HINT = ('pip install "spectral-targets[bench]"   (from a checkout: '
                'pip install -e ".[bench]")')


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


def run_benchmark(*, tasks=None, seeds: int = 5, quick: bool = False,
                  out: str | os.PathLike = "bench-results",
                  command: str = "", echo=print) -> dict:
  """Runs the benchmark and writes ``results.json``, ``results.md`` and a
  PNG per task into ``out``; returns the results dict.

  ``quick`` is a smoke test of the whole pipeline, not evidence: at most
  ``QUICK_TRAIN_LIMIT`` training samples per task, a few epochs, one codebook
  scale, short timing, every program compiled at XLA's backend optimisation
  level 0, and no MNIST-1D reference models.

  Every program a task runs is compiled ahead of time on worker threads
  (``_compile.Compiler``), queued while the previous task trains; MNIST-1D,
  whose generator takes seconds of Python, is built on a background thread
  and runs last. The report keeps the order of ``tasks``.
  """
  missing = missing_requirements()
  if missing:
    raise ModuleNotFoundError(
        f"the benchmark needs {', '.join(missing)}; install them with: "
        f"{INSTALL_HINT}")
  import jax
  from tqdm.auto import tqdm

  from spectral_targets.bench import _compile, _report, _run, _tasks
  from spectral_targets.bench._tasks import TASKS

  names = list(TASKS) if not tasks else list(tasks)
  unknown = [n for n in names if n not in TASKS]
  if unknown:
    raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}.")
  epochs = {"mnist1d": 25, "digits": 40, "hierarchy": 30, "ordinal": 60}
  if quick:
    epochs = {"mnist1d": 3, "digits": 5, "hierarchy": 3, "ordinal": 8}
  import flax
  import optax

  import spectral_targets
  results = {"meta": dict(
      command=command or "spectral-targets bench", quick=quick, seeds=seeds,
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      machine=f"{cpu_name()}, {os.cpu_count()} cores, "
              f"{jax.devices()[0].platform}",
      versions=f"spectral_targets {spectral_targets.__version__}, jax "
               f"{jax.__version__}, optax {optax.__version__}, flax "
               f"{flax.__version__}, python {sys.version.split()[0]}"),
      "tasks": {}}
  order = sorted(names, key=lambda name: name == "mnist1d")  # see above

  def build(name):
    task = TASKS[name]()
    return _tasks.subsample(task, QUICK_TRAIN_LIMIT) if quick else task

  def budget_of(name):
    return _run.Budget(seeds=seeds, epochs=epochs[name],
                       scales=(16.0,) if quick else _run.SCALES,
                       timing_rounds=2 if quick else 10,
                       timing_steps=5 if quick else 30, fast_compile=quick,
                       mnist1d_reference=not quick)

  # Progress messages per task, one more for the MNIST-1D reference models.
  total = sum(_run.PHASES + (name == "mnist1d" and not quick)
              for name in names)
  reports = {}
  with tqdm(total=total, unit="run", desc="bench",
            file=sys.stderr, position=0) as bar, \
       tqdm(unit="epoch", desc="epochs", file=sys.stderr, position=1,
            leave=False) as epoch_bar, \
       _compile.Compiler() as programs, \
       concurrent.futures.ThreadPoolExecutor(
           1, thread_name_prefix="bench-data") as data:
    built = {name: data.submit(build, name) for name in order}
    seen: set[int] = set()
    runs: dict[str, _run.TaskRun] = {}

    def progress(msg, epochs):
      bar.set_postfix_str(msg)
      bar.update(1)
      seen.clear()
      epoch_bar.reset(total=epochs)

    def on_epoch(index):
      # Called once per vmapped model; count each epoch once.
      index = int(index)
      if index not in seen:
        seen.add(index)
        epoch_bar.update(1)

    def prepare(name):
      budget = budget_of(name)
      runs[name] = _run.TaskRun(
          built.pop(name).result(), budget,
          functools.partial(progress, epochs=budget.epochs), on_epoch,
          programs=programs)
      runs[name].submit()

    prepare(order[0])
    for i, name in enumerate(order):
      if i + 1 < len(order):
        prepare(order[i + 1])
      reports[name] = runs.pop(name).run()
      echo(_report.task_table(name, reports[name]))
  results["tasks"] = {name: reports[name] for name in names}
  paths = _report.write(pathlib.Path(out), results)
  echo("wrote " + ", ".join(str(p) for p in paths))
  return results

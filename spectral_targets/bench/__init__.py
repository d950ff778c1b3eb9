"""The main job: codebook heads and distillation benchmarked against one-hot.

``spectral-targets bench`` (or ``python -m spectral_targets bench``) runs
``run_benchmark``; it needs the ``bench`` extra (mnist1d, scikit-learn,
tqdm, matplotlib).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys

BENCH_REQUIREMENTS = ("mnist1d", "sklearn", "tqdm", "matplotlib")
#: --quick trains on at most this many samples per task (a smoke test).
QUICK_TRAIN_LIMIT = 1500
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

  ``quick`` trains for fewer epochs (the figures are then a smoke test, not
  evidence).
  """
  missing = missing_requirements()
  if missing:
    raise ModuleNotFoundError(
        f"the benchmark needs {', '.join(missing)}; install them with: "
        f"{INSTALL_HINT}")
  import jax
  from tqdm.auto import tqdm

  from spectral_targets.bench import _report, _run, _tasks
  from spectral_targets.bench._tasks import TASKS

  from spectral_targets.bench import _models
  _models.COMPILER_OPTIONS.clear()
  if quick:
    _models.COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
  names = list(TASKS) if not tasks else list(tasks)
  unknown = [n for n in names if n not in TASKS]
  if unknown:
    raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}.")
  epochs = {"mnist1d": 30, "digits": 40, "hierarchy": 40, "ordinal": 60}
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
  # Progress messages per task, one more for the MNIST-1D reference models.
  total = sum(_run.PHASES + (name == "mnist1d") for name in names)
  with tqdm(total=total, unit="run", desc="bench",
            file=sys.stderr, position=0) as bar, \
       tqdm(unit="epoch", desc="epochs", file=sys.stderr, position=1,
            leave=False) as epoch_bar:
    for name in names:
      task = TASKS[name]()
      if quick:
        task = _tasks.subsample(task, QUICK_TRAIN_LIMIT)
      budget = _run.Budget(seeds=seeds, epochs=epochs[name],
                           scales=(16.0,) if quick else _run.SCALES,
                           timing_rounds=2 if quick else 7,
                           timing_steps=5 if quick else 20)
      seen = set()

      def progress(msg):
        bar.set_postfix_str(msg)
        bar.update(1)
        seen.clear()
        epoch_bar.reset(total=budget.epochs)

      def on_epoch(index):
        # Called once per vmapped model; count each epoch once.
        index = int(index)
        if index not in seen:
          seen.add(index)
          epoch_bar.update(1)

      results["tasks"][name] = _run.TaskRun(task, budget, progress,
                                            on_epoch).run()
      echo(_report.task_table(name, results["tasks"][name]))
  paths = _report.write(pathlib.Path(out), results)
  echo("wrote " + ", ".join(str(p) for p in paths))
  return results

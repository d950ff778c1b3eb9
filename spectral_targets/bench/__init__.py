"""The main job: codebook heads, soft targets and distillation benchmarked
against one-hot and against the controls that isolate each ingredient.

``spectral-targets bench`` (or ``python -m spectral_targets bench``) runs
``run_benchmark``; it needs the ``bench`` extra (mnist1d, scikit-learn,
tqdm, matplotlib). Where things live:

- ``_tasks``: the data sets, drawn anew per seed;
- ``_methods``: the methods and the knobs each tunes;
- ``_tuning``: how every method is tuned (the same protocol for all);
- ``_bodies``: the model bodies; ``_config``: a method as data;
- ``_training``: parameters, forward pass, the one loss, the epoch trainer;
- ``_execute``: many models trained at once in vmapped programs;
- ``_pipeline``: one task from data to per-seed test metrics;
- ``_stats``: how a win is decided (paired intervals over seeds);
- ``_references``, ``_timing``: reference classifiers, step timing;
- ``_report``, ``_figures``: tables, JSON, PNGs.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys
import time
from typing import Any

#: How hyperparameters are searched (``--search``).
SEARCHES = ("cross", "grid")
BENCH_REQUIREMENTS = ("mnist1d", "sklearn", "threadpoolctl", "tqdm", "matplotlib")
INSTALL_HINT = ('pip install "spectral-targets[bench]"   (from a checkout: '
                'pip install -e ".[bench]")')
#: The tasks, in the order they run and are reported (``_run.TASK_ORDER``).
TASK_ORDER = ("mnist1d", "digits", "hierarchy", "ordinal", "distill",
              "hierarchy-shift")
#: Every method's name (``_methods.METHODS``; listed here so the command
#: line can check names without importing JAX).
METHOD_NAMES = ("one-hot", "smooth-labels", "kernel-soft-labels", "cosine",
                "random-codebook", "simplex", "spectral", "spectral-small",
                "hxe", "online-soft-labels", "online-codebook", "kd", "dkd",
                "sa-kd")
#: --quick trains on about this many samples per task (``_run``).
QUICK_TRAIN_LIMIT = 300


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
                  search: str = "cross",
                  out: str | os.PathLike = "bench-results",
                  command: str = "", echo=print) -> dict:
  """Runs the benchmark and writes ``results.json``, ``results.md`` and the
  figures into ``out``; returns the results dict.

  ``quick`` is a smoke test of the whole pipeline, not evidence: tiny
  training sets, two epochs, two learning rates, no knob grids, no step
  timing, every program compiled at XLA's backend optimisation level 0; its
  report says so at the top. ``search`` is how hyperparameters are chosen
  on validation: ``"cross"`` (learning rate, then the method's knobs, then
  the learning rates next to the choice) or ``"grid"`` (every combination;
  slower, see ``_tuning``).
  """
  missing = missing_requirements()
  if missing:
    raise ModuleNotFoundError(
        f"the benchmark needs {', '.join(missing)}; install them with: "
        f"{INSTALL_HINT}")
  names = list(TASK_ORDER) if not tasks else list(tasks)
  unknown = [n for n in names if n not in TASK_ORDER]
  if unknown:
    raise ValueError(f"unknown task(s) {unknown}; choose from "
                     f"{list(TASK_ORDER)}.")
  names = [n for n in TASK_ORDER if n in names]
  if methods:
    bad = [m for m in methods if m not in METHOD_NAMES]
    if bad:
      raise ValueError(f"unknown method(s) {bad}; choose from "
                       f"{list(METHOD_NAMES)}.")
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}.")
  if epochs is not None and epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  if search not in SEARCHES:
    raise ValueError(f"search must be one of {list(SEARCHES)}, got "
                     f"{search!r}.")

  import flax
  import jax
  import optax

  import spectral_targets
  from spectral_targets.bench import _report, _run
  from spectral_targets.bench._methods import METHODS

  started = time.perf_counter()
  options = _run.Options(seeds=seeds, quick=quick, epochs=epochs,
                         methods=tuple(methods) if methods else None,
                         search=search)
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
      methods={name: m.note for name, m in METHODS.items()})
  if quick:
    echo(_report.SMOKE_BANNER + "\n")
  echo("\n".join(_report.legend(meta["methods"])))
  progress = _Progress()
  # BLAS on one thread for the whole run. JAX's CPU LAPACK kernels (eigh,
  # svd: the scorer's collapse metrics, refresh_codebook's procrustes)
  # call OpenBLAS, whose own threads fight XLA's for the cores: on 2 cores
  # a 99 x 99 procrustes took 0.5 s with two BLAS threads and 1-10 ms with
  # one. threadpoolctl comes with scikit-learn (the bench extra).
  import threadpoolctl
  try:
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
      reports = _run.run(names, options, progress=progress.phase,
                         on_epoch=progress.epoch,
                         on_task=lambda name, report: echo(
                             _report.section(name, report)))
  finally:
    progress.close()
  meta["wall_time"] = f"{time.perf_counter() - started:.0f} s"
  results = {"meta": meta, "tasks": reports}
  paths = _report.write(pathlib.Path(out), results)
  echo("wrote " + ", ".join(str(p) for p in paths))
  return results

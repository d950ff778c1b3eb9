"""The training engine's three speed-ups, measured side by side in one run.

    python benchmarks/engine.py [--out benchmarks/results/engine.json]

On the hierarchy task's first rung (every method of the task over its full
grid, the two tuning seeds: 468 models), one epoch of training under

- the universal program: every model computes every head and every loss
  term of any method (weights 0 where unused), the batches one after
  another (the engine before 9b078d9);
- the program of each batch's own terms (``_training.active_terms``), the
  batches one after another;
- the same, two batches side by side (``_pipeline.side_by_side``, the
  default);

each after its programs are compiled (compile times reported apart), and
the two scorers tuning can rank by: every metric (``Executor.score``) or
the validation metrics alone (``Executor.validate``, the default). Same
process, same data, same runs; the parameters each way are compared, so a
speed-up that changed the training would show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from spectral_targets.bench import _config, _methods, _pipeline, _run, _suite
from spectral_targets.bench import _tasks, _tuning
from spectral_targets.bench._compile import Compiler
from spectral_targets.bench._execute import Executor

EPOCHS = 2


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def runner(task, data, programs, *, specialise):
  ex = Executor(task, data, body=task.body, features=task.num_classes - 1,
                batch_size=task.batch_size, programs=programs,
                specialise=specialise, tree=task.tree)
  budget = _pipeline.Budget(seeds=2, epochs=task.epochs)
  methods = [_methods.METHODS[m] for m in _suite.TREE_METHODS]
  r = _pipeline.TaskRunner(task, budget, methods, data, ex)
  r.estimate_kernels()
  r.build_codebooks()
  return r


def measure(r, runs, programs, threads):
  _pipeline.TRAIN_THREADS = threads
  t = time.perf_counter()
  r._batches(runs)  # queues every program of these runs
  programs.wait()
  compile_s = time.perf_counter() - t
  out = r.advance(runs, [None] * len(runs), start=0, until=1)  # warm
  t = time.perf_counter()
  out = r.advance(runs, out, start=1, until=1 + EPOCHS)
  epoch_s = (time.perf_counter() - t) / EPOCHS
  return compile_s, epoch_s, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results/engine.json")
  args = parser.parse_args()
  task = _tasks.hierarchy_task()
  seeds = list(_pipeline.TUNING_SEEDS)
  data = _run._draw(task, seeds, False)
  threads = _pipeline.TRAIN_THREADS
  rows, params = {}, {}
  with Compiler() as programs:
    for name, specialise, k in (("universal program, in sequence", False, 1),
                                ("own terms, in sequence", True, 1),
                                ("own terms, two side by side", True,
                                 threads)):
      r = runner(task, data, programs, specialise=specialise)
      runs = [run for m in r.methods
              for run in r.runs(m, _tuning.full_grid(m), seeds, task.epochs)]
      compile_s, epoch_s, out = measure(r, runs, programs, k)
      rows[name] = {"compile_s": round(compile_s, 1),
                    "epoch_s": round(epoch_s, 2)}
      params[name] = out
      print(f"{name:32s} compile {compile_s:5.1f} s   epoch {epoch_s:6.2f} s",
            flush=True)
    stacked = _config.stack([state[0] for state, _ in out])
    cfgs = _config.stack([c for _, c in out])
    ex = r.ex
    ex.submit_score()
    ex.submit_validate()
    programs.wait()
    timed = {}
    for name, fn in (("score", ex.score), ("validate", ex.validate)):
      fn(stacked, cfgs, runs[:16])
      t = time.perf_counter()
      fn(stacked, cfgs, runs)
      timed[name] = round(time.perf_counter() - t, 2)
  _pipeline.TRAIN_THREADS = threads
  base = rows["universal program, in sequence"]["epoch_s"]
  for row in rows.values():
    row["speed-up"] = round(base / row["epoch_s"], 2)
  # The same models each way (float32 rounding of differently fused
  # programs at most).
  names = list(params)
  worst = 0.0
  for a, b in zip(jax.tree_util.tree_leaves([state[0] for state, _ in
                                             params[names[0]]]),
                  jax.tree_util.tree_leaves([state[0] for state, _ in
                                             params[names[-1]]])):
    worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
  result = {
      "command": "python benchmarks/engine.py",
      "machine": f"{cpu_model()}, {os.cpu_count()} cores",
      "task": "hierarchy, first rung: every method's full grid on the two "
              f"tuning seeds ({len(runs)} models), one epoch",
      "training": rows,
      "scoring_s": {f"{k} ({len(runs)} models)": v for k, v in timed.items()},
      "max_abs_parameter_difference": worst,
  }
  print(json.dumps(result, indent=2))
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


if __name__ == "__main__":
  main()

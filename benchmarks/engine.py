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

each after its programs are compiled (compile times reported apart; the
side-by-side variant reuses the programs of the one before), one warm epoch
each, then ``ROUNDS`` epochs of each variant interleaved (medians), and the
two scorers tuning can rank by: every metric (``Executor.score``) or
the validation metrics alone (``Executor.validate``, the default). Same
process, same data, same runs; the parameters each way are compared, so a
speed-up that changed the training would show.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from spectral_targets.bench import _config, _methods, _pipeline, _run, _suite
from spectral_targets.bench import _tasks, _tuning
from spectral_targets.bench._compile import Compiler
from spectral_targets.bench._execute import Executor

#: Timed epochs of each variant, interleaved (after one warm epoch each).
ROUNDS = 3


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


def compile_all(r, runs, programs):
  """Seconds to compile every program of ``runs`` (queued by ``_batches``)."""
  t = time.perf_counter()
  r._batches(runs)
  programs.wait()
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results/engine.json")
  args = parser.parse_args()
  task = _tasks.hierarchy_task()
  seeds = list(_pipeline.TUNING_SEEDS)
  data = _run._draw(task, seeds, False)
  threads = _pipeline.TRAIN_THREADS
  with Compiler() as programs:
    universal = runner(task, data, programs, specialise=False)
    own = runner(task, data, programs, specialise=True)
    runs = [run for m in own.methods
            for run in own.runs(m, _tuning.full_grid(m), seeds, task.epochs)]
    compile_s = {"universal": compile_all(universal, runs, programs),
                 "own": compile_all(own, runs, programs)}
    variants = {"universal program, in sequence": (universal, 1),
                "own terms, in sequence": (own, 1),
                "own terms, two side by side": (own, threads)}
    # One warm epoch each, then the variants' epochs interleaved, so that
    # a change of the machine's speed during the run falls on all of them.
    state, times = {}, {name: [] for name in variants}
    for e in range(1 + ROUNDS):
      for name, (r, k) in variants.items():
        _pipeline.TRAIN_THREADS = k
        t = time.perf_counter()
        state[name] = r.advance(runs, state.get(name, [None] * len(runs)),
                                start=e, until=e + 1)
        if e:
          times[name].append(time.perf_counter() - t)
      if e:
        print(f"round {e}: " + ", ".join(f"{n} {times[n][-1]:.1f} s"
                                         for n in variants), flush=True)
    _pipeline.TRAIN_THREADS = threads
    rows = {name: {"compile_s": round(compile_s[
                       "universal" if r is universal else "own"], 1),
                   "epoch_s": round(float(np.median(times[name])), 2),
                   "epoch_s_each_round": [round(x, 2) for x in times[name]]}
            for name, (r, _) in variants.items()}
    params = state
    out = state["own terms, two side by side"]
    stacked = _config.stack([s[0] for s, _ in out])
    cfgs = _config.stack([c for _, c in out])
    r = own
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
  # The same models each way, up to float32 rounding of differently fused
  # programs (which a few epochs at a large learning rate amplify): per
  # model, the largest parameter change relative to that model's largest
  # parameter, and its validation accuracy under the two programs.
  names = list(params)
  first, last = params[names[0]], params[names[-1]]
  rel = []
  for (sa, _), (sb, _) in zip(first, last):
    la, lb = (jax.tree_util.tree_leaves(s[0]) for s in (sa, sb))
    big = max(float(np.max(np.abs(np.asarray(a)))) for a in la)
    rel.append(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(la, lb)) / big)
  rel = np.asarray(rel)
  acc = [np.asarray([m["val_accuracy"] for m in ex.validate(
      _config.stack([s[0] for s, _ in p]), _config.stack([c for _, c in p]),
      runs)]) for p in (first, last)]
  dacc = np.abs(acc[0] - acc[1])
  same = {
      "compared": f"{names[0]} vs {names[-1]}, after {1 + ROUNDS} epochs",
      "relative_parameter_difference": {
          "median": float(np.median(rel)),
          "p99": float(np.quantile(rel, 0.99)), "max": float(rel.max())},
      "models_with_other_validation_accuracy": int((dacc > 0).sum()),
      "max_validation_accuracy_difference": float(dacc.max()),
      "validation_inputs_a_seed": int(r.data.y_val.shape[1]),
      # Threads change the order batches run in, not what they compute.
      "side_by_side_identical_to_in_sequence": all(
          np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
              jax.tree_util.tree_leaves([s[0] for s, _ in params[names[1]]]),
              jax.tree_util.tree_leaves([s[0] for s, _ in params[names[2]]]))),
  }
  result = {
      "command": "python benchmarks/engine.py",
      "machine": f"{_run.cpu_name()}, {os.cpu_count()} cores",
      "task": "hierarchy, first rung: every method's full grid on the two "
              f"tuning seeds ({len(runs)} models), one epoch",
      "training": rows,
      "scoring_s": {f"{k} ({len(runs)} models)": v for k, v in timed.items()},
      "same_models": same,
  }
  print(json.dumps(result, indent=2))
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


if __name__ == "__main__":
  main()

"""Where the program of a batch's own terms and the universal program train
a model differently, epoch by epoch.

    python benchmarks/engine_equivalence.py [--epochs 2]
        [--out benchmarks/results/engine-equivalence.json]

On the hierarchy task's first rung at one tuning seed (every method over its
full grid, 234 models), both programs (``benchmarks/engine.py``) train the
same runs side by side from the same initialisation; after every epoch, per
method, the largest change of any parameter relative to that model's
largest parameter, and the runs where it is not 0. A difference that starts
at float32 rounding (~1e-7) and grows only where the learning rate is large
is the two programs fusing the same arithmetic differently; one that starts
large would be a change of what is computed.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from engine import runner
from spectral_targets.bench import _pipeline, _run, _tasks, _tuning
from spectral_targets.bench._compile import Compiler


def relative_difference(a, b) -> float:
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  big = max(float(np.max(np.abs(np.asarray(x)))) for x in la)
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(la, lb)) / big


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--out",
                      default="benchmarks/results/engine-equivalence.json")
  args = parser.parse_args()
  task = _tasks.hierarchy_task()
  seeds = [_pipeline.TUNING_SEEDS[0]]
  data = _run._draw(task, seeds, False)
  epochs = []
  with Compiler() as programs:
    universal = runner(task, data, programs, specialise=False)
    own = runner(task, data, programs, specialise=True)
    runs = [run for m in own.methods
            for run in own.runs(m, _tuning.full_grid(m), seeds, task.epochs)]
    su = so = [None] * len(runs)
    for e in range(args.epochs):
      su = universal.advance(runs, su, start=e, until=e + 1)
      so = own.advance(runs, so, start=e, until=e + 1)
      rel = [relative_difference(a[0], b[0]) for (a, _), (b, _) in zip(su, so)]
      per_method: dict = {}
      for run, d in zip(runs, rel):
        row = per_method.setdefault(run.method.name,
                                    {"models": 0, "max": 0.0, "differ": []})
        row["models"] += 1
        row["max"] = max(row["max"], d)
        if d > 0:
          row["differ"].append({"hp": run.hp, "relative_difference": d})
      epochs.append({"epoch": e + 1, "per_method": per_method})
      print(f"epoch {e + 1}: " + ", ".join(
          f"{m} {r['max']:.1e}" for m, r in per_method.items()), flush=True)
  result = {"command": "python benchmarks/engine_equivalence.py",
            "machine": _run.cpu_name(),
            "task": f"hierarchy, first rung, seed {seeds[0]}: every method's "
                    f"full grid ({len(runs)} models)",
            "epochs": epochs}
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


if __name__ == "__main__":
  main()

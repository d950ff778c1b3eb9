"""The ``hierarchy-shift`` task: what a wrong taxonomy costs.

The hierarchy task's generator, but before the inputs are drawn a fraction
ρ ∈ {0, 0.25, 0.5, 1} of the leaves is moved to random other leaf parents
(which leaves and where varies with the seed), while every method keeps the
WordNet tree: its kernel for the spectral codebook and the soft labels, the
tree itself for hierarchical cross-entropy. ρ = 0 is the ``hierarchy``
task. Mistake severity is measured in the WordNet tree (the taxonomy the
user holds). Two references need no training loop: a nearest class mean and
logistic regression.
"""

from __future__ import annotations

from spectral_targets.bench import _methods, _pipeline, _references, _tasks

SHIFTS = (0.0, 0.25, 0.5, 1.0)
METHODS = ("one-hot", "cosine", "simplex", "spectral", "kernel-soft-labels",
           "hxe")


def run(session, task=None) -> dict:
  """{"shift": {ρ: block}}: per-method summaries and paired differences at
  each ρ. Its ρ = 0 row is the ``hierarchy`` task's report when that ran in
  this session (the same task); ``task`` is unused (each ρ draws its own
  data)."""
  options = session.options
  hierarchy_report = session.reports.get("hierarchy")
  shifts = (0.0, 1.0) if options.quick else SHIFTS
  out = {}
  for rho in shifts:
    if rho == 0 and hierarchy_report is not None:
      out[str(rho)] = _block(hierarchy_report["methods"],
                             hierarchy_report["references"])
      continue
    task = _tasks.hierarchy_task(shift=rho,
                                 name=f"hierarchy-shift ρ={rho:g}")
    budget = options.budget(task)
    methods = [_methods.METHODS[n] for n in METHODS
               if not options.methods or n in options.methods
               or n in ("one-hot", "cosine")]
    data = session.draw(task, list(budget.tuning_seeds)
                        + budget.eval_seeds).result()
    runner = _pipeline.runner_for(session, task, methods, data)
    _, reports = runner.run()
    refs = _references.without_training_loop(session, task, runner, reports)
    out[str(rho)] = _block(reports, refs)
  return {"shift": out}


def _block(method_reports, references) -> dict:
  block = {"methods": {
      name: {k: r[k] for k in ("summary", "per_seed", "chosen", "at_edge",
                               "control") if k in r}
      | {k: v for k, v in r.items() if k.startswith("vs ")}
      for name, r in method_reports.items() if name in METHODS}}
  for ref in references.values():
    block["references"] = {label: {"accuracy": p["accuracy"],
                                   "severity": p["severity"]}
                           for label, p in ref.get("points", {}).items()}
  return block

"""The budget curve: a few methods' accuracy and NLL after each training
budget, every budget tuned on its own (the mnist1d task's extra)."""

from __future__ import annotations

#: Training budgets of the curve (the task's main budget is one more).
BUDGET_CURVE = (5, 100)
BUDGET_METHODS = ("one-hot", "cosine", "simplex", "spectral")


def budget_curve(session, task, runner, main_reports) -> dict:
  """{epochs: {method: summaries, choice}}; the main budget's figures come
  from the main run."""
  methods = [m for m in runner.methods if m.name in BUDGET_METHODS]
  budgets = (1, 3) if session.options.quick else BUDGET_CURVE
  curve = {str(runner.budget.epochs): {
      m.name: {"summary": {k: main_reports[m.name]["summary"][k]
                           for k in ("accuracy", "nll")},
               "chosen": main_reports[m.name]["chosen"]} for m in methods}}
  for epochs in budgets:
    session.progress(f"{task.name}: budget curve, {epochs} epochs")
    _, reports = runner.run(methods, epochs)
    curve[str(epochs)] = {
        name: {"summary": {k: r["summary"][k] for k in ("accuracy", "nll")},
               "chosen": r["chosen"], "at_edge": r["at_edge"],
               "per_seed": {k: r["per_seed"][k] for k in ("accuracy",
                                                          "nll")}}
        for name, r in reports.items()}
  return curve

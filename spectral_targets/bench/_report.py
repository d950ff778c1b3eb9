"""Tables, JSON and figures of a benchmark run.

Every table says which direction is better (↑ / ↓), shows the spread over
seeds as a sample standard deviation (none with one seed), and states a
method's effect only as a paired difference with its 95% interval.
"""

from __future__ import annotations

import json
import math
import pathlib

from spectral_targets.bench import _stats
from spectral_targets.bench._config import needs_probabilities

#: (key, header, format) of the per-method metric columns (their
#: directions: ``_stats.DIRECTION``).
COLUMNS = (("accuracy", "accuracy", "{:.3f}"),
           ("severity", "mistake severity", "{:.3f}"),
           ("mae", "MAE", "{:.3f}"),
           ("median_mae", "MAE, posterior median", "{:.3f}"),
           ("qwk", "QWK", "{:.3f}"),
           ("nll", "NLL", "{:.3f}"),
           ("ece", "ECE", "{:.3f}"),
           ("ece_calibrated", "ECE, T-scaled", "{:.3f}"),
           ("nc1", "NC1 (train)", "{:.3g}"),
           ("between_condition", "κ(Σ_B)", "{:.2g}"),
           ("step_time_ratio", "step time / one-hot", "{:.2f}"))

#: Paired comparisons shown: (metric, header).
PAIRED = (("accuracy", "Δ accuracy"), ("severity", "Δ severity"),
          ("nll", "Δ NLL"))

SMOKE_BANNER = ("**SMOKE RUN (`--quick`): tiny data, few epochs, shortened "
                "grids, no steps beyond a grid's end. These numbers test the "
                "pipeline; they are not results.**")

LEGEND = """\
How to read the tables:
- ↑ higher is better, ↓ lower is better. Values are mean ± sample std
  (ddof = 1) over the evaluation seeds on the test split; seeds vary the
  data and the initialisation and are shared by every method.
- mistake severity: mean class distance between true and predicted class
  over the mistakes only — read it beside accuracy (fewer, harsher mistakes
  can score worse than many mild ones); hdist@k: mean distance of the top-k
  predictions to the true class (Bertinetto et al. 2020), in the task's
  distance unit.
- + CRM: the method's own probabilities re-ranked by expected cost,
  argmin_k Σ_j p_j D_jk (Karthik et al. 2021), a decision at no training
  cost; "vs one-hot + CRM" pairs a method against that post-hoc control.
- ordinal tasks: MAE in grades of the argmax, MAE of the posterior median
  (the Bayes decision for absolute error), QWK: quadratic weighted kappa.
- n/a: the metric reads predicted probabilities and the method has none
  (regression on the grade index): not applicable, and no paired
  difference is formed on it.
- ECE: expected calibration error, 15 bins; "T-scaled": after a temperature
  fitted on the validation split (Guo et al. 2017).
- NC1 (train): tr(Σ_W Σ_B⁺)/C of the training features the head sees (unit
  features for cosine and codebook heads), in C − 1 dimensions for every
  method (— where a head sees fewer); κ(Σ_B): the condition number of the
  C − 1 between-class modes the pseudo-inverse divides by (a large κ makes
  NC1 unstable across seeds). It is capped at 1/ε of float32 (2²³ ≈
  8.4e+06: a smallest mode at rounding level); "≥ … (k/n capped)" marks k
  of n seeds at the cap, so the mean is a lower bound, not a measurement.
- Δ columns: paired difference of the method minus one-hot, and minus its
  control (the method that lacks only its ingredient: the learned cosine
  classifier for a fixed codebook, the same student without distillation),
  with a 95% Student-t interval over seeds; ✔ / ✘ mark an interval that
  excludes 0 on the better / worse side (by the metric's direction), no
  mark a tie: a win or a loss is claimed only there.
- Hyperparameters were chosen on the validation split of separate tuning
  seeds; a learning rate or scale chosen at an end of its grid was followed
  one step (×2 or ÷2) beyond it; ⚠ marks a choice still at the end of what
  was tried (the optimum may lie outside)."""


#: κ(Σ_B)'s ceiling: ``_execute`` divides by max(λ_min, ε·λ_max), so a
#: smallest between-class mode at float32 rounding reads as 1/ε = 2²³.
KAPPA_CAP = 2.0 ** 23


#: What a table shows for a metric that does not apply to a method.
NOT_APPLICABLE = "n/a"


def _applies(r: dict, metric: str) -> bool:
  """Whether ``metric`` applies to the method of report ``r`` (a metric
  that reads probabilities does not apply to a method without them)."""
  return r.get("probabilistic", True) or not needs_probabilities(metric)


def _cell(summary, fmt, per_seed=None):
  if summary is None or summary.get("mean") is None:
    return "—"
  text = fmt.format(summary["mean"])
  if summary.get("std") is not None:
    text += " ± " + fmt.format(summary["std"])
  if per_seed is not None:
    capped = sum(1 for x in per_seed
                 if x is not None and x >= KAPPA_CAP * (1 - 1e-6))
    if capped == len(per_seed):
      text = f"≥ {fmt.format(KAPPA_CAP)} ({capped}/{capped} capped)"
    elif capped:  # the mean is a lower bound
      text = f"≥ {text} ({capped}/{len(per_seed)} capped)"
  return text


def _diff(d, metric="accuracy", fmt="{:+.3f}"):
  if d is None or d.get("mean") is None:
    return "—"
  if d.get("low") is None:
    return fmt.format(d["mean"])
  mark = {"better": " ✔", "worse": " ✘"}.get(_stats.verdict(d, metric), "")
  low, high = (_bound(d[k], fmt, excludes_zero=bool(mark))
               for k in ("low", "high"))
  return f"{fmt.format(d['mean'])} [{low}, {high}]{mark}"


def _bound(x, fmt, *, excludes_zero):
  """An interval's end; one that excludes 0 never prints as ±0.000."""
  text = fmt.format(x)
  digits = 4
  while excludes_zero and x != 0 and float(text) == 0 and digits < 9:
    text, digits = f"{x:+.{digits}f}", digits + 1
  return text


def methods_table(report: dict) -> list[str]:
  ks = report.get("ks", [])
  columns = list(COLUMNS[:2]) + [(f"hdist@{k}", f"hdist@{k}", "{:.3f}")
                                 for k in ks] + list(COLUMNS[2:])
  columns = [c for c in columns
             if any(c[0] in r["summary"] for r in report["methods"].values())]
  lines = ["| method | " + " | ".join(f"{h} {_stats.arrow(key)}".strip()
                                     for key, h, _ in columns)
           + " |", "|---" * (len(columns) + 1) + "|"]
  for name, r in report["methods"].items():
    cells = [_cell(r["summary"].get(key), fmt,
                   r.get("per_seed", {}).get(key)
                   if key == "between_condition" else None)
             if _applies(r, key) else NOT_APPLICABLE
             for key, _, fmt in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def paired_table(report: dict) -> list[str]:
  """Each method against one-hot, and against its control (the method
  that lacks only its ingredient) where that is not one-hot."""
  heads = ([f"{h} vs one-hot" for _, h in PAIRED] + ["control"]
           + [f"{h} vs control" for _, h in PAIRED])
  lines = ["| method | " + " | ".join(heads) + " |",
           "|---" * (len(heads) + 1) + "|"]
  for name, r in report["methods"].items():
    control = r.get("control", "one-hot")
    cells = [_diff(r.get("vs one-hot", {}).get(key), key)
             if _applies(r, key) else NOT_APPLICABLE for key, _ in PAIRED]
    if control != "one-hot" and f"vs {control}" in r:
      cells += [control] + [_diff(r[f"vs {control}"].get(key), key)
                            if _applies(r, key) else NOT_APPLICABLE
                            for key, _ in PAIRED]
    else:
      cells += ["—"] * (len(PAIRED) + 1)
    if any(c not in ("—", NOT_APPLICABLE) for c in cells):
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def crm_table(report: dict) -> list[str]:
  """Each method's predictions re-ranked by expected cost (CRM, Karthik et
  al. 2021), and each method against one-hot + CRM: as it predicts, and
  with CRM on both sides."""
  ks = report.get("ks", [])
  own = [("crm_accuracy", "accuracy + CRM", "{:.3f}"),
         ("crm_severity", "severity + CRM", "{:.3f}")] + [
      (f"crm_hdist@{k}", f"hdist@{k} + CRM", "{:.3f}") for k in ks]
  heads = ([f"{h} {_stats.arrow(key)}" for key, h, _ in own]
           + ["Δ accuracy vs one-hot + CRM", "Δ severity vs one-hot + CRM",
              "Δ accuracy, both + CRM", "Δ severity, both + CRM"])
  lines = ["| method | " + " | ".join(heads) + " |",
           "|---" * (len(heads) + 1) + "|"]
  for name, r in report["methods"].items():
    if "crm_accuracy" not in r["summary"]:
      continue
    cells = [_cell(r["summary"].get(key), fmt) if _applies(r, key)
             else NOT_APPLICABLE for key, _, fmt in own]
    control = r.get("vs one-hot + CRM", {})
    cells += [_diff(control.get(k), k) for k in ("accuracy", "severity")]
    both = r.get("vs one-hot", {})
    cells += [_diff(both.get(k), k) if _applies(r, k) else NOT_APPLICABLE
              for k in ("crm_accuracy", "crm_severity")]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def tuning_table(report: dict) -> list[str]:
  lines = ["| method | chosen | mean validation accuracy | settings tried |",
           "|---|---|---|---|"]
  for name, r in report["methods"].items():
    chosen = ", ".join(
        f"{k} {v:g}{' ⚠' if k in r['at_edge'] else ''}"
        for k, v in sorted(r["chosen"].items()))
    best = max(t["mean_val_accuracy"] for t in r["tuning"])
    tried = str(len(r["tuning"]))
    if "halving" in r:  # the cells of each rung, then those at the budget
      tried = (" → ".join(str(len(rung["cells"]))
                          for rung in r["halving"]["rungs"])
               + f" (η = {r['halving']['eta']}); {tried} at the budget")
    lines.append(f"| {name} | {chosen} | {best:.3f} | {tried} |")
  return lines


def task_section(name: str, report: dict) -> str:
  lines = [f"### {name}: {report['description']}", "",
           f"{report['construction']}. C = {report['num_classes']}; "
           f"train / val / test = {report['sizes']} per seed; "
           f"{report['epochs']} epochs; {report['seeds']} evaluation seeds, "
           f"tuning seeds {report['tuning_seeds']}; body: {report['body']}; "
           f"distances: {report['distance_unit']}.", ""]
  lines += methods_table(report) + [""]
  for method, why in report.get("left_out", {}).items():
    lines += [f"{method}: {why}.", ""]
  paired = paired_table(report)
  if len(paired) > 2:
    lines += ["Paired differences (95% interval over seeds):", ""]
    lines += paired + [""]
  if report.get("crm"):
    lines += ["Post-hoc control: the same probabilities re-ranked by "
              "expected cost, argmin_k Σ_j p_j D_jk (CRM, Karthik et al. "
              "2021), paired against one-hot + CRM (95% interval):", ""]
    lines += crm_table(report) + [""]
  lines += ["Chosen hyperparameters:", ""] + tuning_table(report) + [""]
  for title, block in report.get("references", {}).items():
    lines += [f"{title}:", "", *block["table"], ""]
  if "budget_curve" in report:
    lines += ["Budget curve (each budget tuned on its own):", "",
              *budget_table(report["budget_curve"]), ""]
  return "\n".join(lines)


def distill_section(name: str, report: dict) -> str:
  t = report["teachers"]
  lines = [f"### {name}: {report['description']}", "",
           f"{report['construction']}. {report['seeds']} evaluation seeds, "
           f"tuning seeds {report['tuning_seeds']}.", "",
           "| teacher | test accuracy ↑ | chosen |", "|---|---|---|"]
  for label, row in t.items():
    chosen = ", ".join(f"{k} {v:g}{' ⚠' if k in row['at_edge'] else ''}"
                       for k, v in sorted(row["chosen"].items()))
    lines.append(f"| {label} | {_cell(row['accuracy'], '{:.3f}')} | "
                 f"{chosen} |")
  lines.append("")
  for block in report["students"].values():
    sub = dict(block, ks=report["ks"])
    lines += [f"#### student: {block['body']} ({block['epochs']} epochs; "
              f"train / val / test = {block['sizes']})", ""]
    lines += methods_table(sub) + ["", "Paired differences (95% interval "
                                   "over seeds):", ""]
    lines += paired_table(sub) + ["", "Chosen hyperparameters:", ""]
    lines += tuning_table(sub) + [""]
  for title, block in report.get("settings", {}).items():
    sub = dict(block, ks=report["ks"])
    setting = ", ".join(f"{k} {v}" for k, v in block["setting"].items())
    lines += [f"#### where distillation is known to work: {title}", "",
              f"{block['description']}. Student: {block['body']}; "
              f"{block['epochs']} epochs; train / val / test = "
              f"{block['sizes']}. Fixed before the run: {setting}. "
              f"Controls: {block['controls']}.", ""]
    lines += methods_table(sub) + [""]
    for method, why in block.get("left_out", {}).items():
      lines += [f"{method}: left out: {why}.", ""]
    lines += ["Paired differences (95% interval over seeds):", ""]
    lines += paired_table(sub) + ["", "Chosen hyperparameters:", ""]
    lines += tuning_table(sub) + [""]
  return "\n".join(lines)


def shift_section(name: str, report: dict) -> str:
  shift = report["shift"]
  rhos = sorted(shift, key=float)
  methods = list(shift[rhos[0]]["methods"])
  lines = [f"### {name}: a taxonomy that is partly wrong", "",
           "The hierarchy task's generator with a fraction ρ of the leaves "
           "moved to random other leaf parents before the inputs are drawn; "
           "every method keeps the WordNet tree. Severity in WordNet LCA "
           "levels. Mean ± std over seeds; Δ vs one-hot with its 95% "
           "interval.", "",
           "| method | " + " | ".join(
               f"accuracy ↑ ρ={r} | severity ↓ ρ={r}" for r in rhos) + " |",
           "|---" * (2 * len(rhos) + 1) + "|"]
  for m in methods:
    cells = []
    for r in rhos:
      s = shift[r]["methods"][m]["summary"]
      cells += [_cell(s["accuracy"], "{:.3f}"), _cell(s["severity"],
                                                     "{:.3f}")]
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  for label in shift[rhos[0]].get("references", {}):
    cells = []
    for r in rhos:
      p = shift[r].get("references", {}).get(label)
      cells += (["—", "—"] if p is None else
                [f"{p['accuracy']:.3f}", f"{p['severity']:.3f}"])
    lines.append(f"| {label} (reference) | " + " | ".join(cells) + " |")
  lines += ["", "| method | " + " | ".join(
      f"Δ accuracy vs one-hot ρ={r}" for r in rhos) + " |",
            "|---" * (len(rhos) + 1) + "|"]
  for m in methods:
    if m == "one-hot":
      continue
    lines.append(f"| {m} | " + " | ".join(
        _diff(shift[r]["methods"][m].get("vs one-hot", {}).get("accuracy"),
              "accuracy")
        for r in rhos) + " |")
  lines += ["", "| method | " + " | ".join(
      f"chosen ρ={r}" for r in rhos) + " |", "|---" * (len(rhos) + 1) + "|"]
  for m in methods:
    lines.append(f"| {m} | " + " | ".join(
        ", ".join(f"{k} {v:g}{' ⚠' if k in shift[r]['methods'][m]['at_edge'] else ''}"
                  for k, v in sorted(shift[r]["methods"][m]["chosen"].items()))
        for r in rhos) + " |")
  return "\n".join(lines) + "\n"


def section(name: str, report: dict) -> str:
  """The markdown section of any task's report."""
  if "students" in report:
    return distill_section(name, report)
  if "shift" in report:
    return shift_section(name, report)
  return task_section(name, report)


def budget_table(curve: dict) -> list[str]:
  budgets = sorted(curve, key=int)
  methods = list(curve[budgets[0]])
  lines = ["| method | " + " | ".join(
      f"accuracy ↑ @{b} | NLL ↓ @{b}" for b in budgets) + " |",
           "|---" * (2 * len(budgets) + 1) + "|"]
  for m in methods:
    cells = []
    for b in budgets:
      s = curve[b][m]["summary"]
      cells += [_cell(s["accuracy"], "{:.3f}"), _cell(s["nll"], "{:.3f}")]
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return lines


def header(meta: dict) -> list[str]:
  lines = ["# spectral-targets bench", ""]
  if meta.get("quick"):
    lines += [SMOKE_BANNER, ""]
  lines += [f"Command: `{meta['command']}`  ", f"Date: {meta['date']}  ",
            f"Machine: {meta['machine']}  ", f"Versions: {meta['versions']}  ",
            f"Hyperparameter search: {meta.get('search', 'cross')}  ",
            *([f"Training recipe (every method): {meta['recipe']['optimizer']}"
               f"; {meta['recipe']['schedule']}, warmup_epochs = "
               f"{meta['recipe']['warmup_epochs']} ({meta['recipe']['origin']})"
               "  "] if "recipe" in meta else []),
            f"Wall time: {meta.get('wall_time', '—')}", ""]
  return lines


def legend(methods: dict) -> list[str]:
  lines = ["Methods:", ""]
  lines += [f"- **{name}**: {note}" for name, note in methods.items()]
  return lines + ["", LEGEND, ""]


def write(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
  """results.json, results.md and the figures; returns the paths."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "results.json", out / "results.md"]
  paths[0].write_text(json.dumps(_jsonable(results), indent=1,
                                 allow_nan=False))
  (out / PARTIAL).unlink(missing_ok=True)
  md = header(results["meta"]) + legend(results["meta"]["methods"])
  for name, report in results["tasks"].items():
    md.append(section(name, report))
  paths[1].write_text("\n".join(md))
  from spectral_targets.bench import _figures
  paths += _figures.plot(out, results)
  return paths


#: What a run writes after each task, so that a run stopped part-way keeps
#: the tasks it finished (removed when the full results are written).
PARTIAL = "results.partial.json"


def write_partial(out: pathlib.Path, results: dict) -> pathlib.Path:
  """``results`` so far (the tasks finished) as ``out/results.partial.json``,
  written atomically (a temporary file, then renamed)."""
  out.mkdir(parents=True, exist_ok=True)
  path, tmp = out / PARTIAL, out / (PARTIAL + ".tmp")
  tmp.write_text(json.dumps(_jsonable(results), indent=1, allow_nan=False))
  tmp.replace(path)
  return path


def _jsonable(x):
  """NaN and inf become None (JSON has no NaN); tuples become lists."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


#: The methods the README's summary shows, per task kind.
SUMMARY_METHODS = ("one-hot", "cosine", "simplex", "spectral",
                   "kernel-soft-labels", "hxe")
#: ... on an ordinal task (scored by MAE and QWK): the field's baselines
#: and the horseshoe (spectral codes of the graded kernel).
ORDINAL_SUMMARY_METHODS = ("one-hot", "sord", "coral", "regression",
                           "kernel-soft-labels", "simplex", "spectral")


def _is_ordinal(report: dict) -> bool:
  methods = report.get("methods") or {}
  return any("mae" in r["summary"] for r in methods.values())


def _accuracy_cells(r: dict) -> list[str]:
  """A method's accuracy, its paired difference against one-hot and
  against its control (named; empty where the control is one-hot)."""
  control = r.get("control", "one-hot")
  vs_control = (_diff(r[f"vs {control}"]["accuracy"], "accuracy")
                + f" ({control})" if control != "one-hot"
                and f"vs {control}" in r else "")
  return [_cell(r["summary"]["accuracy"], "{:.3f}"),
          _diff(r.get("vs one-hot", {}).get("accuracy"), "accuracy"),
          vs_control]


def summary_table(results: dict) -> str:
  """The README's summary of a run: per classification task, accuracy and
  mistake severity side by side, each with its paired difference against
  one-hot, and each codebook head's accuracy against the learned cosine
  classifier (its control); then the ordinal tasks by MAE and quadratic
  weighted kappa (``ordinal_summary_table``) and the distillation settings
  (``distill_summary_table``). No method is singled out as best."""
  lines = ["| task | method | accuracy ↑ | Δ vs one-hot | Δ vs control | "
           "severity ↓ | Δ vs one-hot |", "|---" * 7 + "|"]
  for task, report in results["tasks"].items():
    if "methods" not in report or _is_ordinal(report):
      continue
    for name in SUMMARY_METHODS:
      r = report["methods"].get(name)
      if r is None:
        continue
      lines.append(" | ".join([
          f"| {task}", name, *_accuracy_cells(r),
          _cell(r["summary"]["severity"], "{:.3f}"),
          _diff(r.get("vs one-hot", {}).get("severity"), "severity")])
                   + " |")
  out = ["\n".join(lines)]
  ordinal = ordinal_summary_table(results)
  if ordinal:
    out.append(ordinal)
  distill = distill_summary_table(results)
  if distill:
    out.append(distill)
  return "\n\n".join(out)


def ordinal_summary_table(results: dict) -> str:
  """The ordinal tasks: MAE in grades and quadratic weighted kappa of the
  argmax, each with its paired difference against one-hot, the MAE of the
  posterior median (n/a without probabilities) and accuracy. Empty where
  the run has no ordinal task."""
  rows = []
  for task, report in results["tasks"].items():
    if "methods" not in report or not _is_ordinal(report):
      continue
    for name in ORDINAL_SUMMARY_METHODS:
      r = report["methods"].get(name)
      if r is None:
        continue
      vs = r.get("vs one-hot", {})
      median = (_cell(r["summary"]["median_mae"], "{:.3f}")
                if _applies(r, "median_mae") else NOT_APPLICABLE)
      rows.append(" | ".join([
          f"| {task}", name, _cell(r["summary"]["mae"], "{:.3f}"),
          _diff(vs.get("mae"), "mae"), _cell(r["summary"]["qwk"], "{:.3f}"),
          _diff(vs.get("qwk"), "qwk"), median,
          _cell(r["summary"]["accuracy"], "{:.3f}")]) + " |")
  if not rows:
    return ""
  return "\n".join(["| task | method | MAE ↓ | Δ vs one-hot | QWK ↑ | "
                    "Δ vs one-hot | MAE, posterior median ↓ | accuracy ↑ |",
                    "|---" * 8 + "|"] + rows)


def distill_summary_table(results: dict) -> str:
  """The distillation task: per student and setting, each method's test
  accuracy with its paired difference against its control (the method that
  lacks only its ingredient) and against one-hot. Empty where the run has
  no distillation task."""
  rows = []
  for task, report in results["tasks"].items():
    blocks = dict(report.get("students", {}))
    blocks.update(report.get("settings", {}))
    for label, block in blocks.items():
      methods = block["methods"]
      for name, r in methods.items():
        rows.append(" | ".join([f"| {task}: {label}", name,
                                *_accuracy_cells(r)]) + " |")
  if not rows:
    return ""
  return "\n".join(["| task: student or setting | method | accuracy ↑ | "
                    "Δ vs one-hot | Δ vs control |", "|---" * 5 + "|"]
                   + rows)

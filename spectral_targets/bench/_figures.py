"""The benchmark's figures (matplotlib, written as PNG).

- ``<task>.png``: top-1 error against mistake severity, one point per
  method with the seed spread as error bars (Bertinetto et al. 2020's
  plot: severity is never read without the error beside it);
- ``mnist1d-budget.png``: accuracy and NLL after each training budget;
- ``hierarchy-shift.png``: error and severity against the fraction of the
  taxonomy that is wrong.
"""

from __future__ import annotations

import pathlib

from spectral_targets.bench._palette import style

SMOKE_MARK = "SMOKE RUN (--quick): tests the pipeline, not results"


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _mean_std(summary):
  std = summary.get("std")
  return summary["mean"], 0.0 if std is None else std


def _save(fig, path: pathlib.Path, smoke: bool) -> pathlib.Path:
  """Writes the figure; a smoke run's is stamped across, as results.md is."""
  fig.tight_layout()
  if smoke:
    fig.text(0.5, 0.5, SMOKE_MARK, ha="center", va="center", rotation=12,
             fontsize=13, color="#D55E00", alpha=0.75, weight="bold")
  fig.savefig(path, metadata={"Software": None})
  _pyplot().close(fig)
  return path


def error_severity(path: pathlib.Path, name: str, report: dict, *,
                   smoke: bool = False):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.6, 4.6), dpi=110)
  for method, r in report["methods"].items():
    acc, sev = r["summary"]["accuracy"], r["summary"]["severity"]
    if acc["mean"] is None or sev["mean"] is None:
      continue
    a, a_sd = _mean_std(acc)
    s, s_sd = _mean_std(sev)
    colour, marker = style(method)
    ax.errorbar(1 - a, s, xerr=a_sd, yerr=s_sd, fmt=marker, color=colour,
                capsize=3, label=method)
  for ref in report.get("references", {}).values():
    for label, row in ref.get("points", {}).items():
      ax.plot(1 - row["accuracy"], row["severity"], "x", color="0.3")
      ax.annotate(label, (1 - row["accuracy"], row["severity"]), fontsize=7,
                  xytext=(3, 3), textcoords="offset points")
  ax.set_xlabel("top-1 error (lower is better)")
  ax.set_ylabel(f"mistake severity (lower is better)\n"
                f"[{report['distance_unit']}]", fontsize=8)
  ax.set_title(f"{name}: error vs mistake severity (mean ± std, "
               f"{report['seeds']} seeds)", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  return _save(fig, path, smoke)


def budget_curve(path: pathlib.Path, curve: dict, *, smoke: bool = False):
  plt = _pyplot()
  budgets = sorted(curve, key=int)
  methods = list(curve[budgets[0]])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
  for m in methods:
    colour, marker = style(m)
    for ax, key in zip(axes, ("accuracy", "nll")):
      pts = [(int(b), *_mean_std(curve[b][m]["summary"][key]))
             for b in budgets if curve[b][m]["summary"][key]["mean"]
             is not None]
      xs, ys, es = zip(*pts)
      ax.errorbar(xs, ys, yerr=es, marker=marker, color=colour,
                  capsize=3, label=m)
  for ax, label in zip(axes, ("test accuracy (higher is better)",
                              "test NLL (lower is better)")):
    ax.set_xscale("log")
    ax.set_xticks([int(b) for b in budgets], [str(b) for b in budgets])
    ax.set_xlabel("epochs (each budget tuned on its own)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle("mnist1d: accuracy and NLL against the training budget",
               fontsize=10)
  return _save(fig, path, smoke)


def shift_curve(path: pathlib.Path, shift: dict, *, smoke: bool = False):
  """``shift``: {ρ: {"methods": {method: {"summary": {metric: summary}}},
  "references": {label: {"accuracy", "severity"}}}}."""
  plt = _pyplot()
  rhos = sorted(shift, key=float)
  methods = list(shift[rhos[0]]["methods"])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
  for m in methods:
    colour, marker = style(m)
    for ax, key, flip in zip(axes, ("accuracy", "severity"), (True, False)):
      pts = []
      for rho in rhos:
        s = shift[rho]["methods"][m]["summary"][key]
        if s["mean"] is None:
          continue
        mean, sd = _mean_std(s)
        pts.append((float(rho), 1 - mean if flip else mean, sd))
      if pts:
        xs, ys, es = zip(*pts)
        ax.errorbar(xs, ys, yerr=es, marker=marker, color=colour,
                    capsize=3, label=m)
  for j, label in enumerate(shift[rhos[0]].get("references", {})):
    for ax, key, flip in zip(axes, ("accuracy", "severity"), (True, False)):
      ref_pts = [(float(r), shift[r]["references"][label][key])
                 for r in rhos if label in shift[r].get("references", {})]
      xs, ys = zip(*ref_pts)
      ax.plot(xs, [1 - y for y in ys] if flip else ys, ls="--",
              marker="x", color=("0.3", "0.6")[j % 2],
              label=f"{label} (reference)")
  for ax, label in zip(axes, ("top-1 error (lower is better)",
                              "mistake severity, WordNet LCA height "
                              "(lower is better)")):
    ax.set_xlabel("ρ: fraction of leaves moved in the data's tree")
    ax.set_ylabel(label, fontsize=8)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.suptitle("hierarchy-shift: when the taxonomy is partly wrong",
               fontsize=10)
  return _save(fig, path, smoke)


def plot(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
  paths = []
  smoke = bool(results.get("meta", {}).get("quick"))
  for name, report in results["tasks"].items():
    if "methods" in report:
      paths.append(error_severity(out / f"{name}.png", name, report,
                                  smoke=smoke))
    if "budget_curve" in report:
      paths.append(budget_curve(out / f"{name}-budget.png",
                                report["budget_curve"], smoke=smoke))
    if "shift" in report:
      paths.append(shift_curve(out / f"{name}.png", report["shift"],
                               smoke=smoke))
  return paths

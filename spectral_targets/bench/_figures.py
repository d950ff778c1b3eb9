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

# Okabe–Ito, then greys: distinguishable with the common colour-vision
# deficiencies.
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2",
           "#D55E00", "#CC79A7", "#777777", "#BBBBBB", "#444444", "#999933")
MARKERS = "osD^v<>pPX*h"


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _style(i: int) -> dict:
  """The colour and marker of the i-th method of a figure."""
  return dict(marker=MARKERS[i % len(MARKERS)],
              color=PALETTE[i % len(PALETTE)])


def _save(plt, fig, path: pathlib.Path, title: str | None = None):
  """Writes ``fig`` (under ``title``) to ``path`` and closes it."""
  if title is not None:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, metadata={"Software": None})
  plt.close(fig)
  return path


def _mean_std(summary):
  std = summary.get("std")
  return summary["mean"], 0.0 if std is None else std


def error_severity(path: pathlib.Path, name: str, report: dict):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.6, 4.6), dpi=110)
  for i, (method, r) in enumerate(report["methods"].items()):
    acc, sev = r["summary"]["accuracy"], r["summary"]["severity"]
    if acc["mean"] is None or sev["mean"] is None:
      continue
    a, a_sd = _mean_std(acc)
    s, s_sd = _mean_std(sev)
    style = _style(i)
    ax.errorbar(1 - a, s, xerr=a_sd, yerr=s_sd, fmt=style["marker"],
                color=style["color"], capsize=3, label=method)
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
  return _save(plt, fig, path)


def budget_curve(path: pathlib.Path, curve: dict):
  plt = _pyplot()
  budgets = sorted(curve, key=int)
  methods = list(curve[budgets[0]])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
  for i, m in enumerate(methods):
    for ax, key in zip(axes, ("accuracy", "nll")):
      pts = [(int(b), *_mean_std(curve[b][m]["summary"][key]))
             for b in budgets if curve[b][m]["summary"][key]["mean"]
             is not None]
      xs, ys, es = zip(*pts)
      ax.errorbar(xs, ys, yerr=es, capsize=3, label=m, **_style(i))
  for ax, label in zip(axes, ("test accuracy (higher is better)",
                              "test NLL (lower is better)")):
    ax.set_xscale("log")
    ax.set_xticks([int(b) for b in budgets], [str(b) for b in budgets])
    ax.set_xlabel("epochs (each budget tuned on its own)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return _save(plt, fig, path,
               "mnist1d: accuracy and NLL against the training budget")


def shift_curve(path: pathlib.Path, shift: dict):
  """``shift``: {ρ: {"methods": {method: {"summary": {metric: summary}}},
  "references": {label: {"accuracy", "severity"}}}}."""
  plt = _pyplot()
  rhos = sorted(shift, key=float)
  methods = list(shift[rhos[0]]["methods"])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=110)
  for i, m in enumerate(methods):
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
        ax.errorbar(xs, ys, yerr=es, capsize=3, label=m, **_style(i))
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
  return _save(plt, fig, path,
               "hierarchy-shift: when the taxonomy is partly wrong")


def plot(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
  paths = []
  for name, report in results["tasks"].items():
    if "methods" in report:
      paths.append(error_severity(out / f"{name}.png", name, report))
    if "budget_curve" in report:
      paths.append(budget_curve(out / f"{name}-budget.png",
                                report["budget_curve"]))
    if "shift" in report:
      paths.append(shift_curve(out / f"{name}.png", report["shift"]))
  return paths

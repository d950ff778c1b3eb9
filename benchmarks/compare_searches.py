"""Successive halving against the exhaustive grid, from two recorded runs.

    spectral-targets bench --out runs/halving                 # the default run
    spectral-targets bench --search grid --out runs/grid      # same tasks
    python benchmarks/compare_searches.py runs/halving/results.json \\
        runs/grid/results.json --tasks mnist1d hierarchy \\
        --out benchmarks/results/halving-vs-grid

For every method of the named tasks: the cell each search chose, whether
they agree, where the halving's choice ranks among the grid's cells by the
grid's own validation criterion (mean validation accuracy, then NLL), the
test accuracy of both choices and the paired difference over the evaluation
seeds (halving − grid, 95% t-interval). Also both runs' wall times (whole
run and per task, where recorded) and their tuning model-epochs (models ×
epochs trained while tuning, edge steps included). Writes ``OUT.json`` and
``OUT.md``; nothing here is measured, only read from the two runs.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from spectral_targets.bench import _stats


def _blocks(report: dict) -> dict[str, dict]:
  """``{label: methods}`` of a task report (a distill report holds one
  block per student or setting)."""
  if "methods" in report:
    return {"": report["methods"]}
  return {label: block["methods"]
          for label, block in report.get("students", {}).items()}


def _rank(trial: dict) -> tuple:
  nll = float(np.mean(trial["val_nll"]))
  return (-float(np.mean(trial["val_accuracy"])),
          nll if np.isfinite(nll) else np.inf)


def _tuning_model_epochs(method: dict, epochs: int, seeds: int) -> int:
  """Models × epochs trained while tuning one method: successive halving's
  rungs (cells × the rung's epochs), else every trial at the full budget;
  plus the edge steps (trials beyond the last rung's cells), all on
  ``seeds`` tuning seeds."""
  record = method.get("halving")
  trials = method["tuning"]
  if not record:
    return len(trials) * epochs * seeds
  total = sum(len(r["cells"]) * r["epochs"] for r in record["rungs"])
  last = {json.dumps(c["hp"], sort_keys=True)
          for c in record["rungs"][-1]["cells"]} if record["rungs"] else set()
  extra = [t for t in trials if json.dumps(t["hp"], sort_keys=True)
           not in last]
  return (total + len(extra) * epochs) * seeds


def compare(halving: dict, grid: dict, tasks: list[str]) -> dict:
  out: dict = {
      "halving_command": halving["meta"]["command"],
      "grid_command": grid["meta"]["command"],
      "machine": [halving["meta"]["machine"], grid["meta"]["machine"]],
      "wall_time": {"halving": halving["meta"]["wall_time"],
                    "grid": grid["meta"]["wall_time"]},
      "tasks": {}}
  h_s = float(halving["meta"]["wall_time"].split()[0])
  g_s = float(grid["meta"]["wall_time"].split()[0])
  out["wall_time"]["ratio"] = h_s / g_s
  per_task = {}
  for name in sorted(set(halving["tasks"]) & set(grid["tasks"])):
    a = halving["tasks"][name].get("wall_s")
    b = grid["tasks"][name].get("wall_s")
    if a is not None and b is not None:
      per_task[name] = {"halving": a, "grid": b, "ratio": a / b}
  out["wall_time"]["per_task"] = per_task
  for name in tasks:
    h_task, g_task = halving["tasks"][name], grid["tasks"][name]
    seeds = len(h_task.get("tuning_seeds", [0, 0]))
    task_out: dict = {}
    for label, h_methods in _blocks(h_task).items():
      g_methods = _blocks(g_task)[label]
      epochs = (h_task["students"][label]["epochs"] if label
                else h_task["epochs"])
      rows = {}
      for m, h in h_methods.items():
        if m not in g_methods:
          continue
        g = g_methods[m]
        ranked = sorted(g["tuning"], key=_rank)
        keys = [json.dumps(t["hp"], sort_keys=True) for t in ranked]
        chosen_key = json.dumps(h["chosen"], sort_keys=True)
        rank = keys.index(chosen_key) + 1 if chosen_key in keys else None
        diff = _stats.paired_difference(h["per_seed"]["accuracy"],
                                        g["per_seed"]["accuracy"])
        rows[m] = {
            "halving": h["chosen"], "grid": g["chosen"],
            "same": h["chosen"] == g["chosen"],
            "rank_in_grid_validation": rank,
            "grid_cells": len(ranked),
            "test_halving": h["summary"]["accuracy"]["mean"],
            "test_grid": g["summary"]["accuracy"]["mean"],
            "halving_minus_grid": diff,
            "verdict": _stats.verdict(diff, "accuracy"),
            "tuning_model_epochs": {
                "halving": _tuning_model_epochs(h, epochs, seeds),
                "grid": _tuning_model_epochs(g, epochs, seeds)}}
      task_out[label or "main"] = rows
    out["tasks"][name] = task_out
  return out


def markdown(result: dict) -> str:
  w = result["wall_time"]
  lines = [
      "# Successive halving against the exhaustive grid", "",
      f"- halving run: `{result['halving_command']}`",
      f"- grid run: `{result['grid_command']}`",
      f"- machines: {result['machine'][0]} / {result['machine'][1]}",
      f"- wall time: halving {w['halving']}, grid {w['grid']}, ratio "
      f"{w['ratio']:.2f}x", ""]
  if w["per_task"]:
    lines += ["| task | halving (s) | grid (s) | ratio |", "|---|---|---|---|"]
    lines += [f"| {t} | {v['halving']:.0f} | {v['grid']:.0f} | "
              f"{v['ratio']:.2f} |" for t, v in w["per_task"].items()]
    lines.append("")
  for task, blocks in result["tasks"].items():
    for label, rows in blocks.items():
      title = task if label == "main" else f"{task} / {label}"
      lines += [f"## {title}", "",
                "| method | halving's cell | grid's cell | rank in grid | "
                "test (halving) | test (grid) | halving − grid | "
                "tuning model-epochs (halving / grid) |",
                "|---|---|---|---|---|---|---|---|"]
      for m, r in rows.items():
        d = r["halving_minus_grid"]
        interval = ("—" if d["low"] is None else
                    f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        if r["same"]:
          interval = "same cell"
        cell = lambda hp: ", ".join(f"{k} {v:g}" for k, v in hp.items())
        lines.append(
            f"| {m} | {cell(r['halving'])} | "
            f"{'same' if r['same'] else cell(r['grid'])} | "
            f"{r['rank_in_grid_validation']} of {r['grid_cells']} | "
            f"{r['test_halving']:.3f} | {r['test_grid']:.3f} | {interval} | "
            f"{r['tuning_model_epochs']['halving']} / "
            f"{r['tuning_model_epochs']['grid']} |")
      lines.append("")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("halving", type=pathlib.Path)
  parser.add_argument("grid", type=pathlib.Path)
  parser.add_argument("--tasks", nargs="+", default=["mnist1d", "hierarchy"])
  parser.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args()
  result = compare(json.loads(args.halving.read_text()),
                   json.loads(args.grid.read_text()), args.tasks)
  args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
  args.out.with_suffix(".md").write_text(markdown(result))
  print(markdown(result))


if __name__ == "__main__":
  main()

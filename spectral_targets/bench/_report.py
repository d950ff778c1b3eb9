"""Tables, JSON and figures of a benchmark run."""

from __future__ import annotations

import json
import pathlib

from spectral_targets.bench._run import METHOD_NOTES, METHODS

_COLUMNS = (("accuracy", "accuracy", "{:.3f}"),
            ("severity", "mistake severity", "{:.3f}"),
            ("hdist@k", "hdist@k", "{:.3f}"),
            ("nll", "NLL", "{:.3f}"),
            ("ece", "ECE", "{:.3f}"),
            ("nc1", "NC1 (test)", "{:.3f}"),
            ("step_time_ratio", "step time / one-hot", "{:.2f}"))


def task_table(name: str, report: dict) -> str:
  """A markdown table of one task: mean ± std over seeds per method."""
  k = report["k"]
  head = [c[1].replace("@k", f"@{k}") for c in _COLUMNS]
  lines = [f"### {name}: {report['description']}", "",
           f"C = {report['num_classes']}; train / val / test = "
           f"{report['train']} / {report['val']} / {report['test']}; "
           f"{report['epochs']} epochs; {report['seeds']} seeds; kernel: "
           f"{report['kernel']}; codebook scale {report['scale']:g} (chosen "
           f"on validation from {', '.join(report['scale_validation_accuracy'])}"
           f"); small d = {report['small_d']}; teacher accuracy "
           f"{report['teacher_accuracy']['mean']:.3f} ± "
           f"{report['teacher_accuracy']['std']:.3f}.", "",
           "| method | " + " | ".join(head) + " |",
           "|---" * (len(head) + 1) + "|"]
  for method in METHODS:
    r = report["methods"][method]
    cells = [(fmt.format(r["mean"][key]) + " ± " + fmt.format(r["std"][key]))
             if key != "step_time_ratio" else fmt.format(r["mean"][key])
             for key, _, fmt in _COLUMNS]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  if "reference" in report:
    lines += ["", "MNIST-1D one-hot baselines against the paper "
              "(Greydanus 2020):", "", "| model | accuracy | paper |",
              "|---|---|---|"]
    for model, r in report["reference"].items():
      acc = r["accuracy"]
      lines.append(f"| {model} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
                   f"~{r['paper']:.2f} |")
  return "\n".join(lines) + "\n"


def write(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
  """results.json, results.md and one PNG per task; returns the paths."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "results.json", out / "results.md"]
  paths[0].write_text(json.dumps(results, indent=1))
  meta = results["meta"]
  md = ["# spectral-targets bench", "",
        f"Command: `{meta['command']}`  ", f"Date: {meta['date']}  ",
        f"Machine: {meta['machine']}  ", f"Versions: {meta['versions']}", "",
        "Methods:", ""]
  md += [f"- **{name}**: {note}" for name, note in METHOD_NOTES.items()]
  md += ["", "Mistake severity: mean class distance between true and "
         "predicted class over the mistakes; hdist@k: mean distance to the "
         "top-k predictions (Bertinetto et al. 2020). Distances are "
         "1 − kernel (hierarchy: LCA height / tree height), class steps "
         "(ordinal), 1 − the estimated kernel (mnist1d, digits). NC1 of the "
         "test features; ECE with 15 bins.", ""]
  for name, report in results["tasks"].items():
    md.append(task_table(name, report))
  paths[1].write_text("\n".join(md))
  paths += plot(out, results)
  return paths


def plot(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  # colour-blind-safe enough, distinct. tab10 is a ListedColormap, which
  # has colors; get_cmap is typed as returning any Colormap.
  palette = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
  paths = []
  for name, report in results["tasks"].items():
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for i, method in enumerate(METHODS):
      r = report["methods"][method]
      ax.errorbar(r["mean"]["severity"], r["mean"]["accuracy"],
                  xerr=r["std"]["severity"], yerr=r["std"]["accuracy"],
                  fmt="o", color=palette[i % 10], capsize=3, label=method)
    ax.set_xlabel("mistake severity (lower is better)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{name}: accuracy vs mistake severity "
                 f"(mean ± std, {report['seeds']} seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
  return paths

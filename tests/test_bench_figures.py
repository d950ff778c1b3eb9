"""The benchmark's figures and tables as a reader meets them: one style per
method in every figure, smoke runs stamped, capped values marked, and no
interval that excludes 0 printed with a bound of ±0.000."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.axes
import matplotlib.figure
import pytest

from spectral_targets.bench import _figures, _palette, _report


def _summary(mean, std=0.01):
  return {"mean": mean, "std": std, "n": 2}


def _report_with(methods):
  return {"distance_unit": "levels", "seeds": 2, "methods": {
      m: {"summary": {"accuracy": _summary(0.9 - 0.01 * i),
                      "severity": _summary(2.0 + 0.1 * i)}}
      for i, m in enumerate(methods)}}


def test_every_known_method_has_its_own_style():
  styles = [_palette.style(m) for m in _palette.KNOWN]
  assert len(set(styles)) == len(styles)
  # A new method's style depends on its name only.
  assert _palette.style("my-method") == _palette.style("my-method")


def test_a_method_keeps_its_colour_whatever_the_figure(tmp_path, monkeypatch):
  drawn = []

  def errorbar(self, *args, **kwargs):
    drawn.append((kwargs["label"], kwargs["color"],
                  kwargs.get("fmt") or kwargs.get("marker")))

  monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
  monkeypatch.setattr(matplotlib.axes.Axes, "legend", lambda *a, **k: None)
  _figures.error_severity(tmp_path / "a.png", "a",
                          _report_with(["one-hot", "cosine", "simplex"]))
  _figures.error_severity(tmp_path / "b.png", "b",
                          _report_with(["cosine", "spectral", "one-hot"]))
  by_method = {}
  for label, colour, marker in drawn:
    by_method.setdefault(label, set()).add((colour, marker))
  assert all(len(v) == 1 for v in by_method.values()), by_method
  assert len({next(iter(v)) for v in by_method.values()}) == len(by_method)


@pytest.mark.parametrize("quick", [False, True])
def test_smoke_run_figures_are_stamped(tmp_path, monkeypatch, quick):
  texts = []
  original = matplotlib.figure.Figure.text

  def text(self, x, y, s, *args, **kwargs):
    texts.append(s)
    return original(self, x, y, s, *args, **kwargs)

  monkeypatch.setattr(matplotlib.figure.Figure, "text", text)
  results = {"meta": {"quick": quick},
             "tasks": {"toy": _report_with(["one-hot", "simplex"])}}
  (path,) = _figures.plot(tmp_path, results)
  assert path.stat().st_size > 0
  assert (_figures.SMOKE_MARK in texts) == quick


def test_capped_condition_numbers_are_marked():
  cap = _report.KAPPA_CAP
  assert cap == 8_388_608.0  # 1 / float32 epsilon
  fmt = "{:.2g}"
  assert _report._cell(_summary(cap, 0.0), fmt, [cap] * 5) == (
      "≥ 8.4e+06 (5/5 capped)")
  partly = _report._cell(_summary(6.6e6, 2.5e6), fmt, [cap, cap, cap, 2e6,
                                                       2e6])
  assert partly.startswith("≥ ") and partly.endswith("(3/5 capped)")
  assert _report._cell(_summary(1.7e2, 46.0), fmt, [150.0, 190.0]) == (
      "1.7e+02 ± 46")
  assert "capped" in _report.LEGEND and "2²³" in _report.LEGEND


def test_an_interval_that_excludes_zero_shows_a_nonzero_bound():
  d = {"mean": 0.011, "low": 0.00031, "high": 0.022, "verdict": "higher"}
  assert _report._diff(d, "accuracy") == "+0.011 [+0.0003, +0.022] ✔"
  tie = {"mean": 0.017, "low": -0.0002, "high": 0.035, "verdict": "tie"}
  assert _report._diff(tie, "accuracy") == "+0.017 [-0.000, +0.035]"


def test_the_readme_summary_reads_ordinal_tasks_by_mae_and_lists_distillation():
  def method(acc, mae=None, probabilistic=True, control="one-hot"):
    summary = {"accuracy": _summary(acc), "severity": _summary(1.0)}
    if mae is not None:
      summary.update(mae=_summary(mae), qwk=_summary(0.5),
                     median_mae=_summary(mae - 0.1))
    return {"summary": summary, "control": control,
            "probabilistic": probabilistic,
            "vs one-hot": {"accuracy": {"mean": 0.01, "low": 0.005,
                                        "high": 0.02, "n": 5,
                                        "verdict": "higher"}}}

  results = {"tasks": {
      "plain": {"methods": {"one-hot": method(0.9),
                            "simplex": method(0.92, control="cosine")}},
      "graded": {"methods": {"one-hot": method(0.5, 0.8),
                             "regression": method(0.4, 0.7, False)}},
      "distill": {"students": {"mlp": {"methods": {"kd": method(0.7)}}},
                  "settings": {"transfer set": {"methods": {
                      "pseudo-labels": method(0.72)}}}}}}
  text = _report.summary_table(results)
  tables = text.split("\n\n")
  assert len(tables) == 3
  classification, ordinal, distill = tables
  assert "| plain | simplex |" in classification
  assert "graded" not in classification
  assert "MAE ↓" in ordinal and "| graded | regression | 0.700" in ordinal
  # Regression has no probabilities: its posterior-median MAE is n/a.
  assert ordinal.splitlines()[-1].split(" | ")[6] == _report.NOT_APPLICABLE
  assert "| distill: mlp | kd |" in distill
  assert "| distill: transfer set | pseudo-labels |" in distill
  # A run with neither kind has only the first table.
  assert "\n\n" not in _report.summary_table({"tasks": {
      "plain": results["tasks"]["plain"]}})

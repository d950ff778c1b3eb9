"""The main job: `spectral-targets bench --quick` end to end."""

import json
import math
import subprocess
import sys

import pytest

from spectral_targets import _cli, bench

pytestmark = pytest.mark.skipif(bool(bench.missing_requirements()),
                                reason="bench extra not installed")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  proc = subprocess.run(
      [sys.executable, "-m", "spectral_targets", "bench", "--quick", "--out",
       str(out)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def test_quick_bench_writes_every_figure(quick_results):
  out, stdout = quick_results
  results = json.loads((out / "results.json").read_text())
  from spectral_targets.bench._run import METHODS, METRICS
  from spectral_targets.bench._tasks import TASKS
  assert set(results["tasks"]) == set(TASKS)
  for task, report in results["tasks"].items():
    assert set(report["methods"]) == set(METHODS)
    for method, r in report["methods"].items():
      for metric in METRICS:
        values = r["per_seed"][metric]
        assert len(values) == results["meta"]["seeds"] == 2
        assert all(math.isfinite(v) for v in values), (task, method, metric)
        assert math.isfinite(r["mean"][metric])
    assert (out / f"{task}.png").stat().st_size > 10_000
    assert f"### {task}" in stdout
  assert "reference" in results["tasks"]["mnist1d"]
  md = (out / "results.md").read_text()
  assert md.count("| one-hot |") == len(TASKS)


def test_missing_extra_names_the_install(monkeypatch, capsys):
  monkeypatch.setattr(bench, "missing_requirements", lambda: ["mnist1d"])
  assert _cli.main(["bench", "--quick"]) == 2
  err = capsys.readouterr().err
  assert "mnist1d" in err and ".[bench]" in err


def test_bad_arguments(capsys):
  assert _cli.main(["bench", "--tasks", "imagenet"]) == 2
  assert "unknown task" in capsys.readouterr().err
  assert _cli.main(["bench", "--seeds", "0"]) == 2

"""Smoke tests: every example script runs and prints what it promises."""

import pathlib
import subprocess
import sys


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _run(name):
  return subprocess.run([sys.executable, str(EXAMPLES / name)], check=True,
                        capture_output=True, text=True).stdout


def test_codebooks():
  out = _run("codebooks.py")
  assert "40. 40. 40." in out and "simplex" in out


def test_swap_head():
  out = _run("swap_head.py")
  accs = [float(line.split()[-1]) for line in out.splitlines()
          if "test accuracy" in line]
  assert len(accs) == 2 and min(accs) > 0.85


def test_distill_step():
  out = _run("distill_step.py")
  for term in ("ce", "kd", "soft_assignment", "dark-knowledge mass"):
    assert term in out


def test_collapse_during_training():
  rows = [line.split() for line in _run("collapse_during_training.py")
          .splitlines()[1:] if line.strip()]
  nc1 = [float(r[2]) for r in rows]
  assert len(nc1) >= 3 and nc1[-1] < 0.5 * nc1[0]
  assert all(int(r[-1]) <= 9 for r in rows)  # Σ_B has at most C - 1 modes

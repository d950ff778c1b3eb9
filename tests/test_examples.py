"""Smoke tests: every example script runs and prints what it promises."""

import pathlib
import subprocess
import sys


EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _run(name, *args):
  return subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                        check=True, capture_output=True, text=True).stdout


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


def test_multiprocess_training():
  # Two local processes joined by jax.distributed; the launcher's --timeout
  # kills both should a collective hang (kill-safety, not a speed check).
  out = _run("multiprocess_training.py", "--num-processes", "2", "--steps",
             "60", "--report-every", "20", "--timeout", "600").splitlines()
  out = [line for line in out if not line.startswith("[Gloo]")]  # gloo's
  assert out[0].startswith("2 processes, mesh {'data': 1, 'classes': 2}")
  assert "codebook shard (5, 9) of (10, 9) per process" in out[0]
  rows = [line.split() for line in out[2:] if line[:5].strip().isdigit()]
  assert [int(r[0]) for r in rows] == [20, 40, 60]
  loss, nc1 = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
  assert loss[-1] < loss[0] and nc1[-1] < nc1[0]
  assert all(int(r[-1]) <= 9 for r in rows)  # Σ_B has at most C - 1 modes
  assert float(out[-1].split()[-1]) > 0.8     # test accuracy


def test_distill_language_model(tmp_path):
  out = _run("distill_language_model.py", "--quick", "--out",
             str(tmp_path / "curve.png")).splitlines()
  rows = [line.split() for line in out if line[:6].strip().isdigit()]
  assert len(rows) >= 3
  base, kd = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
  assert base[-1] < base[0] and kd[-1] < kd[0]  # both students train
  assert out[-1] == f"plot: {tmp_path / 'curve.png'}"
  assert (tmp_path / "curve.png").stat().st_size > 0

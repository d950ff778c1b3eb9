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
  teacher = float(out.split("test accuracy ")[1].split(";")[0])
  students = {line.split()[0]: float(line.split()[3])
              for line in out.splitlines() if line.startswith("  ")}
  assert set(students) == {"none", "kd", "dkd", "soft-assignment"}
  assert "dark-knowledge mass" in out
  # A trained teacher, and distilling it helps the student that has 10% of
  # the labels (0.774 -> 0.867 when recorded).
  assert teacher > 0.9
  assert students["kd"] > students["none"]


def test_render_examples_write_elsewhere_unless_asked(tmp_path):
  out = _run("render_rank_reconstruction_gif.py", "--out", str(tmp_path))
  assert (tmp_path / "rank-reconstruction.gif").stat().st_size > 0
  assert str(tmp_path) in out
  source = (EXAMPLES / "render_collapse_gif.py").read_text()
  assert "mkdtemp" in source and "--out" in source


def _readme_block(after):
  readme = (EXAMPLES.parent / "README.md").read_text()
  return readme.split(after, 1)[1].split("```\n", 1)[1].split("```", 1)[0]


def test_collapse_during_training():
  out = _run("collapse_during_training.py")
  rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
  # The README shows this run's output (to 1% in every number).
  shown = [line.split() for line in _readme_block(
      "examples/collapse_during_training.py` (an MLP").splitlines()[1:]
      if line.strip()]
  assert [r[0] for r in shown] == [r[0] for r in rows]
  for r, s in zip(rows, shown):
    for a, b in zip(r[1:], s[1:]):
      assert abs(float(a) - float(b)) <= 0.01 * abs(float(b)) + 1e-4, (r, s)
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

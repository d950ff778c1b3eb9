"""The ``spectral-targets`` command line: version, error format, exit codes.

The command runs as ``python -m spectral_targets`` in a subprocess, so these
test this checkout's package and the real exit status.
"""

import os
import re
import subprocess
import sys

import pytest

import spectral_targets as st
from spectral_targets import _cli, bench, render


def run(*args):
  return subprocess.run([sys.executable, "-m", "spectral_targets", *args],
                        capture_output=True, text=True, check=False)


def test_version():
  result = run("--version")
  assert result.returncode == 0, result.stderr
  assert result.stdout == f"spectral-targets {st.__version__}\n"
  assert re.fullmatch(r"\d+\.\d+\.\d+", st.__version__)


@pytest.mark.parametrize("args, prog, message", [
    ([], "spectral-targets",
     "the following arguments are required: COMMAND"),
    (["frob"], "spectral-targets", "argument COMMAND: invalid choice: 'frob'"),
    (["bench", "--seeds", "0"], "spectral-targets bench",
     "argument --seeds: must be >= 1, got 0"),
    (["bench", "--seeds", "two"], "spectral-targets bench",
     "argument --seeds: expected an integer >= 1, got 'two'"),
    (["bench", "--tasks", "imagenet"], "spectral-targets bench",
     ("argument --tasks: unknown task 'imagenet'; choose from mnist1d, "
      "digits, hierarchy, hierarchy-400, ordinal, diamonds-colour, "
      "diamonds-price-decile, "
      "distill, hierarchy-shift")),
    (["bench", "--methods", "magic"], "spectral-targets bench",
     "argument --methods: unknown method 'magic'; choose from one-hot, "),
    (["bench", "--epochs", "0"], "spectral-targets bench",
     "argument --epochs: must be >= 1, got 0"),
    (["bench", "--search", "random"], "spectral-targets bench",
     "argument --search: invalid choice: 'random'"),
    (["bench", "--out", "{file}"], "spectral-targets bench",
     "argument --out: '{file}' exists and is not a folder"),
    (["render", "nope"], "spectral-targets render",
     ("argument WHICH: unknown animation 'nope'; choose from "
      "codebook-morph, rank-reconstruction, collapse, dark-knowledge")),
    (["render", "--frames", "1"], "spectral-targets render",
     "argument --frames: must be >= 2, got 1"),
    (["render", "--fps", "0"], "spectral-targets render",
     "argument --fps: must be >= 1, got 0"),
    (["render", "--fps", "2.5"], "spectral-targets render",
     "argument --fps: expected an integer >= 1, got '2.5'"),
    (["render", "--out", "{file}"], "spectral-targets render",
     "argument --out: '{file}' exists and is not a folder"),
    (["render", "dark-knowledge", "--frames", "2", "--out", "{file}/x"],
     "spectral-targets render",
     "argument --out: '{file}/x' cannot be created: '{file}' is a file, not "
     "a folder"),
    (["bench", "--quick", "--out", "{file}/sub/dir"], "spectral-targets bench",
     "argument --out: '{file}/sub/dir' cannot be created: '{file}' is a "
     "file, not a folder"),
])
def test_errors_read_like_argparse_and_exit_2(args, prog, message, tmp_path):
  file = tmp_path / "a-file"
  file.write_text("")
  result = run(*(a.format(file=file) for a in args))
  message = message.format(file=file)
  assert result.returncode == 2
  assert result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert lines[0].startswith(f"usage: {prog} ")
  # (argparse words its own messages a little differently per Python.)
  assert lines[-1].startswith(f"{prog}: error: {message}")


@pytest.mark.parametrize("command, module, extra", [
    ("bench", bench, "bench"), ("render", render, "viz")])
def test_missing_extra_is_an_argparse_error(command, module, extra,
                                            monkeypatch, capsys, tmp_path):
  monkeypatch.setattr(module, "missing_requirements",
                      lambda: ["pillow", "tqdm"])
  assert _cli.main([command, "--out", str(tmp_path / "out")]) == 2
  captured = capsys.readouterr()
  assert captured.out == ""
  assert (f"spectral-targets {command}: error: needs pillow, tqdm, which "
          f"the '{extra}' extra installs:\n  {module.INSTALL_HINT}\n"
          ) in captured.err
  assert not (tmp_path / "out").exists()


def test_bench_out_is_checked_before_any_work(monkeypatch, capsys, tmp_path):
  # A run that trains for hours must not die when it writes its results.
  file = tmp_path / "a-file"
  file.write_text("")

  def must_not_run(**kwargs):
    raise AssertionError("the benchmark ran")

  monkeypatch.setattr(bench, "run_benchmark", must_not_run)
  monkeypatch.setattr(bench, "missing_requirements", lambda: [])
  assert _cli.main(["bench", "--quick", "--out", str(file / "sub")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("usage: spectral-targets bench ")
  assert "spectral-targets bench: error: argument --out:" in err
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    if not os.access(locked, os.W_OK):  # (root may write anywhere)
      assert _cli.main(["bench", "--out", str(locked / "out")]) == 2
      assert "is not writable" in capsys.readouterr().err
  finally:
    locked.chmod(0o700)


def test_main_returns_the_exit_status(capsys):
  # Programmatic callers get a status, never a SystemExit.
  assert _cli.main(["--version"]) == 0
  assert capsys.readouterr().out == f"spectral-targets {st.__version__}\n"
  assert _cli.main(["render", "--help"]) == 0
  assert "--frames N" in capsys.readouterr().out
  assert _cli.main(["render", "--fps", "0"]) == 2


def test_render_writes_and_reports(tmp_path):
  result = run("render", "dark-knowledge", "--frames", "2", "--fps", "4",
               "--out", str(tmp_path))
  assert result.returncode == 0, result.stderr
  path = tmp_path / "dark-knowledge.gif"
  assert result.stdout == (f"wrote {path} "
                           f"({path.stat().st_size / 2**20:.2f} MB)\n")

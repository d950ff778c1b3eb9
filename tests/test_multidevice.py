"""Runs tests/multidevice in a fresh process with 4 simulated CPU devices
(XLA_FLAGS must be set before JAX is imported, which this process has
already done)."""

import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def test_multidevice_suite():
  # A clean pytest: no xdist worker variables inherited from this run.
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS"))}
  env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       "-n", "0", str(HERE / "multidevice")], env=env, capture_output=True,
      text=True, cwd=HERE.parent)
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
  assert " passed" in result.stdout and " failed" not in result.stdout

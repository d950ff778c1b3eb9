"""Shared test configuration: Hypothesis profiles and reference data paths."""

import os
import pathlib

import hypothesis
import pytest

# Every new shape recompiles, so examples are bounded and deadlines are off
# (these machines are shared; wall-clock limits in tests only measure noise).
hypothesis.settings.register_profile(
    "default", max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                                "default"))

# Real class taxonomies (sources and licences in their README): shipped with
# the tests, and, read only where a folder beside the checkout holds them,
# three whose licence (CC BY-NC-SA 4.0) keeps them out of the repository.
HIERARCHIES = pathlib.Path(__file__).resolve().parent / "data" / "hierarchies"
SHIPPED_HIERARCHIES = ("cifar100.parent-child.txt",
                       "imagenet.parent-child.mintree.txt")
EXTRA_HIERARCHIES = (pathlib.Path(__file__).resolve().parents[1].parent
                     / "shared" / "data" / "hierarchies")
UNSHIPPED_HIERARCHIES = ("imagenet.isa.txt", "tiered_imagenet.isa.txt",
                         "inaturalist19.isa.txt")


def hierarchy_path(name):
  """The file of a real taxonomy: a shipped one, or an unshipped one from
  EXTRA_HIERARCHIES (the test skips where that folder lacks it)."""
  if name in SHIPPED_HIERARCHIES:
    return HIERARCHIES / name
  path = EXTRA_HIERARCHIES / name
  if not path.exists():
    pytest.skip(f"{name} is not shipped (CC BY-NC-SA 4.0) and {path} is "
                "absent")
  return path


def pytest_addoption(parser):
  parser.addoption("--run-slow", action="store_true", default=False,
                   help="also run the tests marked slow (the searches whose "
                   "results tests/reference.py pins)")


def pytest_collection_modifyitems(config, items):
  if (config.getoption("--run-slow", default=False)
      or os.environ.get("SPECTRAL_TARGETS_RUN_SLOW") == "1"):
    return
  skip = pytest.mark.skip(reason="slow: run with --run-slow or "
                          "SPECTRAL_TARGETS_RUN_SLOW=1")
  for item in items:
    if item.get_closest_marker("slow") is not None:
      item.add_marker(skip)


# multidevice needs its own process (4 simulated devices) and is run by
# tests/test_multidevice.py; multiprocess holds the worker that
# tests/test_multiprocess.py starts as several processes.
collect_ignore = ["multidevice", "multiprocess"]

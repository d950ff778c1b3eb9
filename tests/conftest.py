"""Shared test configuration: Hypothesis profiles and reference data paths."""

import os
import pathlib

import hypothesis

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

HIERARCHIES = (pathlib.Path(__file__).resolve().parents[1].parent / "shared"
               / "data" / "hierarchies")

# multidevice needs its own process (4 simulated devices) and is run by
# tests/test_multidevice.py; multiprocess holds the worker that
# tests/test_multiprocess.py starts as several processes.
collect_ignore = ["multidevice", "multiprocess"]

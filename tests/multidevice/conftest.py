"""Four simulated CPU devices. This folder runs in its own process (see
tests/test_multidevice.py): the flag must be set before JAX is imported."""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

if jax.device_count() != 4:
  sys.exit(f"expected 4 simulated devices, got {jax.device_count()}; was JAX "
           "imported before this conftest?")

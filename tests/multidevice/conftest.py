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


import contextlib  # noqa: E402
import functools  # noqa: E402

import pytest  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

#: A 4-device data-parallel mesh of each axis type.
MESHES = {kind: jax.make_mesh((4,), ("batch",), axis_types=(kind,))
          for kind in (AxisType.Auto, AxisType.Explicit)}


@pytest.fixture(params=list(MESHES), ids=lambda k: k.name)
def batch_mesh(request):
  """Each mesh in turn; the Explicit one is also set as the current mesh
  (jax.set_mesh), as a user of Explicit sharding would."""
  mesh = MESHES[request.param]
  ctx = (jax.set_mesh(mesh) if request.param == AxisType.Explicit
         else contextlib.nullcontext())
  with ctx:
    yield mesh


@pytest.fixture
def all_reduce_parts():
  """Four per-device states (anything with ``all_reduce``) stacked, sharded
  one per device, and merged by ``all_reduce`` inside ``shard_map``."""
  mesh = MESHES[AxisType.Auto]

  def reduce(parts):
    stacked = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *parts)
    stacked = jax.device_put(stacked, NamedSharding(mesh, P("batch")))

    @jax.jit
    @functools.partial(jax.shard_map, mesh=mesh, in_specs=P("batch"),
                       out_specs=P())
    def merge(state):
      local = jax.tree_util.tree_map(lambda x: x[0], state)
      return local.all_reduce("batch")

    return merge(stacked)

  return reduce

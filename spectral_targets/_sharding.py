"""Arrays spread over devices and processes: replicated results under any
mesh, and values of arrays that no single process holds.

Under multi-process JAX (``jax.distributed.initialize``) a global array's
shards live on other hosts: ``np.asarray`` cannot read it, but a jitted
reduction that every process runs (as every process runs the same program)
gives each of them the same replicated answer.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, PartitionSpec


def explicit_axes() -> tuple[str, ...]:
  """Names of the Explicit axes of the mesh set by ``jax.set_mesh``."""
  mesh = jax.sharding.get_abstract_mesh()
  return tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types)
               if kind == AxisType.Explicit)


def replicated(fn, num_outputs: int):
  """``fn`` (to be called while tracing) with replicated outputs.

  Under a mesh with Explicit axes, reductions over a sharded axis (segment
  sums, a contraction over the batch) have no unambiguous output sharding;
  ``auto_axes`` lets XLA partition them as in Auto mode and returns
  replicated results. Elsewhere ``fn`` is returned unchanged.
  """
  axes = explicit_axes()
  if not axes:
    return fn
  return jax.sharding.auto_axes(
      fn, axes=axes, out_sharding=(PartitionSpec(),) * num_outputs)


def spans_processes(x) -> bool:
  """True for a concrete ``jax.Array`` with shards on other processes."""
  return (isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
          and not x.is_fully_addressable)


def may_split_rows(x) -> bool:
  """Whether the rows (axis 0) of ``x`` may be split across devices.

  Exact for concrete arrays, inside ``shard_map`` and under an Explicit
  mesh; under ``jit`` with Auto axes the partitioner decides later, so with
  more than one device the answer is yes.
  """
  if jax.device_count() == 1:
    return False
  if not isinstance(x, jax.core.Tracer):
    sharding = getattr(x, "sharding", None)
    return sharding is not None and not sharding.is_fully_replicated
  sharding = jax.typeof(x).sharding
  kinds = sharding.mesh.axis_types
  if not kinds or AxisType.Auto in kinds:
    return True
  return bool(sharding.spec) and sharding.spec[0] is not None

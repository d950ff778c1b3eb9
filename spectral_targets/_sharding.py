"""Arrays spread over devices and processes: reductions over a batch axis
that may be sharded, and values of arrays that no single process holds.

Under multi-process JAX (``jax.distributed.initialize``) a global array's
shards live on other hosts: ``np.asarray`` cannot read it, but a jitted
reduction that every process runs (as every process runs the same program)
gives each of them the same replicated answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeGuard, TypeVar, cast

import jax
from jax.sharding import AxisType

P = ParamSpec("P")
R = TypeVar("R")


def replicated_outputs(fn: Callable[P, R], num_outputs: int) -> Callable[P, R]:
  """``fn`` with replicated outputs under a mesh with Explicit axes.

  Segment sums over a batch-sharded axis have no unambiguous output sharding
  when the mesh's axes are Explicit (``jax.set_mesh``); run ``fn`` as in
  Auto mode there (XLA partitions the sums and all-reduces) and return its
  ``num_outputs`` outputs replicated. Elsewhere ``fn`` is returned as is.
  Call it while tracing, where the abstract mesh is known.
  """
  mesh = jax.sharding.get_abstract_mesh()
  explicit = tuple(name for name, kind in zip(mesh.axis_names,
                                              mesh.axis_types, strict=True)
                   if kind == AxisType.Explicit)
  if not explicit:
    return fn
  replicated = jax.sharding.PartitionSpec()
  # auto_axes keeps the signature; JAX types its result as Any.
  return cast(Callable[P, R], jax.sharding.auto_axes(
      fn, axes=explicit, out_sharding=(replicated,) * num_outputs))


def spans_processes(x: object) -> TypeGuard[jax.Array]:
  """True for a concrete ``jax.Array`` with shards on other processes."""
  return (isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
          and not x.is_fully_addressable)


def may_split_rows(x: object) -> bool:
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

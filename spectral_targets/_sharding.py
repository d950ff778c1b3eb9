"""Reductions over a batch axis that may be sharded."""

from __future__ import annotations

from collections.abc import Callable

import jax


def replicated_outputs(fn: Callable, num_outputs: int) -> Callable:
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
                   if kind == jax.sharding.AxisType.Explicit)
  if not explicit:
    return fn
  replicated = jax.sharding.PartitionSpec()
  return jax.sharding.auto_axes(fn, axes=explicit,
                                out_sharding=(replicated,) * num_outputs)

"""Ahead-of-time compilation of the benchmark's programs on worker threads.

Most of a short benchmark run is XLA compilation, which is single-threaded
and releases the GIL. Every program of a task has shapes known before any
training starts, so the task submits them all at once, in the order it
needs them; worker threads lower and compile while the main thread trains
with the programs already done.
"""

from __future__ import annotations

import concurrent.futures
import os

import jax


def default_workers() -> int:
  """Compile threads: the machine's cores, at most four."""
  return max(1, min(4, os.cpu_count() or 1))


class Compiler:
  """Compiles jitted functions for given arguments on worker threads.

  ``submit(key, fn, *args, options=..., **kwargs)`` starts
  ``fn.lower(*args, **kwargs).compile(options)``; ``compiler[key]`` waits
  for it and returns the ``Compiled`` program. Arguments may be arrays or
  ``jax.ShapeDtypeStruct``; only shapes, dtypes and static values matter.
  """

  def __init__(self, workers: int | None = None):
    self._pool = concurrent.futures.ThreadPoolExecutor(
        workers or default_workers(), thread_name_prefix="xla-compile")
    self._futures: dict = {}
    self._used: set = set()

  def submit(self, key, fn, *args, options: dict | None = None, **kwargs):
    if key in self._futures:
      raise ValueError(f"program {key!r} was already submitted")
    self._futures[key] = self._pool.submit(
        lambda: fn.lower(*args, **kwargs).compile(options or None))

  def __contains__(self, key) -> bool:
    return key in self._futures

  def __getitem__(self, key):
    self._used.add(key)
    return self._futures[key].result()

  def wait(self):
    """Blocks until every submitted program is compiled (nothing competes
    for the cores afterwards: timings taken then are clean)."""
    concurrent.futures.wait(list(self._futures.values()))

  def release_used(self):
    """Drops every program retrieved so far (a later request compiles it
    again), then JAX's in-memory caches, which hold every executable the
    process compiled. Programs submitted and not yet retrieved (the next
    task's, compiled ahead) stay.

    Called between tasks: XLA:CPU maps about 400 memory regions per
    program of this benchmark, and a run that kept all of them passed
    Linux's ``vm.max_map_count`` (65,530) in its last task, where LLVM
    aborts the process ("Unable to allocate section memory").
    """
    for key in self._used:
      self._futures.pop(key, None)
    self._used.clear()
    jax.clear_caches()

  def close(self):
    """Waits for running compilations, drops queued ones."""
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

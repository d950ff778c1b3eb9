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

  def submit(self, key, fn, *args, options: dict | None = None, **kwargs):
    if key in self._futures:
      raise ValueError(f"program {key!r} was already submitted")
    self._futures[key] = self._pool.submit(
        lambda: fn.lower(*args, **kwargs).compile(options or None))

  def __contains__(self, key) -> bool:
    return key in self._futures

  def __getitem__(self, key):
    return self._futures[key].result()

  def wait(self):
    """Blocks until every submitted program is compiled (nothing competes
    for the cores afterwards: timings taken then are clean)."""
    concurrent.futures.wait(list(self._futures.values()))

  def forget(self, prefix):
    """Drops the programs whose key is a tuple starting with ``prefix``, so
    their memory can go."""
    for key in [k for k in self._futures
                if isinstance(k, tuple) and k[:1] == (prefix,)]:
      del self._futures[key]

  def close(self):
    """Waits for running compilations, drops queued ones."""
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

"""Speed and memory of class statistics (issue: collapse diagnostics).

Three measurements, each in its own subprocess:

Peak memory: for jit-compiled code, what XLA's compiled program allocates
beyond its inputs (``memory_analysis``: temporaries + outputs); for the
blog's eager code, the growth of the process's peak RSS on its first call
in a fresh process; for the streaming loop, both (the growth of the peak
RSS over the loop beyond what its first two steps needed, compilation
included).

1. the source blog's loop-over-classes + N x D x D outer-product version
   (re-implemented below as the baseline) against ``class_covariances``;
2. ``class_covariances`` against the floor of one jit-compiled
   ``features.T @ features`` on the same array, both in one process with
   their calls interleaved (a shared machine's load then falls on both);
3. streaming ``ClassStatistics.update`` over chunks at two values of N:
   peak memory must not grow with N.

    python benchmarks/class_covariances.py            # full (several minutes)
    python benchmarks/class_covariances.py --quick    # small sizes

Times are medians of repeated runs after one warm-up (compilation excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _maxrss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _xla_peak_mb(f, *args):
  """Memory XLA allocates for one call beyond its inputs (temporaries and
  outputs), from the compiled program: exact, and immune to allocator
  caching that hides reuse from RSS."""
  stats = f.lower(*args).compile().memory_analysis()
  return (stats.temp_size_in_bytes + stats.output_size_in_bytes) / 2**20


def _median_time(f, *args, reps):
  return _median_times([f], *args, reps=reps)[0]


def _median_times(fs, *args, reps):
  """Median seconds of each function, called in turn each round."""
  import jax
  import numpy as np
  for f in fs:
    jax.block_until_ready(f(*args))
  times = [[] for _ in fs]
  for _ in range(reps):
    for f, t in zip(fs, times):
      t0 = time.perf_counter()
      jax.block_until_ready(f(*args))
      t.append(time.perf_counter() - t0)
  return [float(np.median(t)) for t in times]


def blog_class_covariances(Z, y, num_classes):
  """The blog's version: a Python loop over classes and N x D x D outer
  products for the within-class covariance."""
  import jax.numpy as jnp
  N, D = Z.shape
  mu = Z.mean(0)
  between = jnp.zeros((D, D))
  means = []
  for c in range(num_classes):
    Zc = Z[y == c]
    mc = Zc.mean(0)
    means.append(mc)
    between = between + (Zc.shape[0] / N) * jnp.outer(mc - mu, mc - mu)
  M = jnp.stack(means)
  diffs = Z - M[y]
  within = jnp.mean(diffs[:, :, None] * diffs[:, None, :], axis=0)
  return between, within


def _data(N, D, C, seed=0):
  import jax
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  y = jax.random.randint(k1, (N,), 0, C)
  return jax.random.normal(k2, (C, D))[y] * 2 + jax.random.normal(
      k3, (N, D)), y


def worker(task, N, D, C, reps, chunk):
  """Runs one measurement in this process; prints a JSON line."""
  import jax
  import jax.numpy as jnp
  import spectral_targets as st
  out = dict(task=task, N=N, D=D, C=C)
  if task == "streaming":
    update = jax.jit(st.ClassStatistics.update)
    key = jax.random.key(0)
    centres = jax.random.normal(key, (C, D)) * 2

    @jax.jit
    def make_chunk(k):
      k1, k2 = jax.random.split(jax.random.fold_in(key, k))
      y = jax.random.randint(k1, (chunk,), 0, C)
      return centres[y] + jax.random.normal(k2, (chunk, D)), y

    def stream(stats, chunks):
      for k in range(chunks):
        z, y = make_chunk(k)
        # Block per chunk, as a loop over host data would: otherwise async
        # dispatch queues chunks ahead and memory measures the queue.
        stats = jax.block_until_ready(update(stats, z, y))
      return stats

    stats = st.ClassStatistics.zeros(C, D)
    z, y = make_chunk(0)
    xla_mb = _xla_peak_mb(update, stats, z, y)
    del z, y
    # Two steps first (compiling, and allocating what every step holds: the
    # state, this chunk and the next); the lifetime-peak RSS may then grow
    # only if memory grows with N. (The current RSS is no baseline: how much
    # the allocator hands back to the system after compiling varies.)
    stream(stats, 2)
    before = _maxrss_mb()
    t0 = time.perf_counter()
    stats = stream(stats, N // chunk)
    jax.block_until_ready(stats.covariances())
    out.update(seconds=time.perf_counter() - t0, chunk=chunk,
               rss_mb=_maxrss_mb() - before, xla_mb=xla_mb, state_mb=sum(
                   x.nbytes for x in jax.tree_util.tree_leaves(stats)) / 2**20)
  else:
    Z, y = _data(N, D, C)
    jax.block_until_ready((Z, y))
    if task == "blog":
      f = lambda Z, y: blog_class_covariances(Z, y, C)  # noqa: E731
      # Eager, op by op: measured as the growth of the peak RSS of this
      # fresh process on the first call (the N x D x D product dominates).
      before = _current_rss_mb()
      jax.block_until_ready(f(Z, y))
      peak = max(_maxrss_mb() - before, 0)
      out.update(seconds=_median_time(f, Z, y, reps=reps), peak_mb=peak)
    elif task == "floor":
      gram = jax.jit(lambda Z: Z.T @ Z)
      ours = jax.jit(st.class_covariances, static_argnums=2)
      floor_s, ours_s = _median_times(
          [lambda Z, y: gram(Z), lambda Z, y: ours(Z, y, C)], Z, y, reps=reps)
      out.update(floor_seconds=floor_s, seconds=ours_s,
                 floor_mb=_xla_peak_mb(gram, Z), peak_mb=_xla_peak_mb(
                     ours, Z, y, C))
    else:
      g = jax.jit(st.class_covariances, static_argnums=2)
      peak = _xla_peak_mb(g, Z, y, C)
      f = (lambda g: lambda Z, y: g(Z, y, C))(g)
      out.update(seconds=_median_time(f, Z, y, reps=reps), peak_mb=peak)
    if task in ("blog", "ours"):
      between, within = f(Z, y)
      out["checksum"] = float(jnp.trace(within) + jnp.trace(between))
  print(json.dumps(out))


def _run(task, N, D, C, reps=5, chunk=50_000):
  cmd = [sys.executable, __file__, "--worker", task, str(N), str(D), str(C),
         str(reps), str(chunk)]
  res = subprocess.run(cmd, capture_output=True, text=True, check=True)
  return json.loads(res.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    task, *nums = args.worker
    worker(task, *map(int, nums))
    return
  if args.quick:
    vs_blog, floor, stream = [(5_000, 64, 20)], (50_000, 128, 20), [
        (100_000, 128, 100), (200_000, 128, 100)]
  else:
    # 80,000 x 128 x 128 float32 outer products are 5.2 GB, about the most
    # the baseline survives here with its temporaries (24 GB machine).
    vs_blog = [(20_000, 128, 100), (80_000, 128, 100)]
    floor, stream = (200_000, 256, 100), [
        (250_000, 512, 1000), (1_000_000, 512, 1000)]
  import jax
  import numpy as np

  from spectral_targets.bench import cpu_name
  print(f"machine: {cpu_name()}, {os.cpu_count()} cores; jax "
        f"{jax.__version__}; numpy {np.__version__}")
  print("\n| vs blog (N, D, C) | blog s | ours s | speed-up | blog peak MB "
        "| ours peak MB | same result |")
  print("|---|---|---|---|---|---|---|")
  for shape in vs_blog:
    blog, ours = _run("blog", *shape, reps=3), _run("ours", *shape)
    same = abs(blog["checksum"] - ours["checksum"]) <= 1e-3 * abs(
        blog["checksum"])
    print(f"| {shape} | {blog['seconds']:.3f} | {ours['seconds']:.4f} | "
          f"{blog['seconds'] / ours['seconds']:.0f}x | {blog['peak_mb']:.0f} "
          f"| {ours['peak_mb']:.0f} | {same} |", flush=True)
  r = _run("floor", *floor, reps=15)
  print("\n| vs floor (N, D, C) | Z.T @ Z s | class_covariances s | ratio "
        "(target <= 1.2) | Z.T @ Z MB | class_covariances MB |")
  print("|---|---|---|---|---|---|")
  print(f"| {floor} | {r['floor_seconds']:.4f} | {r['seconds']:.4f} | "
        f"{r['seconds'] / r['floor_seconds']:.2f} | {r['floor_mb']:.1f} | "
        f"{r['peak_mb']:.1f} |", flush=True)
  print("\n| streaming (N, D, C) | chunk | seconds | peak RSS growth after "
        "2 steps MB | XLA MB per update | state MB |")
  print("|---|---|---|---|---|---|")
  for shape in stream:
    r = _run("streaming", *shape, chunk=50_000)
    print(f"| {shape} | {r['chunk']} | {r['seconds']:.1f} | "
          f"{r['rss_mb']:.0f} | {r['xla_mb']:.0f} | {r['state_mb']:.1f} |")


if __name__ == "__main__":
  main()

"""One of N processes on localhost, joined by jax.distributed (CPU, gloo).

    python worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Each process loads its own data, runs the library's multi-process paths and
writes what it sees (from its addressable shards) to
OUT_DIR/process<PROCESS_ID>.npz; tests/test_multiprocess.py compares that
with one process on the concatenated data.
"""

import functools
import hashlib
import os
import re
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
process, num_processes, port, out_dir = sys.argv[1:]
process, num_processes = int(process), int(num_processes)
# Hooks for the launcher's own tests: die before joining, or never finish.
if os.environ.get("MULTIPROCESS_TEST_EXIT") == str(process):
  sys.exit(3)
while os.environ.get("MULTIPROCESS_TEST_HANG"):
  time.sleep(1)
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                           num_processes=num_processes, process_id=process)

import common as c
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import spectral_targets as st

assert jax.process_count() == num_processes == jax.device_count()
out = {}


def local(x):
  """This process's copy of a replicated global array."""
  assert x.is_fully_replicated
  return np.asarray(x.addressable_data(0))


def save_statistics(prefix, stats):
  for name in ("counts", "means", "scatter"):
    out[f"{prefix}/{name}"] = local(getattr(stats, name))


def save_metrics(prefix, m):
  for name in ("nc1", "nc2", "nc2_equinorm", "nc3", "nc4",
               "between_spectrum", "within_spectrum"):
    value = getattr(m, name)
    if value is not None:
      out[f"{prefix}/{name}"] = local(value)


# -- class statistics over a 1-D mesh of every process's device -------------
mesh = jax.make_mesh((num_processes,), ("batch",), axis_types=(AxisType.Auto,))
rows = NamedSharding(mesh, P("batch"))


def global_chunk(k):
  z, y = c.statistics_chunk(process, k)
  return (jax.make_array_from_process_local_data(rows, z),
          jax.make_array_from_process_local_data(rows, y))


chunks = [global_chunk(k) for k in range(c.CHUNKS)]
assert chunks[0][0].shape == (num_processes * c.ROWS, c.D)
assert chunks[0][0].addressable_shards[0].data.shape == (c.ROWS, c.D)
W = c.classifier()


# 1. all_reduce inside shard_map: local statistics, then two psums.
@jax.jit
@functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("batch"),) * 2,
                   out_specs=P())
def all_reduced(z, y):
  return st.ClassStatistics.zeros(c.C, c.D).update(z, y).all_reduce("batch")


z_all = jax.numpy.concatenate([z for z, _ in chunks])
y_all = jax.numpy.concatenate([y for _, y in chunks])
stats = all_reduced(z_all, y_all)
save_statistics("all_reduce", stats)
save_metrics("all_reduce", st.collapse_metrics_from_statistics(
    stats, classifier=W))

# 2. Streaming, global: each step's chunk is a global array; the jitted
# update reduces across processes (XLA's partitioner inserts the sums).
update = jax.jit(st.ClassStatistics.update)
stats = st.ClassStatistics.zeros(c.C, c.D)
for z, y in chunks:
  stats = update(stats, z, y)
save_statistics("stream_global", stats)
save_metrics("stream_global", st.collapse_metrics_from_statistics(stats))


# 3. Streaming, local: per-device accumulators, no communication until one
# all_reduce at the end (what a training loop does between reports).
@jax.jit
@functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("batch"),) * 3,
                   out_specs=P("batch"))
def local_update(acc, z, y):
  one = jax.tree.map(lambda x: x[0], acc)
  return jax.tree.map(lambda x: x[None], one.update(z, y))


@jax.jit
@functools.partial(jax.shard_map, mesh=mesh, in_specs=P("batch"),
                   out_specs=P())
def reduce_accumulators(acc):
  return jax.tree.map(lambda x: x[0], acc).all_reduce("batch")


acc = jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(rows, x[None]),
    st.ClassStatistics.zeros(c.C, c.D))
for z, y in chunks:
  acc = local_update(acc, z, y)
stats = reduce_accumulators(acc)
save_statistics("stream_local", stats)

# 4. Eager calls on global arrays (value checks run as global reductions).
m = st.collapse_metrics(z_all, y_all, c.C, classifier=W)
save_metrics("eager", m)
between, within = st.class_covariances(z_all, y_all, c.C)
out["eager/between"], out["eager/within"] = local(between), local(within)
bad = jax.make_array_from_process_local_data(
    rows, c.statistics_chunk(process, 0)[1] + c.C * (process == 1))
try:
  st.class_covariances(chunks[0][0], bad, c.C)
  out["bad_labels_error"] = ""
except ValueError as e:
  out["bad_labels_error"] = str(e)

# -- the codebook: built eagerly, identically, by every process -------------
codes = c.codebook()
out["codes"] = codes
# Every process checks that all hold the same codes (a 32-byte digest
# crosses processes, not the codebook).
digest = np.frombuffer(hashlib.sha256(codes.tobytes()).digest(), np.uint32)
multihost_utils.assert_equal(digest, "processes built different codebooks")

# -- a training step with the codebook sharded over classes ----------------
# Processes are laid out (data, classes): the codebook is split over
# classes, the batch over data; the processes of one data row (one class
# group) load the same rows, as in vocabulary-parallel heads, so that only
# per-example values cross between them, never a row of C logits.
mesh2 = jax.make_mesh((num_processes // 2, 2), ("data", "classes"),
                      axis_types=(AxisType.Auto,) * 2)
by_class = NamedSharding(mesh2, P("classes", None))
by_data = NamedSharding(mesh2, P("data"))
codebook = jax.make_array_from_callback(codes.shape, by_class,
                                        lambda index: codes[index])
model = c.Model(codebook)
# A NaN in process 1's shard only: every process's head refuses the codebook.
poisoned = codes.copy()
poisoned[-1, 2] = np.nan
try:
  st.nnx.CodebookHead(jax.make_array_from_callback(
      codes.shape, by_class, lambda index: poisoned[index]))
  out["nan_codebook_error"] = ""
except ValueError as e:
  out["nan_codebook_error"] = str(e)
# Parameters are replicated: every process made the same ones (same seed).
params = nnx.state(model, nnx.Param)
nnx.update(model, jax.tree.map(
    lambda x: jax.make_array_from_callback(
        x.shape, NamedSharding(mesh2, P()), lambda i: np.asarray(x)[i]),
    params))
opt = c.optimizer(model)
(row,) = [i for i, devices in enumerate(mesh2.devices)
          if any(dev.process_index == process for dev in devices)]
x, y = c.batch_rows(row, mesh2.shape["data"])
x = jax.make_array_from_process_local_data(by_data, x)
y = jax.make_array_from_process_local_data(by_data, y)

out["codebook_shards"] = np.array([s.data.shape for s in
                                   model.head.codebook[...].addressable_shards])
hlo = c.train_step.lower(model, opt, x, y).compile().as_text()
out["losses"] = np.array([local(c.train_step(model, opt, x, y))
                          for _ in range(c.STEPS)])
out["kernel"] = local(model.body.kernel[...])
out["bias"] = local(model.body.bias[...])
after = model.head.codebook[...]
out["codebook_shards_after"] = np.array([s.data.shape
                                         for s in after.addressable_shards])
out["codebook_rows_after"] = np.asarray(after.addressable_shards[0].data)
out["codebook_rows_index"] = np.array(
    after.addressable_shards[0].index[0].indices(c.CLASSES))
# What crosses processes: every collective's result shapes.
collective = re.compile(r"=\s*(.*?)\s(all-gather|all-reduce|all-to-all|"
                        r"collective-permute|reduce-scatter)(-start)?\(")
found = [m for m in map(collective.search, hlo.splitlines()) if m]
out["collectives"] = np.array([m.group(0)[:200] for m in found])
out["collective_max_dim"] = max(
    (int(n) for m in found for shape in re.findall(r"\[([\d,]*)\]",
                                                   m.group(1))
     for n in shape.split(",") if n), default=0)

np.savez(os.path.join(out_dir, f"process{process}.npz"), **out)
print("done", flush=True)

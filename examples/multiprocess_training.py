"""Train with a class-sharded codebook head on several processes (hosts).

Every process runs this same program (JAX's multi-controller model). The
processes form a (data, classes) mesh: the fixed codebook is split over the
class axis, so no process holds all C codes on its devices, and the batch
over the data axis; each process loads its own rows of scikit-learn's
bundled digits. Neural-collapse statistics are accumulated per device with
no communication and merged with ``ClassStatistics.all_reduce`` at each
report; process 0 prints ``collapse_metrics_from_statistics``.

The codebook is built by every process, eagerly and identically, from the
same kernel (``spectral_codebook`` is deterministic); a 32-byte digest
checks that they agree, and each process then keeps only its class shard.

On one machine, spawn N local processes (CPU devices, gloo collectives):

    python examples/multiprocess_training.py --num-processes 2

On real hosts, run on each (process ids 0 .. N-1, same coordinator):

    python examples/multiprocess_training.py --coordinator host0:12345 \\
        --process-id $i --num-processes N
"""

import argparse
import functools
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

C, D = 10, 9  # classes; code dimension (a simplex: C - 1)


def free_port():
  """A free TCP port on localhost, for the coordinator."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def spawn(commands, timeout, *, outputs=None, **popen):
  """Runs one process per command and waits for all of them.

  If one fails, or ``timeout`` seconds pass, every process still running is
  killed with everything it started (each leads its own session): a process
  left waiting in a collective for a dead peer would wait forever. Returns
  the exit codes (negative: killed by that signal). ``outputs``: per
  process, where its (stdout, stderr) go (default: this process's).
  """
  outputs = outputs or [(None, None)] * len(commands)
  procs = [subprocess.Popen(command, start_new_session=True, stdout=out,
                            stderr=err, **popen)
           for command, (out, err) in zip(commands, outputs)]
  deadline = time.monotonic() + timeout
  try:
    while time.monotonic() < deadline:
      codes = [p.poll() for p in procs]
      if None not in codes or any(codes):
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  return [p.returncode for p in procs]


def train(args):
  import jax

  # CPU collectives across processes; GPU and TPU hosts use their own.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes,
                             process_id=args.process_id)

  import numpy as np
  import optax
  from flax import nnx
  from jax.experimental import multihost_utils
  from jax.sharding import AxisType, NamedSharding
  from jax.sharding import PartitionSpec as P
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  import spectral_targets as st
  from spectral_targets.nnx import CodebookHead

  me = jax.process_index()

  # -- the mesh: processes split the classes, then the data ---------------
  shards = 2 if jax.process_count() % 2 == 0 else 1
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  # Class shard k lives on the k-th block of processes, so that a process's
  # devices all hold the same class shard.
  grid = np.array(devices, dtype=object).reshape(shards, -1).T
  mesh = jax.sharding.Mesh(grid, ("data", "classes"),
                           axis_types=(AxisType.Auto,) * 2)
  my_rows = sorted({r for r, row in enumerate(grid) for dev in row
                    if dev.process_index == me})
  num_rows = grid.shape[0]

  # -- the codebook: built here, by every process alike --------------------
  codes = np.asarray(st.spectral_codebook(st.flat(C), D))   # simplex ETF
  digest = np.frombuffer(hashlib.sha256(codes.tobytes()).digest(), np.uint32)
  multihost_utils.assert_equal(digest, "processes built different codebooks")
  codebook = jax.make_array_from_callback(
      codes.shape, NamedSharding(mesh, P("classes", None)),
      lambda index: codes[index])

  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.l1 = nnx.Linear(64, 128, rngs=rngs)
      self.l2 = nnx.Linear(128, D, rngs=rngs)
      self.head = CodebookHead(codebook, scale=16.0)

    def features(self, x):
      return self.l2(nnx.relu(self.l1(x)))

  model = MLP(nnx.Rngs(0))  # the same parameters on every process...
  replicated = NamedSharding(mesh, P())
  nnx.update(model, jax.tree.map(                # ...replicated over all
      lambda x: jax.make_array_from_callback(
          x.shape, replicated, lambda i: np.asarray(x)[i]),
      nnx.state(model, nnx.Param)))
  optimizer = nnx.Optimizer(model, optax.adam(args.learning_rate),
                            wrt=nnx.Param)

  # -- data: each data row loads its own part ------------------------------
  x, y = load_digits(return_X_y=True)
  x_tr, x_te, y_tr, y_te = train_test_split(
      (x / 16.0).astype(np.float32), y.astype(np.int32), test_size=0.25,
      stratify=y, random_state=0)
  by_data = NamedSharding(mesh, P("data"))

  def global_arrays(rows_of):
    """Global arrays split over "data" from this process's rows."""
    parts = [rows_of(r) for r in my_rows]
    return tuple(jax.make_array_from_process_local_data(
        by_data, np.concatenate(local)) for local in zip(*parts))

  def train_batch(step):
    def rows_of(r):
      own_x, own_y = x_tr[r::num_rows], y_tr[r::num_rows]
      pick = np.random.default_rng([r, step]).choice(
          len(own_y), args.batch, replace=False)
      return own_x[pick], own_y[pick]
    return global_arrays(rows_of)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    def loss_fn(model):
      z = model.features(x)
      ce = optax.softmax_cross_entropy_with_integer_labels(model.head(z), y)
      return ce.mean(), z
    (loss, z), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, z

  # -- live neural-collapse statistics -------------------------------------
  # One accumulator per data row (a leading axis split over "data"),
  # updated locally each step; all_reduce merges them only when reporting.
  def empty():
    return jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(
            by_data, np.zeros((len(my_rows), *a.shape), a.dtype)),
        st.ClassStatistics.zeros(C, D))

  row_map = functools.partial(jax.shard_map, mesh=mesh)

  @jax.jit
  @row_map(in_specs=(P("data"),) * 3, out_specs=P("data"))
  def accumulate(acc, z, y):
    one = jax.tree.map(lambda a: a[0], acc)
    return jax.tree.map(lambda a: a[None], one.update(z, y))

  @jax.jit
  @row_map(in_specs=P("data"), out_specs=P())
  def merged(acc):
    return jax.tree.map(lambda a: a[0], acc).all_reduce("data")

  if me == 0:
    print(f"{jax.process_count()} processes, mesh {dict(mesh.shape)}; "
          f"codebook shard {codebook.addressable_shards[0].data.shape} of "
          f"{codebook.shape} per process")
    print(" step    loss     NC1      NC2    NC3  Σ_B modes")
  stats = empty()
  for step in range(1, args.steps + 1):
    xb, yb = train_batch(step)
    loss, z = train_step(model, optimizer, xb, yb)
    stats = accumulate(stats, z, yb)
    if step % args.report_every == 0 or step == args.steps:
      m = st.collapse_metrics_from_statistics(merged(stats),
                                              classifier=codebook)
      if me == 0:
        print(f"{step:5d}  {float(loss):7.4f}  {float(m.nc1):7.4f}  "
              f"{float(m.nc2):6.3f}  {float(m.nc3):5.3f}  "
              f"{int(m.prototype_modes):4d}", flush=True)
      stats = empty()  # the next report covers the steps since this one

  # Every data row evaluates an equal part of the test split.
  n = len(y_te) // num_rows * num_rows
  xt, yt = global_arrays(lambda r: (x_te[:n][r::num_rows],
                                    y_te[:n][r::num_rows]))
  correct = nnx.jit(lambda m, x, y: (m.head(m.features(x)).argmax(-1) == y)
                    .sum())(model, xt, yt)
  if me == 0:
    print(f"test accuracy {int(correct) / n:.3f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-processes", type=int, default=2)
  parser.add_argument("--coordinator", help="host:port of process 0; "
                      "without it, spawn --num-processes local processes")
  parser.add_argument("--process-id", type=int)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--report-every", type=int, default=50)
  parser.add_argument("--batch", type=int, default=64,
                      help="rows per data shard per step")
  parser.add_argument("--learning-rate", type=float, default=3e-3)
  parser.add_argument("--timeout", type=float, default=3600,
                      help="kill every spawned process after this many "
                      "seconds")
  args = parser.parse_args()
  if args.coordinator is None:
    if args.process_id is not None:
      parser.error("--process-id needs --coordinator")
    argv = [sys.executable, __file__,
            *_without(sys.argv[1:], "--num-processes"),
            "--coordinator", f"127.0.0.1:{free_port()}",
            "--num-processes", str(args.num_processes)]
    # Only process 0 prints; the others' stdout would carry nothing but
    # gloo's connection notices, interleaved mid-line with process 0's.
    quiet = (subprocess.DEVNULL, None)
    codes = spawn([[*argv, "--process-id", str(i)]
                   for i in range(args.num_processes)], args.timeout,
                  outputs=[(None, None)] + [quiet] * (args.num_processes - 1))
    if any(codes):
      sys.exit(f"exit codes {codes} (a negative code: killed by that "
               "signal)")
    return
  if args.process_id is None:
    parser.error("--coordinator needs --process-id")
  train(args)


def _without(argv, flag):
  """argv without ``flag`` and its value (either ``flag v`` or ``flag=v``)."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
    elif a == flag:
      skip = True
    elif not a.startswith(flag + "="):
      out.append(a)
  return out


if __name__ == "__main__":
  main()

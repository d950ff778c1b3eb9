"""Multi-process JAX, for real: 2 and 4 processes on localhost (CPU, gloo),
joined by jax.distributed.initialize, each running tests/multiprocess/
worker.py on the data it loads itself. Their results are compared here with
one process on the concatenated data.

The workers are started by the example's launcher, which kills all of them
if any fails (the others would wait for it in a collective) or if the launch
outlives a generous deadline: a kill-safety for hung collectives, not a
measure of speed.
"""

import contextlib
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

import spectral_targets as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKERS = ROOT / "tests" / "multiprocess"
sys.path.insert(0, str(WORKERS))
import common as c
import reference as ref

# The launcher users run (examples/multiprocess_training.py) starts and, when
# one fails or hangs, kills the workers.
_spec = importlib.util.spec_from_file_location(
    "multiprocess_training", ROOT / "examples" / "multiprocess_training.py")
launcher = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launcher)

#: Seconds after which every worker is killed; a normal run takes well
#: under a minute even on 2 busy cores.
KILL_AFTER = 600


def launch(num_processes, out_dir, *, kill_after=KILL_AFTER, env=()):
  """Runs the worker as ``num_processes`` processes with the example's
  launcher; returns their exit codes and logs."""
  environ = {k: v for k, v in os.environ.items()
             if not k.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS"))
             and k != "XLA_FLAGS"}
  environ.update(JAX_PLATFORMS="cpu", **dict(env), PYTHONPATH=os.pathsep.join(
      filter(None, [str(ROOT), environ.get("PYTHONPATH")])))
  port = launcher.free_port()
  commands = [[sys.executable, str(WORKERS / "worker.py"), str(i),
               str(num_processes), str(port), str(out_dir)]
              for i in range(num_processes)]
  with contextlib.ExitStack() as stack:
    logs = [stack.enter_context(open(out_dir / f"process{i}.log", "w+"))
            for i in range(num_processes)]
    codes = launcher.spawn(commands, kill_after, cwd=ROOT, env=environ,
                           outputs=[(log, subprocess.STDOUT) for log in logs])
    for log in logs:
      log.seek(0)
    return codes, [log.read() for log in logs]


@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"{n}proc")
def run(request, tmp_path_factory):
  n = request.param
  out = tmp_path_factory.mktemp(f"multiprocess{n}")
  codes, logs = launch(n, out)
  assert codes == [0] * n, "\n\n".join(
      f"process {i} exited {code}:\n{log[-4000:]}"
      for i, (code, log) in enumerate(zip(codes, logs)))
  results = [dict(np.load(out / f"process{i}.npz")) for i in range(n)]
  return n, results


def same_on_every_process(results, key):
  first = results[0][key]
  for i, r in enumerate(results[1:], 1):
    np.testing.assert_array_equal(r[key], first, err_msg=f"{key}, process {i}")
  return first


def assert_statistics(results, prefix, want):
  np.testing.assert_array_equal(
      same_on_every_process(results, f"{prefix}/counts"), want.counts)
  np.testing.assert_allclose(same_on_every_process(results, f"{prefix}/means"),
                             want.means, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      same_on_every_process(results, f"{prefix}/scatter"), want.scatter,
      rtol=1e-5, atol=1e-4)


def assert_metrics(results, prefix, want, names):
  for name in names:
    got = same_on_every_process(results, f"{prefix}/{name}")
    np.testing.assert_allclose(got, getattr(want, name), rtol=1e-4,
                               atol=1e-5, err_msg=f"{prefix}/{name}")


def test_all_reduce_and_streaming_equal_one_process(run):
  n, results = run
  Z, y = c.statistics_data(n)
  want = st.ClassStatistics.zeros(c.C, c.D).update(Z, y)
  assert want.counts[-1] == 0 and want.counts[-2] > 0  # see statistics_chunk
  for prefix in ("all_reduce", "stream_global", "stream_local"):
    assert_statistics(results, prefix, want)
  metrics = st.collapse_metrics_from_statistics(want, classifier=c.classifier())
  names = ("nc1", "nc2", "nc2_equinorm", "between_spectrum", "within_spectrum")
  assert_metrics(results, "all_reduce", metrics, names + ("nc3",))
  assert_metrics(results, "stream_global", metrics, names)
  # And against float64, from the definitions.
  between, within = ref.class_covariances(Z, y, c.C)
  got = st.ClassStatistics(*(results[0][f"all_reduce/{k}"]
                             for k in ("counts", "means", "scatter")))
  np.testing.assert_allclose(got.covariances()[0], between, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(got.covariances()[1], within, rtol=1e-4,
                             atol=1e-5)


def test_eager_calls_on_global_arrays(run):
  n, results = run
  Z, y = c.statistics_data(n)
  want = st.collapse_metrics(Z, y, c.C, classifier=c.classifier())
  assert_metrics(results, "eager", want, (
      "nc1", "nc2", "nc2_equinorm", "nc3", "nc4", "between_spectrum",
      "within_spectrum"))
  for name, want in zip(("between", "within"),
                        st.class_covariances(Z, y, c.C)):
    np.testing.assert_allclose(
        same_on_every_process(results, f"eager/{name}"), want, rtol=1e-5,
        atol=1e-5)
  # Labels out of range on process 1 only: every process raises the same
  # error, from a reduction they all ran.
  error = str(same_on_every_process(results, "bad_labels_error"))
  assert error == f"labels must lie in [0, {c.C}); found values in [0, " \
      f"{c.C - 2 + c.C - 1}]."


def test_codebook_identical_on_every_process(run):
  _, results = run
  codes = same_on_every_process(results, "codes")
  assert codes.shape == (c.CLASSES, c.d)
  np.testing.assert_allclose(codes, c.codebook(), rtol=0, atol=1e-6)


def test_codebook_head_checks_a_sharded_codebook(run):
  _, results = run
  error = str(same_on_every_process(results, "nan_codebook_error"))
  assert error == f"codebook must be finite; found nan at index " \
      f"({c.CLASSES - 1}, 2)."


def test_class_sharded_training_steps_equal_one_process(run):
  _, results = run
  model = c.Model(results[0]["codes"])
  opt = c.optimizer(model)
  x, y = c.batch_rows(0, 1)
  losses = [c.train_step(model, opt, x, y) for _ in range(c.STEPS)]
  np.testing.assert_allclose(same_on_every_process(results, "losses"), losses,
                             rtol=1e-6)
  for name in ("kernel", "bias"):
    np.testing.assert_allclose(
        same_on_every_process(results, name),
        getattr(model.body, name)[...], rtol=1e-5, atol=1e-7, err_msg=name)


def test_no_process_holds_the_whole_codebook(run):
  _, results = run
  codes = results[0]["codes"]
  for r in results:
    for key in ("codebook_shards", "codebook_shards_after"):
      np.testing.assert_array_equal(r[key], [(c.CLASSES // 2, c.d)])
    start, stop, _ = r["codebook_rows_index"]
    np.testing.assert_array_equal(r["codebook_rows_after"], codes[start:stop])
  # Only per-example values cross processes in the step: no collective
  # carries a codebook shard or a row of logits over a class shard.
  collectives = same_on_every_process(results, "collectives")
  assert len(collectives), "expected reductions across the class shards"
  assert results[0]["collective_max_dim"] < c.CLASSES // 2, collectives


def test_a_failed_process_takes_the_others_down(tmp_path):
  # Process 1 dies before joining; process 0 would wait for it in
  # jax.distributed.initialize. The launcher kills it at once.
  codes, logs = launch(2, tmp_path, env={"MULTIPROCESS_TEST_EXIT": "1"})
  assert codes[1] == 3, logs[1]
  assert codes[0] == -signal.SIGKILL, logs[0]


def test_a_hung_launch_is_killed(tmp_path):
  # Neither process ever finishes; the deadline kills both.
  codes, _ = launch(2, tmp_path, kill_after=1,
                    env={"MULTIPROCESS_TEST_HANG": "1"})
  assert codes == [-signal.SIGKILL] * 2

"""The main job: `spectral-targets bench --quick` end to end."""

import json
import math
import subprocess
import sys

import pytest

from spectral_targets import _cli, bench

pytestmark = pytest.mark.skipif(bool(bench.missing_requirements()),
                                reason="bench extra not installed")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  proc = subprocess.run(
      [sys.executable, "-m", "spectral_targets", "bench", "--quick", "--out",
       str(out)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def test_quick_bench_writes_every_figure(quick_results):
  out, stdout = quick_results
  results = json.loads((out / "results.json").read_text())
  from spectral_targets.bench._run import METHODS, METRICS
  from spectral_targets.bench._tasks import TASKS
  assert set(results["tasks"]) == set(TASKS)
  for task, report in results["tasks"].items():
    assert set(report["methods"]) == set(METHODS)
    for method, r in report["methods"].items():
      for metric in METRICS:
        values = r["per_seed"][metric]
        assert len(values) == results["meta"]["seeds"] == 2
        assert all(math.isfinite(v) for v in values), (task, method, metric)
        assert math.isfinite(r["mean"][metric])
    assert (out / f"{task}.png").stat().st_size > 10_000
    assert f"### {task}" in stdout
  # The MNIST-1D reference models belong to the full run only.
  assert "reference" not in results["tasks"]["mnist1d"]
  md = (out / "results.md").read_text()
  assert md.count("| one-hot |") == len(TASKS)


def test_missing_extra_names_the_install(monkeypatch, capsys):
  monkeypatch.setattr(bench, "missing_requirements", lambda: ["mnist1d"])
  assert _cli.main(["bench", "--quick"]) == 2
  err = capsys.readouterr().err
  assert "mnist1d" in err and ".[bench]" in err


def test_bad_arguments(capsys):
  assert _cli.main(["bench", "--tasks", "imagenet"]) == 2
  assert "unknown task" in capsys.readouterr().err
  assert _cli.main(["bench", "--seeds", "0"]) == 2


# -- pieces of the benchmark ---------------------------------------------------


def test_initial_state_is_the_optimizers_own_init():
  import jax
  import numpy as np

  from spectral_targets.bench import _models as m
  body = m.make_body("mlp", 5)
  params = jax.tree_util.tree_map(
      lambda a: a[0], m.init_params(body, 6, 5, [0], np.zeros((2, 3),
                                                              np.float32)))
  tx = m.optimizer(100)
  ours, theirs = m.initial_state(tx, params), tx.init(params)
  assert (jax.tree_util.tree_structure(ours)
          == jax.tree_util.tree_structure(theirs))
  for a, b in zip(jax.tree_util.tree_leaves(ours),
                  jax.tree_util.tree_leaves(theirs)):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def test_cnn_windows_equal_flax_conv():
  """The vmap-friendly CNN (Dense layers on windows) is nn.Conv with the
  kernel reshaped: same outputs for the same weights."""
  import jax
  import numpy as np

  from spectral_targets.bench import _models as m
  x = np.random.default_rng(0).normal(size=(3, 40)).astype(np.float32)
  conv = m.make_body("cnn", 9, single=True)
  windows = m.make_body("cnn", 9)
  p_conv = conv.init(jax.random.key(1), x)
  P = p_conv["params"]
  convs = sorted(n for n in P if n.startswith("Conv_"))
  assert len(convs) == 3 and set(P) == {*convs, "Dense_0"}
  p_win = {"params": {f"Dense_{i}": {
      "kernel": P[n]["kernel"].reshape(-1, P[n]["kernel"].shape[-1]),
      "bias": P[n]["bias"]} for i, n in enumerate(convs)}}
  p_win["params"]["Dense_3"] = P["Dense_0"]
  np.testing.assert_allclose(windows.apply(p_win, x), conv.apply(p_conv, x),
                             rtol=1e-5, atol=1e-5)


def test_compiler_compiles_once_per_key():
  import jax
  import numpy as np

  from spectral_targets.bench._compile import Compiler
  with Compiler(workers=2) as programs:
    programs.submit(("t", "double"), jax.jit(lambda x: 2 * x),
                    jax.ShapeDtypeStruct((3,), np.float32))
    programs.submit("square", jax.jit(lambda x: x * x),
                    np.ones(2, np.float32), options={
                        "xla_backend_optimization_level": 0})
    with pytest.raises(ValueError, match="already submitted"):
      programs.submit("square", jax.jit(lambda x: x), np.ones(2))
    np.testing.assert_array_equal(
        programs[("t", "double")](np.arange(3, dtype=np.float32)), [0, 2, 4])
    np.testing.assert_array_equal(programs["square"](np.full(2, 3.0,
                                                             np.float32)),
                                  [9, 9])
    programs.wait()
    programs.forget("t")
    assert ("t", "double") not in programs and "square" in programs


def test_mnist1d_reference_models():
  """The full run's MNIST-1D reference (logistic regression and MLP, one-hot)
  trains and scores through the same compiled programs as the methods."""
  from spectral_targets.bench import _run, _tasks
  from spectral_targets.bench._compile import Compiler
  task = _tasks.subsample(_tasks.mnist1d_task(), 200)
  run = _run.TaskRun(task, _run.Budget(seeds=2, epochs=2, fast_compile=True))
  with Compiler() as programs:
    run.programs = programs
    for body in run._reference_bodies().values():
      run._submit_train(body, 2)
      run._submit_predict(body, 2, run.x_test)
    ref = run.mnist1d_reference([0.5, 0.7])
  assert set(ref) == {"CNN", "logistic regression", "MLP"}
  assert ref["CNN"]["accuracy"]["mean"] == pytest.approx(0.6)
  assert ref["logistic regression"]["paper"] == 0.32
  for r in ref.values():
    assert 0 <= r["accuracy"]["mean"] <= 1 and r["accuracy"]["std"] >= 0

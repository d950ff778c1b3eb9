"""The user's --data FILE.npz, end to end on files written here: both
layouts, the hierarchy and kernel options, and the errors."""

import json

import numpy as np
import pytest

from spectral_targets import _cli

import spectral_targets as st
from spectral_targets.bench import _user_data as ud

import reference as ref


def blobs(rng, n, C=4, D=6):
  y = np.repeat(np.arange(C), n // C)
  x = rng.normal(size=(C, D))[y] * 3 + rng.normal(size=(len(y), D))
  return x.astype(np.float32), y


def test_one_pool_is_resplit_per_seed(tmp_path):
  rng = np.random.default_rng(0)
  x, y = blobs(rng, 200)
  path = tmp_path / "emb.npz"
  np.savez(path, x=x, y=y)
  data = ud.load_user_data(path)
  assert (data.name, data.num_classes, data.input_shape) == ("emb", 4, (6,))
  assert data.class_names == ("0", "1", "2", "3")
  assert data.kernel is None and data.distances is None and data.tree is None
  a, b = data.draw(0), data.draw(1)
  assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 200
  assert np.abs(np.bincount(a.y_test) - 12.5).max() <= 1  # stratified
  assert not np.array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(data.draw(0).x_test, a.x_test)
  np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-5)
  assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32


def test_given_splits_keep_the_test_set(tmp_path):
  rng = np.random.default_rng(1)
  (x, y), (xt, yt) = blobs(rng, 100), blobs(rng, 40)
  path = tmp_path / "given.npz"
  np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
  data = ud.load_user_data(path)
  a, b = data.draw(0), data.draw(5)
  np.testing.assert_array_equal(a.y_test, yt)
  np.testing.assert_array_equal(b.y_test, yt)
  # The same test inputs, standardised by each seed's training part: an
  # increasing affine map of the file's, column by column.
  for got in (a.x_test, b.x_test):
    slope = np.polyfit(xt[:, 0], got[:, 0], 1)[0]
    np.testing.assert_allclose(got[:, 0], np.polyval(
        np.polyfit(xt[:, 0], got[:, 0], 1), xt[:, 0]), atol=1e-5)
    assert slope > 0
  assert len(a.y_val) == 20 and not np.array_equal(a.x_val, b.x_val)
  np.savez(path, x_train=x, y_train=y, x_val=xt[:8], y_val=yt[:8],
           x_test=xt, y_test=yt)
  fixed = ud.load_user_data(path)
  np.testing.assert_array_equal(fixed.draw(0).x_val, fixed.draw(3).x_val)
  assert len(fixed.draw(0).y_train) == 100


def test_hierarchy_gives_kernel_tree_and_lca_heights(tmp_path):
  rng = np.random.default_rng(2)
  x, y = blobs(rng, 80)
  names = np.array(["cat", "dog", "car", "bus"])
  tree_file = tmp_path / "tree.txt"
  tree_file.write_text("root animal\nroot vehicle\nanimal cat\nanimal dog\n"
                       "vehicle car\nvehicle bus\n")
  path = tmp_path / "named.npz"
  np.savez(path, x=x, y=y, class_names=names)
  data = ud.load_user_data(path, hierarchy=tree_file)
  edges = st.load_hierarchy(tree_file)
  S = ref.lca_kernel(edges, list(names))
  np.testing.assert_allclose(data.kernel, S)
  # LCA heights: 0 on the diagonal, 1 within a superclass, 2 across.
  np.testing.assert_allclose(data.distances, [[0, 1, 2, 2], [1, 0, 2, 2],
                                              [2, 2, 0, 1], [2, 2, 1, 0]])
  assert data.tree.classes == tuple(names)
  assert "lowest common ancestor" in data.distance_unit
  with pytest.raises(ValueError, match="kernel and a hierarchy"):
    np.savez(path, x=x, y=y, class_names=names, kernel=S)
    ud.load_user_data(path, hierarchy=tree_file)


def test_kernel_and_distances_from_the_file(tmp_path):
  rng = np.random.default_rng(3)
  x, y = blobs(rng, 40)
  K = np.asarray(st.graded(4, 1.0), np.float64)
  D = np.abs(np.subtract.outer(np.arange(4), np.arange(4))).astype(float)
  path = tmp_path / "k.npz"
  np.savez(path, x=x, y=y, kernel=K, distances=D)
  data = ud.load_user_data(path)
  np.testing.assert_array_equal(data.kernel, K)
  np.testing.assert_array_equal(data.distances, D)
  np.savez(path, x=x, y=y, kernel=K)
  np.testing.assert_allclose(ud.load_user_data(path).distances, 1 - K)


@pytest.mark.parametrize("arrays, message", [
    (dict(x=np.zeros((4, 2))), "give either x and y"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4, int), x_test=np.zeros((1, 2))),
     "give either x and y"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4)), "integer labels"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(3, int)), "has 4 rows"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), r"\(N, \.\.\.\) numbers"),
    (dict(x=np.full((2, 2), np.nan), y=np.zeros(2, int)), "non-finite"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 0, 2, 2])),
     r"classes \[1\] have no training example"),
    (dict(x=np.zeros((2, 2)), y=np.array([0, 1]), class_names=np.array(["a"])),
     "only 1 class_names"),
    (dict(x=np.zeros((2, 2)), y=np.array([0, 1]), kernel=np.eye(3)),
     r"kernel must be a finite \(2, 2\)"),
    (dict(x=np.zeros((2, 2)), y=np.array([0, 1]),
          kernel=np.array([[1., 0.], [0.5, 1.]])), "kernel must be symmetric"),
    (dict(x=np.zeros((2, 2)), y=np.array([0, 1]), labels=np.zeros(2)),
     "unknown arrays"),
])
def test_errors_name_the_file_and_array(tmp_path, arrays, message):
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=message):
    ud.load_user_data(path)


def test_refuses_pickled_objects(tmp_path):
  path = tmp_path / "obj.npz"
  np.savez(path, x=np.zeros((2, 2)), y=np.array([0, 1]),
           class_names=np.array([{"a": 1}, None], dtype=object))
  with pytest.raises(ValueError, match="allow_pickle"):
    ud.load_user_data(path)


# -- the user task of the benchmark, through the command line --------------------

TREE = ("root animal\nroot vehicle\nanimal cat\nanimal dog\n"
        "vehicle car\nvehicle bus\n")


def test_user_task_recipe(tmp_path):
  rng = np.random.default_rng(4)
  x, y = blobs(rng, 80)
  path = tmp_path / "img.npz"
  np.savez(path, x=x.reshape(80, 2, 3), y=y)  # 2-axis samples: flattened
  task = ud.user_task(path, body="mlp")
  assert (task.name, task.body, task.num_classes) == ("user", "mlp", 4)
  assert task.kernel is None and task.tree is None
  split = task.draw(0)
  assert split.x_train.shape[1:] == (6,)
  assert "flattened to 6 features" in task.construction
  assert task.small_d == 3  # ⌈log2 4⌉ + 1
  with pytest.raises(ud.InputError, match="unknown body 'cnn'") as e:
    ud.user_task(path, body="cnn")
  assert e.value.argument == "body"


def test_bench_data_with_hierarchy_end_to_end(tmp_path, capsys):
  rng = np.random.default_rng(5)
  x, y = blobs(rng, 160)
  data, tree = tmp_path / "emb.npz", tmp_path / "tree.txt"
  np.savez(data, x=x, y=y, class_names=np.array(["cat", "dog", "car", "bus"]))
  tree.write_text(TREE)
  out = tmp_path / "out"
  # One epoch and the methods the checks below name (one-hot and cosine
  # always run): the path of --data and --hierarchy, not the methods'
  # training, which the quick run of the built-in tasks covers.
  assert _cli.main(["bench", "--quick", "--seeds", "2", "--epochs", "1",
                    "--methods", "simplex", "spectral", "hxe",
                    "kernel-soft-labels", "--data", str(data),
                    "--hierarchy", str(tree), "--out", str(out)]) == 0
  results = json.loads((out / "results.json").read_text())
  assert list(results["tasks"]) == ["user"]  # --data alone: only its task
  assert results["meta"]["inputs"] == {"data": str(data),
                                       "hierarchy": str(tree)}
  report = results["tasks"]["user"]
  assert report["body"].startswith("linear") and report["crm"] is True
  assert "lowest common ancestor in tree.txt" in report["distance_unit"]
  assert report["kernel"].startswith("true")
  methods = report["methods"]
  assert {"one-hot", "cosine", "simplex", "spectral", "hxe",
          "kernel-soft-labels"} <= set(methods)
  for name, r in methods.items():
    for k in ("accuracy", "severity", "hdist@1", "nll", "crm_severity"):
      assert len(r["per_seed"][k]) == 2, (name, k)
  assert "vs one-hot + CRM" in methods["hxe"]
  assert set(methods["simplex"]["vs one-hot"]) >= {"accuracy", "severity"}
  assert "Classifiers without a training loop" in report["references"]
  md = (out / "results.md").read_text()
  assert "### user: the user's data (emb.npz" in md
  assert "Post-hoc control" in md


def test_bench_data_given_splits_without_hierarchy(tmp_path, capsys):
  # No hierarchy: no tree method, no CRM block, the kernel estimated; the
  # file's test split fixed; an MLP probe.
  rng = np.random.default_rng(6)
  (x, y), (xt, yt) = blobs(rng, 120), blobs(rng, 40)
  data = tmp_path / "given.npz"
  np.savez(data, x_train=x, y_train=y, x_test=xt, y_test=yt)
  out = tmp_path / "out"
  assert _cli.main(["bench", "--quick", "--seeds", "1", "--epochs", "1",
                    "--methods", "one-hot", "--data", str(data), "--body",
                    "mlp", "--out", str(out)]) == 0
  report = json.loads((out / "results.json").read_text())["tasks"]["user"]
  assert set(report["methods"]) == {"one-hot", "cosine"}
  assert report["crm"] is False and report["body"].startswith("MLP")
  assert report["kernel"].startswith("estimated")
  assert report["sizes"].endswith(" / 40")


@pytest.mark.parametrize("make, args, message", [
    (None, [], "argument --data: {path}: no such file"),
    (dict(inputs=np.zeros((4, 2)), y=np.zeros(4, int)), [],
     "argument --data: {path}: unknown arrays ['inputs']"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(3, int)), [],
     "argument --data: {path}: x has 4 rows but its labels 3"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), [],
     "argument --data: {path}: x must be (N, ...) numbers"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 0, 1, 1]), kernel=np.eye(3)),
     [], "argument --data: {path}: kernel must be a finite (2, 2) matrix"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4, int)), [],
     "argument --data: {path}: the labels hold one class"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 0, 1, 1]),
          class_names=np.array(["cat", "cow"])), ["--hierarchy", "{tree}"],
     "argument --hierarchy: {tree}: classes not in the hierarchy: ['cow']"),
    (dict(x=np.zeros((4, 2)), y=np.array([0, 0, 1, 1])),
     ["--hierarchy", "{tree}.missing"],
     "argument --hierarchy: {tree}.missing: cannot read it"),
])
def test_bench_data_errors(tmp_path, capsys, make, args, message):
  path, tree = tmp_path / "bad.npz", tmp_path / "tree.txt"
  tree.write_text(TREE)
  if make is not None:
    np.savez(path, **make)
  out = tmp_path / "out"
  args = [a.format(tree=tree) for a in args]
  assert _cli.main(["bench", "--quick", "--data", str(path), *args, "--out",
                    str(out)]) == 2
  err = capsys.readouterr().err
  assert ("spectral-targets bench: error: "
          + message.format(path=path, tree=tree)) in err
  assert not out.exists()  # failed before any work


@pytest.mark.parametrize("args, message", [
    (["--hierarchy", "tree.txt"],
     "argument --hierarchy: --hierarchy describes the --data file's task"),
    (["--body", "mlp"],
     "argument --body: --body describes the --data file's task"),
    (["--data", "x.npz", "--body", "cnn"],
     "argument --body: unknown body 'cnn'; choose from linear, mlp"),
    (["--tasks", "user"], "argument --tasks: unknown task 'user'"),
])
def test_bench_data_flag_errors(tmp_path, capsys, args, message):
  assert _cli.main(["bench", *args, "--out", str(tmp_path / "o")]) == 2
  assert f"spectral-targets bench: error: {message}" in capsys.readouterr().err

"""The CIFAR-100 reader on small archives written here in the official
format (Python pickles of dicts in cifar-100-python/ inside a .tar.gz)."""

import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest

import spectral_targets as st
from spectral_targets.bench import _cifar100 as cifar

EDGES, CLASSES = st.cifar100_hierarchy("superclasses")
COARSE = tuple(sorted({p for p, c in EDGES if c in CLASSES}))


def fake_part(rng, n, fine=None):
  """n random images with consistent labels (``fine``, default random),
  and their planes as CIFAR stores them: each row is R then G then B,
  every plane row-major."""
  images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
  fine = rng.integers(0, 100, size=n) if fine is None else fine
  parent = dict((c, p) for p, c in EDGES)
  coarse = [COARSE.index(parent[CLASSES[k]]) for k in fine]
  rows = np.stack([np.concatenate([images[i, :, :, ch].ravel()
                                   for ch in range(3)]) for i in range(n)])
  part = {"data": rows, "fine_labels": [int(k) for k in fine],
          "coarse_labels": coarse, "batch_label": "testing batch 1 of 1",
          "filenames": [f"img_{i}.png" for i in range(n)]}
  return images, part


def write_archive(path, parts, meta):
  with tarfile.open(path, "w:gz") as tar:
    for name, obj in [*parts.items(), ("meta", meta)]:
      raw = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
      info = tarfile.TarInfo(f"cifar-100-python/{name}")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))


@pytest.fixture
def archive(tmp_path):
  rng = np.random.default_rng(0)
  (train_x, train), (test_x, test) = fake_part(rng, 12), fake_part(rng, 5)
  meta = {"fine_label_names": list(CLASSES),
          "coarse_label_names": list(COARSE)}
  path = tmp_path / "cifar-100-python.tar.gz"
  write_archive(path, {"train": train, "test": test}, meta)
  return path, (train_x, train), (test_x, test), meta


def test_reads_images_labels_and_names(archive):
  path, (train_x, train), (test_x, test), _ = archive
  for where in (path, path.parent):
    d = cifar.read_cifar100(where)
    np.testing.assert_array_equal(d.x_train, train_x)
    np.testing.assert_array_equal(d.x_test, test_x)
    np.testing.assert_array_equal(d.fine_train, train["fine_labels"])
    np.testing.assert_array_equal(d.coarse_test, test["coarse_labels"])
    assert d.x_train.shape == (12, 32, 32, 3) and d.x_train.dtype == np.uint8
    assert d.fine_names == CLASSES and d.coarse_names == COARSE
    assert d.fine_train.dtype == np.int32


def test_reads_the_unpacked_folder(archive, tmp_path):
  path, (train_x, _), _, _ = archive
  out = tmp_path / "unpacked"
  with tarfile.open(path) as tar:
    tar.extractall(out, filter="data")
  d = cifar.read_cifar100(out)
  np.testing.assert_array_equal(d.x_train, train_x)


def test_python2_byte_keys(tmp_path):
  # The official files were written by Python 2: read as latin-1, keys
  # may come back as bytes, which the reader accepts too.
  rng = np.random.default_rng(1)
  (x, part), (_, test) = fake_part(rng, 3), fake_part(rng, 2)
  as_bytes = {k.encode(): v for k, v in part.items()}
  meta = {b"fine_label_names": list(CLASSES),
          b"coarse_label_names": list(COARSE)}
  path = tmp_path / "c.tar.gz"
  write_archive(path, {"train": as_bytes, "test": test}, meta)
  np.testing.assert_array_equal(cifar.read_cifar100(path).x_train, x)


def test_refuses_a_pickle_that_runs_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  rng = np.random.default_rng(2)
  (_, train), (_, test) = fake_part(rng, 2), fake_part(rng, 2)
  train["filenames"] = Evil()
  path = tmp_path / "c.tar.gz"
  write_archive(path, {"train": train, "test": test},
                {"fine_label_names": list(CLASSES),
                 "coarse_label_names": list(COARSE)})
  with pytest.raises(ValueError, match="only NumPy arrays"):
    cifar.read_cifar100(path)


def test_inconsistent_or_missing_contents(tmp_path):
  rng = np.random.default_rng(3)
  (_, train), (_, test) = fake_part(rng, 4), fake_part(rng, 2)
  meta = {"fine_label_names": list(CLASSES),
          "coarse_label_names": list(COARSE)}
  bad = dict(train, coarse_labels=[(c + 1) % 20 for c in
                                   train["coarse_labels"]])
  path = tmp_path / "a.tar.gz"
  write_archive(path, {"train": bad, "test": test}, meta)
  with pytest.raises(ValueError, match="its superclass is"):
    cifar.read_cifar100(path)
  write_archive(path, {"train": train, "test": test},
                dict(meta, fine_label_names=list(CLASSES[::-1])))
  with pytest.raises(ValueError, match="fine_label_names"):
    cifar.read_cifar100(path)
  write_archive(path, {"train": train}, meta)
  with pytest.raises(ValueError, match="lacks cifar-100-python/test"):
    cifar.read_cifar100(path)
  with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
    cifar.read_cifar100(tmp_path / "nowhere")


# -- the cifar100 task of the benchmark ------------------------------------------


def full_archive(folder, per_class=10):
  """An archive with every class: ``per_class`` training images a class
  (so a 10% validation split keeps one of each) and one test image."""
  rng = np.random.default_rng(4)
  train_fine = np.repeat(np.arange(100), per_class)
  (_, train), (_, test) = (fake_part(rng, len(train_fine), train_fine),
                           fake_part(rng, 100, np.arange(100)))
  write_archive(folder / cifar.ARCHIVE, {"train": train, "test": test},
                {"fine_label_names": list(CLASSES),
                 "coarse_label_names": list(COARSE)})
  return train, test


def test_task_splits_and_tree(tmp_path):
  train, test = full_archive(tmp_path)
  task = cifar.cifar100_task(tmp_path)
  assert (task.name, task.num_classes, task.body) == ("cifar100", 100, "mlp")
  edges, classes = st.cifar100_hierarchy("wordnet")
  np.testing.assert_allclose(task.kernel,
                             st.from_hierarchy(edges, classes=classes))
  assert task.tree.classes == classes
  a, b = task.draw(0), task.draw(1)
  assert a.x_train.shape == (900, 3072) and a.x_val.shape == (100, 3072)
  np.testing.assert_array_equal(np.bincount(a.y_val), np.ones(100))
  np.testing.assert_array_equal(a.y_test, test["fine_labels"])
  assert not np.array_equal(a.y_train, b.y_train) or not np.array_equal(
      a.x_val, b.x_val)
  # Standardised on the training part only: column means 0 there.
  np.testing.assert_allclose(a.x_train.mean(0), 0, atol=1e-4)
  # The flattened test row is the image's pixels in (row, column,
  # channel) order, up to the per-column affine standardisation.
  raw = cifar.read_cifar100(tmp_path).x_test.reshape(100, -1)
  col = 5
  fit = np.polyfit(raw[:, col].astype(float), a.x_test[:, col], 1)
  np.testing.assert_allclose(np.polyval(fit, raw[:, col]), a.x_test[:, col],
                             atol=1e-4)


def test_task_without_data_refuses_with_where_to_get_it(tmp_path):
  from spectral_targets.bench._tasks import InputError
  with pytest.raises(InputError, match="--data-dir") as e:
    cifar.cifar100_task(None)
  assert e.value.argument == "data_dir"
  assert cifar.SOURCE in str(e.value)
  with pytest.raises(InputError, match="no CIFAR-100 data") as e:
    cifar.cifar100_task(tmp_path)
  assert e.value.argument == "data_dir"
  (tmp_path / cifar.ARCHIVE).write_bytes(b"not a tar file")
  with pytest.raises(InputError, match="cannot read the CIFAR-100 archive"):
    cifar.cifar100_task(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--tasks", "cifar100"],
     "argument --data-dir: the cifar100 task reads the official CIFAR-100 "
     "python archive (cifar-100-python.tar.gz, from https://"),
    (["--tasks", "cifar100", "--data-dir", "{empty}"],
     "argument --data-dir: no CIFAR-100 data at {empty}/"
     "cifar-100-python.tar.gz"),
    (["--tasks", "digits", "--data-dir", "{empty}"],
     "argument --data-dir: only the cifar100 task reads --data-dir"),
])
def test_command_line_errors(tmp_path, capsys, args, message):
  from spectral_targets import _cli
  empty = tmp_path / "empty"
  empty.mkdir()
  out = tmp_path / "out"
  args = [a.format(empty=empty) for a in args]
  assert _cli.main(["bench", "--quick", "--out", str(out), *args]) == 2
  err = capsys.readouterr().err
  assert f"spectral-targets bench: error: {message.format(empty=empty)}" in err
  assert not out.exists()  # failed before any work


def test_command_line_end_to_end(tmp_path, capsys):
  from spectral_targets import _cli
  full_archive(tmp_path)
  out = tmp_path / "out"
  assert _cli.main(["bench", "--quick", "--tasks", "cifar100", "--data-dir",
                    str(tmp_path), "--seeds", "1", "--epochs", "1",
                    "--methods", "one-hot", "--out", str(out)]) == 0
  results = json.loads((out / "results.json").read_text())
  assert list(results["tasks"]) == ["cifar100"]
  assert results["meta"]["inputs"] == {"data_dir": str(tmp_path)}
  report = results["tasks"]["cifar100"]
  assert report["num_classes"] == 100 and report["crm"] is True
  assert "not a competitive CIFAR-100 number" in report["description"]
  assert set(report["methods"]) == {"one-hot", "cosine"}
  for r in report["methods"].values():
    for k in ("accuracy", "severity", "hdist@5", "crm_severity"):
      assert len(r["per_seed"][k]) == 1 and np.isfinite(r["per_seed"][k][0])
  assert "vs one-hot + CRM" in report["methods"]["cosine"]
  assert "### cifar100" in (out / "results.md").read_text()

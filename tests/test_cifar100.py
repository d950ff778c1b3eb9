"""The CIFAR-100 reader on small archives written here in the official
format (Python pickles of dicts in cifar-100-python/ inside a .tar.gz)."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

import spectral_targets as st
from spectral_targets.bench import _cifar100 as cifar

EDGES, CLASSES = st.cifar100_hierarchy("superclasses")
COARSE = tuple(sorted({p for p, c in EDGES if c in CLASSES}))


def fake_part(rng, n):
  """n random images with consistent labels, and their planes as CIFAR
  stores them: each row is R then G then B, every plane row-major."""
  images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
  fine = rng.integers(0, 100, size=n)
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

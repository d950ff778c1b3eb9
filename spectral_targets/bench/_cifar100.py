"""A reader for the official CIFAR-100 python archive (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html), for the ``cifar100`` task.

``cifar-100-python.tar.gz`` holds a folder ``cifar-100-python/`` with three
pickles: ``train`` and ``test`` (dicts with ``data``, a (N, 3072) uint8
array, each row the red, green and blue 32 x 32 planes in row-major order,
and the lists ``fine_labels`` and ``coarse_labels``) and ``meta``
(``fine_label_names``, ``coarse_label_names``). They were written by
Python 2, so their keys are byte strings read as latin-1.

A pickle can run code when loaded; these are unpickled with a loader that
admits only what the official files contain (NumPy arrays, their dtypes,
and plain containers), so a tampered file fails instead of running
anything. The class names are checked against the CIFAR-100 tree shipped
with the package (``cifar100_hierarchy``): fine label k must be the
shipped tree's class k and every coarse label its superclass, so the tree
the methods are given is the data's own.

``cifar100_task`` is the benchmark's ``cifar100`` task on the archive: the
fine labels are the classes; the methods are given the shipped WordNet
tree (its LCA kernel, and the tree itself for hierarchical cross-entropy)
and scored by its LCA heights, as on the ``hierarchy`` task; the coarse
labels are checked against the shipped superclasses (the reader above).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import pickle
import tarfile

import numpy as np

import spectral_targets as st
from spectral_targets.bench._tasks import (
  InputError,
  Split,
  Task,
  _standardise,
  lca_heights,
  stratified_split,
)

ARCHIVE = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"
#: Where the archive comes from.
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
#: Per-seed validation fraction of the official training split.
VAL_FRACTION = 0.1
#: Training epochs of the cifar100 task (``--epochs`` overrides).
CIFAR100_EPOCHS = 20
#: What an official CIFAR pickle may reconstruct (NumPy's array pickling,
#: under its NumPy 1 and NumPy 2 module names, and the latin-1 encoding a
#: protocol-2 pickle written by Python 3 stores bytes with).
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


@dataclasses.dataclass(frozen=True)
class Cifar100:
  """The archive's contents: images (N, 32, 32, 3) uint8 (height, width,
  channel), fine labels (N,) int32 in [0, 100), coarse labels (N,) int32
  in [0, 20), and the names of both label sets in label order."""
  x_train: np.ndarray
  fine_train: np.ndarray
  coarse_train: np.ndarray
  x_test: np.ndarray
  fine_test: np.ndarray
  coarse_test: np.ndarray
  fine_names: tuple[str, ...]
  coarse_names: tuple[str, ...]


class _Unpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(
        f"a CIFAR-100 pickle holds only NumPy arrays and plain containers; "
        f"this one asks for {module}.{name}")


def _unpickle(raw: bytes, where: str) -> dict:
  try:
    obj = _Unpickler(io.BytesIO(raw), encoding="latin1").load()
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    raise ValueError(f"{where}: not a CIFAR-100 pickle ({e})") from None
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a dict, got {type(obj).__name__}")
  return {k.decode("latin1") if isinstance(k, bytes) else k: v
          for k, v in obj.items()}


def _members(path: pathlib.Path) -> dict[str, bytes]:
  """The raw ``train``, ``test`` and ``meta`` pickles from the archive, or
  from a folder holding the archive or the unpacked ``cifar-100-python/``."""
  names = ("train", "test", "meta")
  if path.is_dir():
    unpacked = path / FOLDER
    if unpacked.is_dir():
      return {n: (unpacked / n).read_bytes() for n in names
              if (unpacked / n).is_file()}
    path = path / ARCHIVE
  if not path.is_file():
    raise FileNotFoundError(
        f"no CIFAR-100 data at {path}: pass the official {ARCHIVE} (from "
        "https://www.cs.toronto.edu/~kriz/cifar.html) or a folder holding "
        f"it or its unpacked {FOLDER}/ folder")
  out = {}
  with tarfile.open(path, "r:gz") as tar:
    for n in names:
      try:
        member = tar.extractfile(f"{FOLDER}/{n}")
      except KeyError:
        continue
      if member is not None:
        out[n] = member.read()
  return out


def _part(d: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  missing = {"data", "fine_labels", "coarse_labels"} - set(d)
  if missing:
    raise ValueError(f"{where}: missing {sorted(missing)}")
  data = np.asarray(d["data"])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
    raise ValueError(f"{where}: data must be (N, 3072) uint8, got "
                     f"{data.shape} {data.dtype}")
  fine = np.asarray(d["fine_labels"], np.int32)
  coarse = np.asarray(d["coarse_labels"], np.int32)
  if fine.shape != (len(data),) or coarse.shape != (len(data),):
    raise ValueError(f"{where}: {len(data)} images but {fine.shape} fine "
                     f"and {coarse.shape} coarse labels")
  if fine.size and not (0 <= fine.min() and fine.max() < 100
                        and 0 <= coarse.min() and coarse.max() < 20):
    raise ValueError(f"{where}: labels out of range (fine in [0, 100), "
                     "coarse in [0, 20))")
  # Planes (channel, row, column) to images (row, column, channel).
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), fine, coarse


def read_cifar100(path: str | os.PathLike[str]) -> Cifar100:
  """Reads the official CIFAR-100 python archive (see the module
  docstring); ``path`` is the archive or a folder holding it (or its
  unpacked folder)."""
  path = pathlib.Path(path)
  raw = _members(path)
  missing = {"train", "test", "meta"} - set(raw)
  if missing:
    raise ValueError(f"{path}: {ARCHIVE} lacks {FOLDER}/"
                     f"{', '.join(sorted(missing))}")
  meta = _unpickle(raw["meta"], f"{path}: meta")
  fine_names = tuple(meta.get("fine_label_names", ()))
  coarse_names = tuple(meta.get("coarse_label_names", ()))
  x_tr, f_tr, c_tr = _part(_unpickle(raw["train"], f"{path}: train"),
                           f"{path}: train")
  x_te, f_te, c_te = _part(_unpickle(raw["test"], f"{path}: test"),
                           f"{path}: test")
  _check_names(fine_names, coarse_names, (f_tr, c_tr), (f_te, c_te),
               path=path)
  return Cifar100(x_tr, f_tr, c_tr, x_te, f_te, c_te, fine_names,
                  coarse_names)


def _check_names(fine_names, coarse_names, *parts, path):
  """Fine label k is the shipped tree's class k, and every coarse label
  is its class's superclass there."""
  edges, classes = st.cifar100_hierarchy("superclasses")
  if fine_names != classes:
    differ = [(a, b) for a, b in zip(fine_names, classes) if a != b][:3]
    raise ValueError(f"{path}: meta's fine_label_names are not CIFAR-100's "
                     f"classes in label order ({len(fine_names)} names; "
                     f"first differences (file, expected): {differ})")
  parent = {child: p for p, child in edges}
  if set(coarse_names) != {parent[c] for c in classes} or len(
      coarse_names) != 20:
    raise ValueError(f"{path}: meta's coarse_label_names are not "
                     "CIFAR-100's 20 superclasses")
  expected = np.array([coarse_names.index(parent[c]) for c in classes],
                      np.int32)
  for fine, coarse in parts:
    wrong = np.flatnonzero(expected[fine] != coarse)
    if wrong.size:
      i = int(wrong[0])
      raise ValueError(
          f"{path}: image {i} has fine label {fine[i]} "
          f"({classes[fine[i]]}) but coarse label {coarse[i]} "
          f"({coarse_names[coarse[i]]}); its superclass is "
          f"{parent[classes[fine[i]]]}")


def cifar100_task(data_dir: str | os.PathLike[str] | None = None, *,
                  epochs: int = CIFAR100_EPOCHS) -> Task:
  """The ``cifar100`` task on the official archive in ``data_dir`` (the
  archive itself, a folder holding it, or its unpacked folder); read once,
  here, so a missing or broken archive fails before any training.

  The official 50,000 / 10,000 train / test split; every seed holds out a
  stratified 10% of the training part for validation (so the seeds vary
  the validation split and the initialisation; the test set is fixed).
  Inputs: the raw 32 x 32 x 3 pixels flattened to 3,072 features and
  standardised on the training part; body: an MLP (2 x 256 ReLU). No
  convolutional body exists for 2-D images, so this demonstrates the
  protocol on the real CIFAR-100 labels and tree, not a competitive
  CIFAR-100 accuracy: for a real probe, embed the images with a frozen
  model and pass the embeddings with ``--data`` (and the WordNet tree
  with ``--hierarchy``).

  Raises ``InputError`` (argument ``data_dir``) when ``data_dir`` is None
  or holds no readable archive.

  Example (with the archive downloaded into ``~/data``)::

    task = cifar100_task("~/data")
    split = task.draw(0)  # 45,000 / 5,000 / 10,000 images
  """
  if data_dir is None:
    raise InputError("data_dir", "the cifar100 task reads the official "
                     f"CIFAR-100 python archive ({ARCHIVE}, from {SOURCE}) "
                     "and downloads nothing: pass --data-dir DIR, a folder "
                     "holding it")
  where = pathlib.Path(data_dir).expanduser()
  try:
    d = read_cifar100(where)
  except FileNotFoundError as e:
    raise InputError("data_dir", str(e)) from None
  except (OSError, tarfile.TarError) as e:
    raise InputError("data_dir", f"{where}: cannot read the CIFAR-100 "
                     f"archive ({e})") from None
  except ValueError as e:
    raise InputError("data_dir", str(e)) from None
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = st.build_tree(edges, classes=classes)
  kernel = np.asarray(st.from_hierarchy(edges, classes=classes), np.float64)
  x_train = d.x_train.reshape(len(d.x_train), -1)
  x_test = d.x_test.reshape(len(d.x_test), -1)
  y_train, y_test = d.fine_train, d.fine_test

  def draw(seed: int) -> Split:
    tr, val = stratified_split(y_train, (1 - VAL_FRACTION, VAL_FRACTION),
                               seed)
    x_tr, x_val, x_te = _standardise(x_train[tr], x_train[val], x_test)
    return Split(x_tr, y_train[tr], x_val, y_train[val], x_te, y_test)

  return Task(
      "cifar100", "CIFAR-100 (100 classes, WordNet tree), raw pixels, MLP "
      "body: demonstrates the protocol on real labels, not a competitive "
      "CIFAR-100 number (for a real probe pass embeddings with --data)",
      f"the official CIFAR-100 archive ({len(y_train):,} train / "
      f"{len(y_test):,} test images); every seed holds out a stratified "
      f"{VAL_FRACTION:.0%} of the training images for validation, the test "
      "set is fixed; the 32 x 32 x 3 pixels flattened to 3,072 features; "
      "the methods are given the shipped WordNet tree's LCA kernel (the "
      "coarse labels are checked against the shipped superclasses)",
      100, "mlp", epochs, draw, kernel=kernel, distances=lca_heights(tree),
      distance_unit="height of the lowest common ancestor in the WordNet "
                    "tree (levels)",
      small_d=16, tree=tree, extra={"data_dir": str(where)})

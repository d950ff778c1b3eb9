"""The user's own data for ``spectral-targets bench --data FILE.npz``: a
NumPy ``.npz`` archive of inputs and labels (the common case: embeddings of
a frozen model, for a linear or MLP probe), with an optional class tree or
label kernel, read into what a benchmark task needs.

The file (read with ``allow_pickle=False``: arrays only) holds either

- ``x`` (N, ...) inputs and ``y`` (N,) integer labels, re-split by every
  seed (stratified, 60 / 15 / 25 train / validation / test), or
- ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally
  ``x_val``, ``y_val``): the test split stays fixed; without a validation
  split every seed holds out a stratified 20% of the training part, with
  one, the seeds vary only the initialisation.

and optionally

- ``class_names`` (C,) strings: class k's id in the hierarchy file;
  default ``"0"``, ``"1"``, ...;
- ``kernel`` (C, C): the label kernel the methods are given (symmetric,
  finite); without it (and without a hierarchy) the kernel is estimated per
  seed from a one-hot model's class means, as for mnist1d;
- ``distances`` (C, C): class distances for mistake severity and hdist@k
  (default: the hierarchy's LCA heights, else 1 − the kernel).

A hierarchy comes as a separate text file of ``PARENT CHILD`` lines
(``spectral_targets.load_hierarchy``) whose leaves are the class names;
the methods are then given its LCA kernel and scored by its LCA heights. A
kernel and a hierarchy together are refused (which would the methods get?).

C is the number of class names when given, else the largest label + 1
(at least 2); every class must occur in the training data. Inputs are
standardised with the training split's mean and spread, as every task's
are.

``user_task`` turns the file into the benchmark's ``user`` task: the
standard protocol (every method tuned the same way on the tuning seeds,
evaluated on the evaluation seeds, paired intervals) on a linear probe
(default) or an MLP over the inputs, flattened to one feature vector a
sample.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from collections.abc import Callable

import numpy as np

import spectral_targets as st
from spectral_targets.bench._tasks import (
  InputError,
  Split,
  Task,
  _standardise,
  stratified_split,
)

#: Per-seed fractions when the file holds one pool of examples.
POOL_FRACTIONS = (0.6, 0.15, 0.25)
#: Per-seed validation fraction of a given training split.
VAL_FRACTION = 0.2
#: The task's name in the report (a fixed name: a file's stem could be a
#: built-in task's).
TASK_NAME = "user"
#: The probes ``user_task`` offers: ``--body`` -> a ``_bodies.BODIES`` key.
USER_BODIES = {"linear": "linear", "mlp": "mlp"}
#: Training epochs of the user task (``--epochs`` overrides).
USER_EPOCHS = 30

_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
_KNOWN = {"x", "y", "x_val", "y_val", "class_names", "kernel", "distances",
          *_SPLIT_KEYS}


@dataclasses.dataclass(frozen=True)
class UserData:
  """What a benchmark task needs from the user's file; the fields mean
  what ``Task``'s of the same names do."""
  name: str
  construction: str
  num_classes: int
  class_names: tuple[str, ...]
  input_shape: tuple[int, ...]
  draw: Callable[[int], Split]
  kernel: np.ndarray | None
  distances: np.ndarray | None
  distance_unit: str
  tree: object


def _labels(a: np.ndarray, key: str, path) -> np.ndarray:
  if not np.issubdtype(a.dtype, np.integer) or a.ndim != 1:
    raise InputError("data", f"{path}: {key} must be (N,) integer labels, got "
                     f"{a.shape} {a.dtype}")
  if a.size and a.min() < 0:
    raise InputError("data", f"{path}: {key} must be >= 0, found {a.min()}")
  return a.astype(np.int32)


def _inputs(a: np.ndarray, key: str, n: int, path) -> np.ndarray:
  if not (np.issubdtype(a.dtype, np.floating)
          or np.issubdtype(a.dtype, np.integer)) or a.ndim < 2:
    raise InputError("data", f"{path}: {key} must be (N, ...) numbers, got "
                     f"{a.shape} {a.dtype}")
  if len(a) != n:
    raise InputError("data", f"{path}: {key} has {len(a)} rows but its labels "
                     f"{n}")
  if not np.isfinite(a).all():
    raise InputError("data", f"{path}: {key} holds non-finite values")
  return a.astype(np.float64)


def _square(a: np.ndarray, key: str, C: int, path) -> np.ndarray:
  a = np.asarray(a, np.float64)
  if a.shape != (C, C) or not np.isfinite(a).all():
    raise InputError("data",
                     f"{path}: {key} must be a finite ({C}, {C}) matrix, "
                     f"got shape {a.shape}")
  return a


def load_user_data(path: str | os.PathLike[str], *,
                   hierarchy: str | os.PathLike[str] | None = None
                   ) -> UserData:
  """Reads the user's ``.npz`` (and hierarchy file); see the module
  docstring for the format. Raises ``InputError`` (a ``ValueError``)
  naming the file and the array on anything that does not fit, its
  ``argument`` ``"data"`` or, for the hierarchy file, ``"hierarchy"``."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError("data", f"{path}: no such file (expected a NumPy "
                     ".npz archive written by numpy.savez)")
  try:
    with np.load(path, allow_pickle=False) as f:
      if not hasattr(f, "files"):
        raise ValueError("a single array (.npy), not an .npz archive of "
                         "named arrays")
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise InputError("data", f"{path}: not a readable .npz archive of "
                     f"arrays ({e})") from None
  unknown = set(arrays) - _KNOWN
  if unknown:
    raise InputError("data",
                     f"{path}: unknown arrays {sorted(unknown)}; expected "
                     f"x and y, or {', '.join(_SPLIT_KEYS)} (and x_val, "
                     "y_val), plus optional class_names, kernel, distances")
  pooled = "x" in arrays or "y" in arrays
  if pooled == any(k in arrays for k in _SPLIT_KEYS) or (
      pooled and not {"x", "y"} <= set(arrays)) or (
      not pooled and not set(_SPLIT_KEYS) <= set(arrays)):
    raise InputError("data", f"{path}: give either x and y, or all of "
                     f"{', '.join(_SPLIT_KEYS)}; found {sorted(arrays)}")
  if ("x_val" in arrays) != ("y_val" in arrays) or (
      pooled and "x_val" in arrays):
    raise InputError("data",
                     f"{path}: x_val and y_val come together, and only "
                     "with x_train, y_train, x_test, y_test")
  parts = {}
  for s in ("", "_train", "_val", "_test"):
    if "y" + s in arrays:
      y = _labels(arrays["y" + s], "y" + s, path)
      if not len(y):
        raise InputError("data", f"{path}: y{s} is empty")
      parts[s] = (_inputs(arrays["x" + s], "x" + s, len(y), path), y)
  shapes = {x.shape[1:] for x, _ in parts.values()}
  if len(shapes) != 1:
    raise InputError("data",
                     f"{path}: the inputs' shapes differ: {sorted(shapes)}")
  largest = max(int(y.max()) for _, y in parts.values() if y.size)
  if "class_names" in arrays:
    names = arrays["class_names"]
    if names.ndim != 1 or not np.issubdtype(names.dtype, np.str_):
      raise InputError("data",
                       f"{path}: class_names must be (C,) strings, got "
                       f"{names.shape} {names.dtype}")
    class_names = tuple(str(n) for n in names)
    if len(set(class_names)) != len(class_names):
      raise InputError("data", f"{path}: class_names repeat a name")
    if largest >= len(class_names):
      raise InputError("data", f"{path}: label {largest} but only "
                       f"{len(class_names)} class_names")
  else:
    class_names = tuple(str(k) for k in range(largest + 1))
  C = len(class_names)
  if C < 2:
    raise InputError("data", f"{path}: the labels hold one class; a "
                     "classifier needs at least 2")
  train_y = parts["" if pooled else "_train"][1]
  absent = np.setdiff1d(np.arange(C), train_y)
  if absent.size:
    raise InputError("data", f"{path}: classes {absent[:5].tolist()} have no "
                     "training example (a class the model never sees "
                     "cannot be learned or given a kernel row)")

  kernel = (_square(arrays["kernel"], "kernel", C, path)
            if "kernel" in arrays else None)
  if kernel is not None and not np.allclose(kernel, kernel.T, rtol=1e-5,
                                            atol=1e-8):
    raise InputError("data", f"{path}: kernel must be symmetric")
  distances = (_square(arrays["distances"], "distances", C, path)
               if "distances" in arrays else None)
  tree, unit = None, ""
  if hierarchy is not None:
    if kernel is not None:
      raise InputError("hierarchy", f"{path}: a kernel and a hierarchy "
                       f"({hierarchy}) were both given; pass one")
    try:
      edges = st.load_hierarchy(hierarchy)
    except OSError as e:
      raise InputError("hierarchy", f"{hierarchy}: cannot read it "
                       f"({e.strerror or e})") from None
    except ValueError as e:
      raise InputError("hierarchy", str(e)) from None
    try:
      tree = st.build_tree(edges, classes=class_names)
      kernel = np.asarray(st.from_hierarchy(edges, classes=class_names),
                          np.float64)
    except ValueError as e:
      raise InputError("hierarchy", f"{hierarchy}: {e} (its leaves must be "
                       f"{path.name}'s class names: "
                       f"{', '.join(class_names[:5])}"
                       f"{', ...' if C > 5 else ''})") from None
    if distances is None:
      # h(lca) = h(root) (1 - S): the kernel is 1 - h(lca) / h(root).
      distances = float(tree.height[tree.root]) * (1 - kernel)
      unit = ("height of the lowest common ancestor in "
              f"{pathlib.Path(hierarchy).name} (levels)")
  if distances is not None and not unit:
    unit = "the file's distances"
  elif distances is None:
    unit = "1 − kernel" if kernel is not None else "1 − estimated kernel"
    if kernel is not None:
      distances = 1 - kernel

  if pooled:
    x, y = parts[""]

    def draw(seed: int) -> Split:
      tr, val, te = stratified_split(y, POOL_FRACTIONS, seed)
      return _make(x[tr], y[tr], x[val], y[val], x[te], y[te])

    how = ("the file's {n:,} examples re-split per seed (stratified 60 / 15 "
           "/ 25)").format(n=len(y))
  elif "_val" in parts:
    def draw(seed: int) -> Split:
      return _make(*parts["_train"], *parts["_val"], *parts["_test"])

    how = "the file's train / validation / test splits (fixed across seeds)"
  else:
    def draw(seed: int) -> Split:
      x, y = parts["_train"]
      tr, val = stratified_split(y, (1 - VAL_FRACTION, VAL_FRACTION), seed)
      return _make(x[tr], y[tr], x[val], y[val], *parts["_test"])

    how = ("the file's train and test splits; every seed holds out a "
           "stratified 20% of the training part for validation")
  given = ("kernel: the file's" if "kernel" in arrays else
           f"kernel: the LCA kernel of {pathlib.Path(hierarchy).name}"
           if hierarchy is not None else
           "kernel: estimated per seed from a one-hot model's class means")
  return UserData(path.stem, f"{path.name}: {how}; {given}", C, class_names,
                  shapes.pop(), draw, kernel, distances, unit, tree)


def _make(x_tr, y_tr, x_val, y_val, x_te, y_te) -> Split:
  x_tr, x_val, x_te = _standardise(x_tr, x_val, x_te)
  return Split(x_tr, y_tr, x_val, y_val, x_te, y_te)


def user_task(path: str | os.PathLike[str], *,
              hierarchy: str | os.PathLike[str] | None = None,
              body: str = "linear", epochs: int = USER_EPOCHS) -> Task:
  """The benchmark task of the user's file (``load_user_data``).

  ``body``: ``"linear"`` (a linear probe, the default: the common case is
  embeddings of a frozen model) or ``"mlp"`` (2 x 256 ReLU). Inputs of
  more than one axis per sample are flattened. The methods get the file's
  kernel, the hierarchy's LCA kernel, or, with neither, a kernel estimated
  per seed from a one-hot model's class means; with a hierarchy the task
  also carries its tree (for hierarchical cross-entropy). The small
  spectral codebook's d is ⌈log2 C⌉ + 1 (raised to
  ``separating_dimension`` where that merges classes).

  Example:
    >>> import numpy as np, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "emb.npz"
    >>> np.savez(f, x=np.eye(4).repeat(5, 0), y=np.arange(4).repeat(5))
    >>> task = user_task(f)
    >>> task.name, task.num_classes, task.body
    ('user', 4, 'linear')
  """
  if body not in USER_BODIES:
    raise InputError("body", f"unknown body {body!r}; choose from "
                     f"{', '.join(USER_BODIES)}")
  data = load_user_data(path, hierarchy=hierarchy)
  shape = data.input_shape
  features = int(np.prod(shape))
  def flat(seed: int) -> Split:
    s = data.draw(seed)
    return Split(*(a.reshape(len(a), -1) if a.ndim > 1 else a
                   for a in (s.x_train, s.y_train, s.x_val, s.y_val,
                             s.x_test, s.y_test)))

  draw, flattened = data.draw, ""
  if len(shape) > 1:
    draw = flat
    flattened = (f"; inputs {shape} per sample flattened to {features:,} "
                 "features")
  C = data.num_classes
  kind = {"linear": "linear probe", "mlp": "MLP probe"}[body]
  return Task(
      TASK_NAME, f"the user's data ({pathlib.Path(path).name}, {C} classes,"
      f" {features:,} features), {kind}", data.construction + flattened, C,
      USER_BODIES[body], epochs, draw, kernel=data.kernel,
      distances=data.distances, distance_unit=data.distance_unit,
      small_d=int(np.ceil(np.log2(C))) + 1, tree=data.tree,
      extra={"file": str(path), "hierarchy": None if hierarchy is None
             else str(hierarchy), "class_names": list(data.class_names)})

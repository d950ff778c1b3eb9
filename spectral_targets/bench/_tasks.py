"""The benchmark's four offline tasks.

Every task has a fixed train / validation / test split (validation chooses
the codebook scale and estimates kernels; the test split is only scored),
standardised inputs, and a class-distance matrix for mistake severity.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import spectral_targets as st
from spectral_targets._hierarchy import build_tree


@dataclasses.dataclass(frozen=True)
class Task:
  """One classification problem.

  Attributes:
    name: task id.
    description: one line for the report.
    x_train, y_train, x_val, y_val, x_test, y_test: the splits.
    num_classes: C.
    body: "mlp" or "cnn".
    kernel: the true (C, C) label kernel, or None when the benchmark must
      estimate one from a one-hot teacher (mnist1d, digits).
    distances: (C, C) class distances for mistake severity, or None (then
      1 - the estimated kernel is used and the report says so).
    small_d: the small codebook dimension.
    k: the k of hierarchical distance@k.
  """
  name: str
  description: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  body: str
  kernel: np.ndarray | None
  distances: np.ndarray | None
  small_d: int
  k: int


def _standardise(x_train, *others):
  mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
  return [((x - mu) / sd).astype(np.float32) for x in (x_train, *others)]


def _stratified_split(y, fractions, seed):
  """Index arrays splitting every class by ``fractions`` (fixed seed)."""
  rng = np.random.default_rng(seed)
  parts = [[] for _ in fractions]
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
    for part, chunk in zip(parts, np.split(idx, cuts)):
      part.append(chunk)
  return [np.sort(np.concatenate(p)) for p in parts]


def mnist1d_task() -> Task:
  """MNIST-1D (Greydanus, 2020), generated locally with its default
  arguments: 4,000 train / 1,000 test, 10 classes, length-40 signals. The
  last 500 training samples are held out for validation."""
  from mnist1d.data import get_dataset_args, make_dataset
  data = make_dataset(get_dataset_args())
  x, y = data["x"].astype(np.float32), data["y"].astype(np.int32)
  x_test, y_test = data["x_test"].astype(np.float32), data["y_test"].astype(
      np.int32)
  x_tr, y_tr, x_val, y_val = x[:3500], y[:3500], x[3500:], y[3500:]
  x_tr, x_val, x_test = _standardise(x_tr, x_val, x_test)
  return Task("mnist1d", "MNIST-1D, default generator (4,000 / 1,000), 1-D "
              "CNN body", x_tr, y_tr, x_val, y_val, x_test, y_test, 10, "cnn",
              None, None, small_d=3, k=3)


def digits_task() -> Task:
  """scikit-learn's bundled 8x8 digits (1,797 images), a fixed stratified
  60 / 15 / 25 split."""
  from sklearn.datasets import load_digits
  x, y = load_digits(return_X_y=True)
  tr, val, te = _stratified_split(y, [0.6, 0.15, 0.25], seed=0)
  x_tr, x_val, x_te = _standardise(x[tr], x[val], x[te])
  y = y.astype(np.int32)
  return Task("digits", "scikit-learn digits (8x8), stratified 60/15/25, "
              "MLP body", x_tr, y[tr], x_val, y[val], x_te, y[te], 10, "mlp",
              None, None, small_d=3, k=3)


#: Noise levels of the hierarchical Gaussian generator.
HIERARCHY_NODE_SCALE = 1.0
HIERARCHY_SAMPLE_NOISE = 2.2


def hierarchy_task(*, dim: int = 64, per_class=(40, 10, 20), seed: int = 0
                   ) -> Task:
  """CIFAR-100-shaped classification on the shipped WordNet tree.

  A hierarchical Gaussian model along the tree: the root's mean is 0; every
  other node's mean is its parent's plus an offset N(0, s² I / dim) with
  s = ``HIERARCHY_NODE_SCALE`` (1.0); a sample of class c is c's leaf mean
  plus N(0, σ² I / dim) with σ = ``HIERARCHY_SAMPLE_NOISE`` (2.2). Classes
  that share deeper ancestors share more of their mean, so the tree's
  LCA-height kernel is the true label kernel. 40 / 10 / 20 samples per
  class (train / validation / test) in 64 dimensions.
  """
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = build_tree(edges, classes)
  rng = np.random.default_rng(seed)
  n = len(tree.nodes)
  offsets = rng.normal(size=(n, dim)) * HIERARCHY_NODE_SCALE / np.sqrt(dim)
  offsets[tree.root] = 0
  rows, cols = tree.ancestors()
  means = np.zeros((len(classes), dim))
  np.add.at(means, rows, offsets[cols])

  def sample(count):
    y = np.repeat(np.arange(len(classes)), count)
    x = means[y] + rng.normal(size=(len(y), dim)) * (
        HIERARCHY_SAMPLE_NOISE / np.sqrt(dim))
    return x, y.astype(np.int32)

  (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = map(sample, per_class)
  x_tr, x_val, x_te = _standardise(x_tr, x_val, x_te)
  S = np.asarray(st.from_hierarchy(edges, classes=classes), np.float64)
  return Task("hierarchy", "CIFAR-100 WordNet tree (100 classes), "
              "hierarchical Gaussian inputs, MLP body", x_tr, y_tr, x_val,
              y_val, x_te, y_te, 100, "mlp", S, 1 - S, small_d=16, k=5)


#: Width (in class steps) of the graded kernel of the ordinal task.
ORDINAL_WIDTH = 2.0


def ordinal_task(*, num_classes: int = 7) -> Task:
  """scikit-learn's bundled diabetes data (442 patients, 10 features), the
  disease-progression target cut into 7 quantile classes: an ordinal
  problem whose true structure is the graded kernel (width 2 class steps).
  Severity counts class steps |i - j|. Stratified 60 / 15 / 25 split."""
  from sklearn.datasets import load_diabetes
  x, target = load_diabetes(return_X_y=True)
  edges = np.quantile(target, np.linspace(0, 1, num_classes + 1)[1:-1])
  y = np.searchsorted(edges, target, side="right").astype(np.int32)
  tr, val, te = _stratified_split(y, [0.6, 0.15, 0.25], seed=0)
  x_tr, x_val, x_te = _standardise(x[tr], x[val], x[te])
  i = np.arange(num_classes)
  return Task("ordinal", "diabetes progression in 7 quantile classes, MLP "
              "body", x_tr, y[tr], x_val, y[val], x_te, y[te], num_classes,
              "mlp", np.asarray(st.graded(num_classes, ORDINAL_WIDTH),
                                np.float64),
              np.abs(i[:, None] - i[None, :]).astype(np.float64), small_d=2,
              k=2)


def subsample(task: Task, limit: int) -> Task:
  """The task with at most ``limit`` training samples (a fixed random
  subset), for ``--quick`` runs."""
  if len(task.y_train) <= limit:
    return task
  keep = np.random.default_rng(0).permutation(len(task.y_train))[:limit]
  keep.sort()
  return dataclasses.replace(task, x_train=task.x_train[keep],
                             y_train=task.y_train[keep])


TASKS = {"mnist1d": mnist1d_task, "digits": digits_task,
         "hierarchy": hierarchy_task, "ordinal": ordinal_task}

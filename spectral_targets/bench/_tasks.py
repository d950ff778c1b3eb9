"""The benchmark's tasks: offline data sets, drawn anew for every seed.

A ``Task`` is a recipe: ``task.draw(seed)`` returns that seed's ``Split``
(train / validation / test, standardised on the training part). The seed
varies the data, not only the initialisation: MNIST-1D is regenerated with
the generator's own seed, digits and diabetes are re-split (stratified), the
hierarchy task's inputs are redrawn. Seeds are shared across methods, so
every method sees the same data for a given seed and differences between
methods are paired.

Nothing here is fitted on a test split: validation chooses hyperparameters
and estimates kernels; the test split is only scored.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

import spectral_targets as st


class InputError(ValueError):
  """Data a task reads that cannot be used (the user's ``.npz``, its
  hierarchy file, the CIFAR-100 folder), found while the task's recipe is
  built, before any training. ``argument`` names the ``run_benchmark``
  argument it came from (``data``, ``hierarchy``, ``body``, ``data_dir``:
  the command line's ``--data``, ``--hierarchy``, ``--body``,
  ``--data-dir``)."""

  def __init__(self, argument: str, message: str):
    super().__init__(message)
    self.argument = argument


@dataclasses.dataclass
class Split:
  """One seed's data: float32 inputs, int32 labels (``_execute.SeedData``
  stacks seeds of them)."""
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class Task:
  """One classification problem.

  Attributes:
    name: task id.
    description: one line for the report.
    construction: how the data are made, for the report (and what, if
      anything, they share with the kernels the methods are given).
    num_classes: C.
    body: the model body, a key of ``_bodies.BODIES``.
    epochs: the training budget of every method.
    draw: ``draw(seed) -> Split``.
    kernel: the (C, C) label kernel the methods are given, or None when it
      is estimated per seed from a one-hot model's class means on the
      validation split (mnist1d, digits).
    distances: (C, C) class distances for mistake severity and hdist@k, or
      None (then 1 − the estimated kernel, and the report says so).
    distance_unit: what a distance counts, for the report.
    small_d: the small codebook dimension (at least what separates every
      class: a smaller d merges classes, and the codebook refuses it).
    tree: the ``Tree`` of a hierarchy task (for hierarchical losses), else
      None.
    extra: task-specific facts for the report.
    batch_size: the minibatch size of every method.
    ordinal: the classes are ordered grades 0 .. C − 1: the scorer adds
      the mean absolute error, quadratic weighted kappa and the MAE of the
      posterior median (the Bayes decision for absolute error).
  """
  name: str
  description: str
  construction: str
  num_classes: int
  body: str
  epochs: int
  draw: Callable[[int], Split]
  kernel: np.ndarray | None = None
  distances: np.ndarray | None = None
  distance_unit: str = ""
  small_d: int = 2
  tree: object = None
  extra: dict = dataclasses.field(default_factory=dict)
  batch_size: int = 128
  ordinal: bool = False

  @property
  def ks(self) -> tuple[int, ...]:
    """The k of hdist@k: 1, 5 and 20 where C allows."""
    return tuple(k for k in (1, 5, 20) if k < self.num_classes)


def _standardise(x_train, *others):
  """Every split standardised with the training split's mean and std; a
  feature constant on the training split is only centred (dividing by its
  zero spread would blow up its value on the other splits: digits' corner
  pixels)."""
  mu, sd = x_train.mean(0), x_train.std(0)
  sd = np.where(sd > 1e-8 * max(float(sd.max()), 1e-30), sd, 1.0)
  return [((x - mu) / sd).astype(np.float32) for x in (x_train, *others)]


def stratified_split(y, fractions, seed):
  """Index arrays splitting every class by ``fractions`` (the last part
  takes the rest), shuffled within each class by ``seed``."""
  rng = np.random.default_rng(seed)
  parts = [[] for _ in fractions]
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
    for part, chunk in zip(parts, np.split(idx, cuts)):
      part.append(chunk)
  return [np.sort(np.concatenate(p)) for p in parts]


def _split(x, y, parts) -> Split:
  tr, val, te = parts
  x_tr, x_val, x_te = _standardise(x[tr], x[val], x[te])
  y = np.asarray(y, np.int32)
  return Split(x_tr, y[tr], x_val, y[val], x_te, y[te])


# -- MNIST-1D -------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _mnist1d_raw(seed: int) -> dict:
  """The MNIST-1D generator's raw output at its default arguments and
  ``seed`` (kept: a transfer pool standardises with the same seed's raw
  training statistics, and the generator takes seconds)."""
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.seed = seed
  return make_dataset(args)


#: The generator's first this many training samples train (its 4,000 less
#: the 500 held out for validation).
MNIST1D_TRAIN_ROWS = 3_500
#: Inputs of a seed's validation split: the last 500 of the generator's
#: 4,000 and this many more fresh ones (``_fresh_mnist1d``), so 2,000 in all.
#: With 500, two tuning seeds' 1,000 validation inputs chose one-hot's
#: learning rate within their noise (a standard error of 0.7 points at 0.95
#: accuracy against a 1.1-point test difference between the cells).
MNIST1D_EXTRA_VALIDATION = 1_500
#: The generator seed of a seed's extra validation inputs is the seed plus
#: this (past the pools' stream, ``POOL_SEED_OFFSET``).
VALIDATION_SEED_OFFSET = 2_000_000


def mnist1d_split(seed: int) -> Split:
  """MNIST-1D (Greydanus 2020) with the generator's default arguments and
  its own seed set to ``seed``: the first 3,500 of its 4,000 training
  samples train, its 1,000 test samples test, and validation holds the
  other 500 and ``MNIST1D_EXTRA_VALIDATION`` fresh samples of the same
  generator (seed ``VALIDATION_SEED_OFFSET + seed``), 2,000 in all."""
  data = _mnist1d_raw(int(seed))
  x, y = data["x"], data["y"]
  x_extra, y_extra = _fresh_mnist1d(VALIDATION_SEED_OFFSET + int(seed),
                                    MNIST1D_EXTRA_VALIDATION)
  n = MNIST1D_TRAIN_ROWS
  x_tr, x_val, x_te = _standardise(
      x[:n], np.concatenate([x[n:], x_extra]), data["x_test"])
  y_val = np.concatenate([y[n:], y_extra])
  return Split(x_tr, y[:n].astype(np.int32), x_val,
               y_val.astype(np.int32), x_te,
               data["y_test"].astype(np.int32))


def _fresh_mnist1d(generator_seed: int, size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """``size`` raw (unstandardised) MNIST-1D inputs and labels of the
  generator's default arguments at its own seed ``generator_seed``."""
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.seed = generator_seed
  # make_dataset keeps train_split of num_samples as "x", the rest as
  # "x_test": both are drawn alike.
  args.num_samples = size
  drawn = make_dataset(args)
  return (np.concatenate([drawn["x"], drawn["x_test"]])[:size],
          np.concatenate([drawn["y"], drawn["y_test"]])[:size])


#: A transfer pool's generator seed is the labelled data's seed plus this
#: (every seed the benchmark uses lies below it: the pools never reuse a
#: labelled set's generator stream).
POOL_SEED_OFFSET = 1_000_000


def mnist1d_pool(seed: int, size: int) -> np.ndarray:
  """(size, 40) unlabelled MNIST-1D inputs for seed ``seed``'s transfer set:
  the generator's default arguments at its own seed ``POOL_SEED_OFFSET +
  seed`` (a stream disjoint from every split of every seed), standardised
  with the mean and std of ``mnist1d_split(seed)``'s raw training part, as
  that split's inputs are. Their labels are never read.

  Example: ``mnist1d_pool(0, 14_000)`` — 4 times the labelled set.
  """
  if size < 1:
    raise ValueError(f"size must be >= 1, got {size}.")
  if not 0 <= seed < POOL_SEED_OFFSET:
    raise ValueError(f"seed must lie in [0, {POOL_SEED_OFFSET}), got {seed}.")
  labelled = _mnist1d_raw(int(seed))["x"][:MNIST1D_TRAIN_ROWS]
  x, _ = _fresh_mnist1d(POOL_SEED_OFFSET + int(seed), size)
  return _standardise(labelled, x)[1]


def mnist1d_task(epochs: int = 25) -> Task:
  return Task(
      "mnist1d", "MNIST-1D (3,500 / 2,000 / 1,000 per seed), 1-D CNN body",
      "MNIST-1D regenerated per seed (the generator's seed), 3,500 train / "
      "2,000 validation (the generator's other 500 and 1,500 fresh) / "
      "1,000 test; no true label kernel: one is estimated "
      "per seed from a one-hot model's class means on the validation split",
      10, "cnn", epochs, mnist1d_split, distance_unit="1 − estimated kernel",
      small_d=3, batch_size=64)


# -- scikit-learn's bundled data ------------------------------------------------


def digits_task(epochs: int = 40) -> Task:
  from sklearn.datasets import load_digits
  x, y = load_digits(return_X_y=True)
  return Task(
      "digits", "scikit-learn digits (8x8), MLP body",
      "scikit-learn's 1,797 bundled 8x8 digits, re-split per seed "
      "(stratified 60 / 15 / 25); kernel estimated as for mnist1d",
      10, "mlp", epochs,
      lambda seed: _split(x, y, stratified_split(y, [0.6, 0.15, 0.25],
                                                 seed)),
      distance_unit="1 − estimated kernel", small_d=3)


#: Width (in class steps) of the graded kernel of the ordinal task.
ORDINAL_WIDTH = 2.0


def ordinal_task(epochs: int = 60, *, num_classes: int = 7) -> Task:
  from sklearn.datasets import load_diabetes
  x, target = load_diabetes(return_X_y=True)
  cuts = np.quantile(target, np.linspace(0, 1, num_classes + 1)[1:-1])
  y = np.searchsorted(cuts, target, side="right")
  i = np.arange(num_classes)
  return Task(
      "ordinal", "diabetes progression in 7 quantile classes, MLP body",
      "scikit-learn's 442 diabetes patients, the progression target cut "
      "into 7 quantile classes, re-split per seed (stratified 60 / 15 / 25); "
      f"kernel: graded, width {ORDINAL_WIDTH:g} class steps (a guess at the "
      "ordinal structure, not fitted)",
      num_classes, "mlp", epochs,
      lambda seed: _split(x, y, stratified_split(y, [0.6, 0.15, 0.25],
                                                 seed)),
      kernel=np.asarray(st.graded(num_classes, ORDINAL_WIDTH), np.float64),
      distances=np.abs(i[:, None] - i[None, :]).astype(np.float64),
      distance_unit="class steps |i − j|", small_d=2, ordinal=True)


# -- the hierarchical Gaussian task ---------------------------------------------

#: Noise levels of the hierarchical Gaussian generator.
HIERARCHY_NODE_SCALE = 1.0
HIERARCHY_SAMPLE_NOISE = 2.2
HIERARCHY_DIM = 64
HIERARCHY_PER_CLASS = (40, 10, 20)


def lca_heights(tree) -> np.ndarray:
  """(C, C) height of the lowest common ancestor of every pair of classes,
  in tree levels (leaves 0)."""
  rows, cols = tree.ancestors()
  C = len(tree.classes)
  member = np.zeros((C, len(tree.nodes)), bool)
  member[rows, cols] = True
  h = np.asarray(tree.height, np.float64)
  # The LCA is the lowest common ancestor: the smallest height shared.
  shared = member[:, None, :] & member[None, :, :]
  return np.where(shared, h, np.inf).min(-1)


def shifted_tree(tree, fraction: float, seed: int):
  """``tree`` with ``fraction`` of its leaves moved, each to a random other
  leaf parent (a node that has leaves as children): (parent array of the
  new tree over the same nodes). Which leaves move and where is fixed by
  ``seed``."""
  parent = np.asarray(tree.parent).copy()
  leaves = np.asarray(tree.class_nodes)
  homes = np.unique(parent[leaves])
  rng = np.random.default_rng(seed)
  moved = rng.choice(leaves, int(round(fraction * len(leaves))),
                     replace=False)
  for leaf in moved:
    parent[leaf] = rng.choice(homes[homes != parent[leaf]])
  return parent


def _node_means(parent, class_nodes, offsets):
  """Class means: the sum of the offsets of every ancestor-or-self."""
  means = np.zeros((len(class_nodes), offsets.shape[1]))
  current = np.asarray(class_nodes).copy()
  live = np.ones(len(current), bool)
  while live.any():
    means[live] += offsets[current[live]]
    current[live] = parent[current[live]]
    live &= current >= 0
  return means


def hierarchy_split(tree, seed: int, *, shift: float = 0.0,
                    train_per_class: int = HIERARCHY_PER_CLASS[0]) -> Split:
  """One seed of the hierarchical Gaussian model on ``tree`` (after moving
  a fraction ``shift`` of its leaves; see ``hierarchy_task``), with
  ``train_per_class`` training samples a class."""
  rng = np.random.default_rng(seed)
  parent = (np.asarray(tree.parent) if shift == 0 else
            shifted_tree(tree, shift, seed=10_000 + seed))
  n = len(tree.nodes)
  offsets = rng.normal(size=(n, HIERARCHY_DIM)) * (
      HIERARCHY_NODE_SCALE / np.sqrt(HIERARCHY_DIM))
  offsets[parent < 0] = 0
  means = _node_means(parent, tree.class_nodes, offsets)
  C = len(tree.classes)

  def sample(count):
    y = np.repeat(np.arange(C), count)
    x = means[y] + rng.normal(size=(len(y), HIERARCHY_DIM)) * (
        HIERARCHY_SAMPLE_NOISE / np.sqrt(HIERARCHY_DIM))
    return x, y.astype(np.int32)

  (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = map(
      sample, (train_per_class,) + HIERARCHY_PER_CLASS[1:])
  x_tr, x_val, x_te = _standardise(x_tr, x_val, x_te)
  return Split(x_tr, y_tr, x_val, y_val, x_te, y_te)


def hierarchy_task(epochs: int = 30, *, shift: float = 0.0,
                   name: str = "hierarchy",
                   train_per_class: int = HIERARCHY_PER_CLASS[0]) -> Task:
  """CIFAR-100-shaped classification on the shipped WordNet tree.

  A hierarchical Gaussian model: the root's mean is 0; every other node's
  mean is its parent's plus N(0, s² I / dim), s = 1; a sample of class c is
  c's leaf mean plus N(0, σ² I / dim), σ = 2.2; 64 dimensions, 40 / 10 / 20
  samples per class. The class means are sums of node offsets along the
  tree, so the tree's LCA kernel *is* the structure of the data (at
  ``shift`` = 0): the task tests whether a method can use a taxonomy that
  is right. With ``shift`` = ρ > 0, a fraction ρ of the leaves are moved to
  random other leaf parents before the inputs are drawn, while the methods
  keep the WordNet tree: a taxonomy that is partly wrong.
  ``train_per_class`` (default 40) sets the training samples a class: the
  data-size axis, where regularising an overfitting model and using the
  tree's structure come apart.
  """
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = st.build_tree(edges, classes=classes)
  heights = lca_heights(tree)
  S = np.asarray(st.from_hierarchy(edges, classes=classes), np.float64)
  n = train_per_class
  moved = (f"; a fraction ρ = {shift:g} of the leaves moved to random other "
           "leaf parents before drawing (the methods keep the WordNet tree)"
           if shift else "")
  return Task(
      name, f"CIFAR-100 WordNet tree (100 classes), hierarchical Gaussian "
      f"inputs{f', ρ = {shift:g}' if shift else ''}"
      f"{f', {n} training samples a class' if n != 40 else ''}, MLP body",
      "class means are sums of Gaussian node offsets along the CIFAR-100 "
      f"WordNet tree, samples add isotropic noise (64 dims, {n} / 10 / 20 "
      "per class, redrawn per seed); the methods are given that tree's LCA "
      "kernel, which is the data's own structure" + moved,
      100, "mlp-128", epochs,
      lambda seed: hierarchy_split(tree, seed, shift=shift,
                                   train_per_class=n),
      kernel=S, distances=heights,
      distance_unit="height of the lowest common ancestor in the WordNet "
                    "tree (levels)",
      small_d=16, tree=tree, extra={"shift": shift, "train_per_class": n})


def subsample(split: Split, limit: int) -> Split:
  """``split`` with about ``limit`` training samples, the same number per
  class (at least one), for ``--quick`` runs."""
  if len(split.y_train) <= limit:
    return split
  classes = np.unique(split.y_train)
  per_class = max(1, limit // len(classes))
  keep = np.sort(np.concatenate([np.flatnonzero(split.y_train == c)[:per_class]
                                 for c in classes]))
  return dataclasses.replace(split, x_train=split.x_train[keep],
                             y_train=split.y_train[keep])

"""What the worker processes and the single-process reference share: the
data each process loads, the model, the codebook's kernel."""

import numpy as np
import optax
from flax import nnx

import spectral_targets as st

# Statistics: C classes of D-dim features, CHUNKS chunks of ROWS rows per
# process. Class C - 2 occurs only on process 0 and class C - 1 nowhere, so
# merges meet classes that one side lacks.
C, D, ROWS, CHUNKS = 7, 6, 24, 3
# Training: CLASSES classes with d-dim codes, a batch of BATCH rows of
# D_IN inputs over all processes. Every other dimension is below
# CLASSES // 2, the codebook's rows per process, so a collective carrying a
# codebook shard (or a class-wide row of logits) is recognisable.
CLASSES, d, D_IN, BATCH = 128, 8, 12, 16
LEARNING_RATE, STEPS = 1e-2, 2


def statistics_chunk(process, chunk):
  """The (features, labels) chunk that ``process`` loads by itself."""
  rng = np.random.default_rng([process, chunk])
  labels = rng.integers(0, C - 2 if process else C - 1, size=ROWS)
  centres = np.random.default_rng(0).normal(size=(C, D)) * 3
  features = centres[labels] + rng.normal(size=(ROWS, D)) + 10.0
  return features.astype(np.float32), labels.astype(np.int32)


def statistics_data(num_processes):
  """Every chunk of every process, concatenated."""
  parts = [statistics_chunk(p, k) for p in range(num_processes)
           for k in range(CHUNKS)]
  return (np.concatenate([z for z, _ in parts]),
          np.concatenate([y for _, y in parts]))


def classifier():
  return np.random.default_rng(1).normal(size=(C, D)).astype(np.float32)


def codebook():
  """Built eagerly, by every process alike, from a taxonomy; at d = 8
  siblings share codes (spectral_codebook would refuse them without
  allow_merged)."""
  edges = st.random_hierarchy(CLASSES, seed=0)
  return np.asarray(st.spectral_codebook(
      st.double_center(st.from_hierarchy(edges)), d, allow_merged=True))


def batch_rows(index, parts):
  """Rows ``index`` of ``parts`` equal slices of the global training batch."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(BATCH, D_IN)).astype(np.float32)
  y = rng.integers(0, CLASSES, size=BATCH).astype(np.int32)
  rows = slice(index * BATCH // parts, (index + 1) * BATCH // parts)
  return x[rows], y[rows]


class Model(nnx.Module):
  """A small body and a fixed codebook head."""

  def __init__(self, codes):
    self.body = nnx.Linear(D_IN, d, rngs=nnx.Rngs(0))
    self.head = st.nnx.CodebookHead(codes, scale=8.0)

  def __call__(self, x):
    return self.head(nnx.tanh(self.body(x)))


def optimizer(model):
  return nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)


@nnx.jit
def train_step(model, opt, x, y):
  def loss_fn(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  opt.update(model, grads)
  return loss

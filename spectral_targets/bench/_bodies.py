"""The model bodies every method of a task shares: MLPs and a small 1-D CNN.

A body maps inputs to features; the head on top (``_training.forward``) is
chosen by a method's config. ``BODIES`` names each body for the tasks (and
the report).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

class MLP(nn.Module):
  """ReLU MLP: ``depth`` hidden layers of ``width``, then a linear map to
  the feature dimension (``depth = 0``: a linear model)."""
  width: int
  depth: int
  features: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.features)(x)


def _patches(x, width, stride):
  """(B, L, C) -> (B, ceil(L/stride), width·C): the windows of a 'SAME'
  1-D convolution, as ``width`` strided slices (their gradient is a pad and
  an add; a gather's would be a scatter, slower on CPU)."""
  L = x.shape[-2]
  out = -(-L // stride)
  pad = max((out - 1) * stride + width - L, 0)
  x = jnp.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
  return jnp.concatenate(
      [jax.lax.slice_in_dim(x, k, k + (out - 1) * stride + 1, stride, axis=1)
       for k in range(width)], axis=-1)


class CNN1D(nn.Module):
  """A small 1-D CNN: three 5-wide 'SAME' convolutions (strides 1, 2, 2),
  ReLU, then linear to the feature dimension.

  ``windows=True`` writes each convolution as a Dense layer on the windows
  (the same function as ``nn.Conv``, but under ``vmap`` over models it
  stays a batched matmul, where a vmapped ``nn.Conv`` becomes a grouped
  convolution, ~50x slower on CPU): the vmapped trainers use it. A single
  model (the timed training steps) uses ``nn.Conv``, as a user would.
  """
  channels: int
  features: int
  windows: bool = True

  @nn.compact
  def __call__(self, x):
    x = x[..., None]
    for stride in (1, 2, 2):
      if self.windows:
        x = nn.Dense(self.channels)(_patches(x, 5, stride))
      else:
        x = nn.Conv(self.channels, (5,), strides=(stride,),
                    padding="SAME")(x)
      x = nn.relu(x)
    return nn.Dense(self.features)(x.reshape(x.shape[:-2] + (-1,)))


#: The bodies by name: (constructor, description). Students and baselines
#: of a task share one body; teachers and the distillation students have
#: their own.
BODIES = {
    "cnn": (lambda F, single: CNN1D(16, F, windows=not single),
            "1-D CNN, 16 channels"),
    "cnn-wide": (lambda F, single: CNN1D(32, F, windows=not single),
                 "1-D CNN, 32 channels"),
    "cnn-narrow": (lambda F, single: CNN1D(8, F, windows=not single),
                   "1-D CNN, 8 channels"),
    "mlp": (lambda F, single: MLP(256, 2, F), "MLP, 2 x 256 ReLU"),
    "mlp-128": (lambda F, single: MLP(128, 2, F), "MLP, 2 x 128 ReLU"),
    "mlp-small": (lambda F, single: MLP(100, 2, F),
                  "MLP, 2 x 100 ReLU (the MNIST-1D paper's)"),
    "linear": (lambda F, single: MLP(1, 0, F),
               "linear (logistic regression)"),
}


@functools.cache
def make_body(kind: str, features: int, *, single: bool = False):
  """The body ``kind`` mapping inputs to ``features`` dimensions (one
  instance per configuration, so the programs cached on it are reused);
  ``single``: for one model, not a vmapped stack (the CNN then uses
  ``nn.Conv``)."""
  try:
    return BODIES[kind][0](features, single)
  except KeyError:
    raise ValueError(f"unknown body {kind!r}; choose from "
                     f"{sorted(BODIES)}") from None

"""Swap a classifier's Dense head for a fixed horseshoe codebook head.

A small Flax NNX MLP on scikit-learn's bundled 8x8 digits (no download),
trained twice with the same Optax step: once with ``nnx.Linear(d, C)``, once
with ``CodebookHead`` over ``spectral_codebook(double_center(graded(C, w)), d)``.
Only the head line differs.

    python examples/swap_head.py
"""

import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import spectral_targets as st
from spectral_targets.nnx import CodebookHead

C, D, STEPS = 10, 9, 300


class MLP(nnx.Module):
  def __init__(self, head, rngs):
    self.l1 = nnx.Linear(64, 128, rngs=rngs)
    self.l2 = nnx.Linear(128, D, rngs=rngs)
    self.head = head

  def __call__(self, x):
    return self.head(self.l2(nnx.relu(self.l1(x))))


@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


def fit(head, data, seed=0):
  x_tr, x_te, y_tr, y_te = data
  model = MLP(head, nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  for _ in range(STEPS):
    train_step(model, optimizer, x_tr, y_tr)
  return float((model(x_te).argmax(-1) == y_te).mean())


def main():
  x, y = load_digits(return_X_y=True)
  split = train_test_split(x / 16.0, y, test_size=0.3, stratify=y,
                           random_state=0)
  data = [jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else
          jnp.asarray(a) for a in split]

  dense = nnx.Linear(D, C, rngs=nnx.Rngs(1))                 # before
  codes = st.spectral_codebook(st.double_center(st.graded(C, 2.0)), D)
  horseshoe = CodebookHead(codes)        # after (scale 8 by default)

  print(f"Dense head:     test accuracy {fit(dense, data):.3f}")
  print(f"Codebook head:  test accuracy {fit(horseshoe, data):.3f}")
  print(f"codebook coherence {float(st.coherence(codes)):.3f} "
        f"(Welch bound {st.welch_bound(C, D):.3f})")


if __name__ == "__main__":
  main()

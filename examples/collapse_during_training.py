"""Neural collapse measured during training.

A small Flax NNX MLP trained with cross-entropy on scikit-learn's bundled
digits; every few epochs, the penultimate features of the training set go
through ``collapse_metrics``: NC1 (within-class variability against the
between-class spread) falls, the class means approach a simplex (NC2), and
the classifier aligns with them (NC3, NC4).

    python examples/collapse_during_training.py
"""

import jax.numpy as jnp
import optax
from flax import nnx
from sklearn.datasets import load_digits

import spectral_targets as st

C, D = 10, 32


class MLP(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(64, 256, rngs=rngs)
    self.l2 = nnx.Linear(256, D, rngs=rngs)
    self.head = nnx.Linear(D, C, use_bias=False, rngs=rngs)

  def features(self, x):
    return nnx.relu(self.l2(nnx.relu(self.l1(x))))

  def __call__(self, x):
    return self.head(self.features(x))


@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(model):
    ce = optax.softmax_cross_entropy_with_integer_labels(model(x), y)
    return ce.mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


def main(epochs=400, every=50):
  x, y = load_digits(return_X_y=True)
  x, y = jnp.asarray(x / 16.0, jnp.float32), jnp.asarray(y)
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adamw(2e-3, weight_decay=5e-4),
                            wrt=nnx.Param)
  print("epoch    loss     NC1      NC2    NC3    NC4  Σ_B modes")
  for epoch in range(epochs + 1):
    if epoch % every == 0:
      m = st.collapse_metrics(model.features(x), y, C,
                              classifier=model.head.kernel[...].T)
      loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y)
      print(f"{epoch:5d}  {float(loss.mean()):7.4f}  {float(m.nc1):7.4f}  "
            f"{float(m.nc2):6.3f}  {float(m.nc3):5.3f}  {float(m.nc4):5.3f}"
            f"  {int(m.prototype_modes):4d}")
    train_step(model, optimizer, x, y)


if __name__ == "__main__":
  main()

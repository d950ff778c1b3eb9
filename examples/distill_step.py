"""One training step of a student with distillation added to cross-entropy.

The teacher is frozen (its parameters are not in the optimizer and
``distillation_loss`` stops its gradient). Two distillation terms:
Hinton KD on logits, and KD of soft assignments over the codebook, which
reads the teacher's dark knowledge in the codebook's frame.

    python examples/distill_step.py
"""

import jax
import optax
from flax import nnx

import spectral_targets as st
from spectral_targets.nnx import CodebookHead

C, D, TAU = 10, 9, 4.0
CODES = st.spectral_codebook(st.double_center(st.graded(C, 2.0)), D)


class Net(nnx.Module):
  def __init__(self, width, rngs):
    self.body = nnx.Sequential(nnx.Linear(64, width, rngs=rngs), nnx.relu,
                               nnx.Linear(width, D, rngs=rngs))
    self.head = CodebookHead(CODES, scale=16.0)

  def __call__(self, x):
    z = self.body(x)
    return z, self.head(z)


@nnx.jit
def distill_step(student, optimizer, teacher, x, y):
  z_t, logits_t = teacher(x)  # frozen: not differentiated, not updated

  def loss_fn(student):
    z_s, logits_s = student(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_s, y)
    kd = st.distillation_loss(logits_s, logits_t, temperature=TAU)
    sa = st.soft_assignment_distillation_loss(z_s, z_t, CODES,
                                              temperature=TAU)
    total = (ce + 0.5 * kd + 0.5 * sa).mean()
    return total, dict(ce=ce.mean(), kd=kd.mean(), soft_assignment=sa.mean())

  (total, terms), grads = nnx.value_and_grad(loss_fn, has_aux=True)(student)
  optimizer.update(student, grads)
  return total, terms


def main():
  key_x, key_y = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (32, 64))
  y = jax.random.randint(key_y, (32,), 0, C)
  teacher = Net(256, nnx.Rngs(0))
  student = Net(32, nnx.Rngs(1))
  optimizer = nnx.Optimizer(student, optax.adam(1e-3), wrt=nnx.Param)
  total, terms = distill_step(student, optimizer, teacher, x, y)
  print(f"total {float(total):.4f}  " + "  ".join(
      f"{k} {float(v):.4f}" for k, v in terms.items()))
  a = st.soft_assignment(teacher(x)[0], CODES, temperature=TAU)
  print(f"teacher dark-knowledge mass {float(st.dark_knowledge_mass(a, y).mean()):.3f}, "
        f"entropy {float(st.entropy(a).mean()):.3f} nats")


if __name__ == "__main__":
  main()

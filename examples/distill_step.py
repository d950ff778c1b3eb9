"""Distil a trained teacher into a small student, on the bundled digits.

A wide MLP teacher with a spectral codebook head is trained on every label
of the training split. A narrow student with an ordinary Dense head then
sees only 10% of the labels, plus the teacher's outputs on every training
input (the transfer set), and is trained four ways with the same step:
cross-entropy alone, + Hinton KD on the logits, + DKD, + soft assignment of
its features over the teacher's codebook (the teacher's dark knowledge read
in the codebook's frame). Every run is a few hundred
full-batch Adam steps: seconds on a CPU. One seed, so read differences of a
point or two as noise; the benchmark's distill task
(``spectral-targets bench --tasks distill``) has paired intervals over seeds.

    python examples/distill_step.py
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import spectral_targets as st
from spectral_targets.nnx import CodebookHead

C, D, TAU, STEPS = 10, 9, 4.0, 300
LABELLED = 0.1   # the student's share of the training labels
WEIGHT = 0.6     # (1 - w) CE + w distillation, the benchmark's default w
CODES = st.spectral_codebook(st.double_center(st.graded(C, 2.0)), D)
SCALE = 8.0      # CodebookHead's default scale
DKD_BETA = 2.0   # the benchmark's default (Zhao et al. use 8 with a warm-up)


class Net(nnx.Module):
  """An MLP returning (features, logits); a codebook or a Dense head."""

  def __init__(self, width, rngs, *, codebook=True):
    self.body = nnx.Sequential(nnx.Linear(64, width, rngs=rngs), nnx.relu,
                               nnx.Linear(width, D, rngs=rngs))
    self.head = CodebookHead(CODES) if codebook else nnx.Linear(D, C,
                                                                rngs=rngs)

  def __call__(self, x):
    z = self.body(x)
    return z, self.head(z)


def distillation_term(kind, z_s, logits_s, z_t, logits_t):
  """Per-example distillation loss of each kind (the teacher is constant)."""
  if kind == "kd":
    return st.distillation_loss(logits_s, logits_t, temperature=TAU)
  if kind == "dkd":
    # DKD needs a target class; on the unlabelled transfer set, the teacher's.
    return st.decoupled_distillation_loss(logits_s, logits_t,
                                          logits_t.argmax(-1),
                                          temperature=TAU, beta=DKD_BETA)
  if kind == "soft-assignment":
    # Raw inner products z P^T / tau, features' norms included. With
    # scale=SCALE (the heads' softmax(s cos / tau)) it would be "kd" exactly.
    return st.soft_assignment_distillation_loss(z_s, z_t, CODES,
                                                temperature=1.0)
  raise ValueError(f"unknown distillation {kind!r}")


@nnx.jit(static_argnames="kind")
def distill_step(student, optimizer, x_lab, y_lab, x, z_t, logits_t, *, kind):
  def loss_fn(student):
    _, logits_lab = student(x_lab)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_lab,
                                                         y_lab).mean()
    if kind == "none":
      return ce, (ce, jnp.zeros(()))
    z_s, logits_s = student(x)
    kd = distillation_term(kind, z_s, logits_s, z_t, logits_t).mean()
    return (1 - WEIGHT) * ce + WEIGHT * kd, (ce, kd)

  (_, terms), grads = nnx.value_and_grad(loss_fn, has_aux=True)(student)
  optimizer.update(student, grads)
  return terms


@nnx.jit
def supervised_step(model, optimizer, x, y):
  def loss_fn(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(x)[1],
                                                           y).mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


def accuracy(model, x, y):
  return float((model(x)[1].argmax(-1) == y).mean())


def load():
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y,
                                            random_state=0)
  _, x_lab, _, y_lab = train_test_split(x_tr, y_tr, test_size=LABELLED,
                                        stratify=y_tr, random_state=0)
  return x_tr, y_tr, x_lab, y_lab, x_te, y_te


def main():
  x_tr, y_tr, x_lab, y_lab, x_te, y_te = load()
  teacher = Net(256, nnx.Rngs(0))
  optimizer = nnx.Optimizer(teacher, optax.adam(1e-3), wrt=nnx.Param)
  for _ in range(STEPS):
    supervised_step(teacher, optimizer, x_tr, y_tr)
  z_t, logits_t = teacher(x_tr)  # computed once: the teacher is frozen
  a = st.soft_assignment(z_t, CODES, temperature=TAU, scale=SCALE)
  print(f"teacher (width 256, {len(y_tr)} labels): test accuracy "
        f"{accuracy(teacher, x_te, y_te):.3f}; on its training inputs "
        f"dark-knowledge mass {float(st.dark_knowledge_mass(a, y_tr).mean()):.3f}, "
        f"entropy {float(st.entropy(a).mean()):.3f} nats (soft assignment, "
        f"tau {TAU:g})")
  print(f"codebook-head students (width 16, {len(y_lab)} labels + the teacher on "
        f"{len(x_tr)} inputs):")
  for kind in ("none", "kd", "dkd", "soft-assignment"):
    student = Net(16, nnx.Rngs(1))
    optimizer = nnx.Optimizer(student, optax.adam(1e-3), wrt=nnx.Param)
    for _ in range(STEPS):
      ce, kd = distill_step(student, optimizer, x_lab, y_lab, x_tr, z_t,
                            logits_t, kind=kind)
    print(f"  {kind:16s} test accuracy {accuracy(student, x_te, y_te):.3f}  "
          f"final ce {float(ce):.4f}  distillation {float(kd):.4f}")


if __name__ == "__main__":
  main()

"""Distil a small byte-level language model into a smaller one with the
fused losses (issue 23).

A teacher transformer (NNX) is trained on bytes of the Python standard
library's own source files (no download); then the same small student is
trained twice from the same initialisation: on the labels alone
(``fused_linear_cross_entropy``), and on the labels plus the teacher's
distribution (``fused_linear_distillation_loss`` between the two models'
final hidden states and output heads: neither model's logits are formed).
Prints both students' validation loss (bits per byte) as they train and
plots them (PNG).

    python examples/distill_language_model.py              # ~1-2 min, 2 cores
    python examples/distill_language_model.py --quick      # seconds
    python examples/distill_language_model.py --out curve.png
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sysconfig
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import spectral_targets as st

V = 256  # bytes


def corpus(num_bytes: int) -> np.ndarray:
  """Bytes of the standard library's .py files, in a fixed order."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  out, size = [], 0
  for path in sorted(root.glob("*.py")):
    data = path.read_bytes()
    out.append(data)
    size += len(data)
    if size >= num_bytes:
      break
  return np.frombuffer(b"".join(out)[:num_bytes], np.uint8)


class Block(nnx.Module):
  def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
    self.ln2 = nnx.LayerNorm(d, rngs=rngs)
    self.up = nnx.Linear(d, 4 * d, rngs=rngs)
    self.down = nnx.Linear(4 * d, d, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.down(nnx.gelu(self.up(self.ln2(x))))


class LanguageModel(nnx.Module):
  """Bytes → final hidden states (B, T, d); ``head`` (V, d) is the output
  layer, applied by the fused losses."""

  def __init__(self, d: int, layers: int, heads: int, length: int,
               rngs: nnx.Rngs):
    self.embed = nnx.Embed(V, d, rngs=rngs)
    self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(),
                                                        (length, d)))
    self.blocks = nnx.List([Block(d, heads, rngs) for _ in range(layers)])
    self.ln = nnx.LayerNorm(d, rngs=rngs)
    self.head = nnx.Param(jax.random.normal(rngs.params(), (V, d))
                          / math.sqrt(d))

  def __call__(self, tokens):
    T = tokens.shape[1]
    x = self.embed(tokens) + self.position[...][:T]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.ln(x)


def ce(model, x, y):
  return st.fused_linear_cross_entropy(model(x), model.head[...], y).mean()


@nnx.jit
def label_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(ce)(model, x, y)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def distill_step(model, optimizer, teacher, x, y, weight, temperature):
  t_hidden, t_head = teacher(x), teacher.head[...]

  def loss_fn(model):
    h, w = model(x), model.head[...]
    hard = st.fused_linear_cross_entropy(h, w, y)
    soft = st.fused_linear_distillation_loss(h, w, t_hidden, t_head,
                                             temperature=temperature)
    return ((1 - weight) * hard + weight * soft).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def validation_loss(model, x, y):
  return ce(model, x, y)


def batches(data, length, batch, rng):
  while True:
    i = rng.integers(0, len(data) - length - 1, batch)
    window = np.stack([data[j:j + length + 1] for j in i]).astype(np.int32)
    yield window[:, :-1], window[:, 1:]


def train(model, steps, data, val, args, seed, teacher=None, log=None):
  optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
  stream = batches(data, args.length, args.batch, np.random.default_rng(seed))
  curve = []
  for step in range(1, steps + 1):
    x, y = next(stream)
    if teacher is None:
      label_step(model, optimizer, x, y)
    else:
      distill_step(model, optimizer, teacher, x, y, args.weight,
                   args.temperature)
    if log is not None and (step % args.every == 0 or step == steps):
      bits = float(validation_loss(model, *val)) / math.log(2)
      curve.append((step, bits))
      log(step, bits)
  return curve


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="a tiny run (seconds), for the tests")
  p.add_argument("--steps", type=int, default=None,
                 help="student steps (teacher: twice as many)")
  p.add_argument("--out", help="PNG path (default: a temporary directory)")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  q = a.quick
  a.length, a.batch, a.lr = (32, 16, 3e-3) if q else (64, 32, 2e-3)
  a.steps = a.steps or (20 if q else 300)
  a.every = max(1, a.steps // 6)
  a.weight, a.temperature = 0.5, 1.0
  data = corpus(60_000 if q else 600_000)
  split = int(0.9 * len(data))
  train_data, val_data = data[:split], data[split:]
  rng = np.random.default_rng(123)
  vx, vy = next(batches(val_data, a.length, 64 if q else 256, rng))
  val = (jnp.asarray(vx), jnp.asarray(vy))
  print(f"corpus: {len(data):,} bytes of the standard library's sources "
        f"({split:,} train, {len(data) - split:,} validation)")

  teacher = LanguageModel(32 if q else 128, 1 if q else 2, 4, a.length,
                          nnx.Rngs(a.seed))
  tcurve = train(teacher, 2 * a.steps, train_data, val, a, a.seed + 1,
                 log=lambda s, b: None)
  print(f"teacher (d={teacher.head.shape[1]}, {len(teacher.blocks)} blocks):"
        f" validation {tcurve[-1][1]:.3f} bits/byte")

  def student():
    return LanguageModel(16 if q else 48, 1, 2, a.length,
                         nnx.Rngs(a.seed + 10))

  print(f"{'step':>6} {'labels only':>12} {'distilled':>10}  (validation "
        f"bits/byte)")
  rows = {}
  for name, t in (("labels", None), ("distilled", teacher)):
    rows[name] = train(student(), a.steps, train_data, val, a, a.seed + 2,
                       teacher=t, log=lambda s, b: None)
  for (step, base), (_, kd) in zip(rows["labels"], rows["distilled"]):
    print(f"{step:6d} {base:12.3f} {kd:10.3f}")
  print(f"final: labels only {rows['labels'][-1][1]:.3f}, distilled "
        f"{rows['distilled'][-1][1]:.3f} bits/byte")

  out = pathlib.Path(a.out) if a.out else (
      pathlib.Path(tempfile.mkdtemp()) / "distill_language_model.png")
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for name, label in (("labels", "student, labels only"),
                      ("distilled", "student, distilled (fused KL)")):
    steps, bits = zip(*rows[name])
    ax.plot(steps, bits, marker="o", label=label)
  ax.axhline(tcurve[-1][1], color="gray", ls="--", label="teacher")
  ax.set_xlabel("student step")
  ax.set_ylabel("validation bits / byte")
  ax.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=120)
  print(f"plot: {out}")


if __name__ == "__main__":
  main()

"""Seconds per training step of each method, relative to one-hot.

Each method gets its own compiled single-model step, written the way a user
would: a Dense layer, a learned cosine classifier, ``codebook_logits``
with a fixed codebook, CORAL's K − 1 logits w·z + b_k or a scalar w·z + b on
the body's features, plus the method's loss (``optax`` cross-entropy on its
targets, ``hierarchical_cross_entropy``, an online label-kernel update,
``coral_loss``, the squared error on the grade index). Methods whose steps differ only in data (the
fixed codebooks) share one program. The steps run in interleaved rounds, in
a shuffled order each round, in this process, after every queued
compilation has finished, and the medians are compared.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets.bench import _bodies, _training


def _program(method, d):
  """What a method's step computes: (head, loss, feature width)."""
  return (method.head, method.timed_as[0], d)


def _step(body, C, d, head, loss_name, tree, tx):
  def logits_of(p, b):
    z = body.apply(p["body"], b["x"])
    if head == "dense":
      return z @ p["dense_w"] + p["dense_b"]
    if head == "coral":  # nnx.CoralHead: one weight vector, K − 1 biases
      return (z @ p["ordinal_w"])[:, None] + p["coral_b"]
    if head == "regression":  # a Dense(1) head
      return z @ p["ordinal_w"] + p["reg_b"]
    W = p["class_vectors"] if head == "cosine" else b["W"]
    return st.codebook_logits(z, W, scale=b["scale"])

  def loss(p, b):
    logits = logits_of(p, b)
    y = b["y"]
    if loss_name == "smooth":
      return optax.softmax_cross_entropy(
          logits, optax.smooth_labels(jax.nn.one_hot(y, C), b["knob"])
      ).mean(), None
    if loss_name == "kernel":
      return optax.softmax_cross_entropy(logits, st.kernel_soft_labels(
          y, b["kernel"], temperature=b["knob"], alpha=1.0)).mean(), None
    if loss_name == "coral":
      return st.coral_loss(logits, y).mean(), None
    if loss_name == "regression":
      return jnp.mean((logits - y) ** 2), None
    if loss_name == "hxe":
      return st.hierarchical_cross_entropy(logits, y, tree,
                                           alpha=b["knob"]).mean(), None
    if loss_name == "online":
      targets = (1 - b["knob"]) * jax.nn.one_hot(y, C) \
          + b["knob"] * b["online"][y]
      return optax.softmax_cross_entropy(logits, targets).mean(), \
          jax.nn.softmax(jax.lax.stop_gradient(logits))
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, y).mean(), None

  def step(p, opt, sums, b):
    (_, probs), g = jax.value_and_grad(loss, has_aux=True)(p, b)
    updates, opt = tx.update(g, opt, p)
    if probs is not None:  # the online label kernel's per-class sums
      right = (probs.argmax(-1) == b["y"]).astype(probs.dtype)
      sums = sums + jax.ops.segment_sum(probs * right[:, None], b["y"], C)
    return optax.apply_updates(p, updates), opt, sums

  return jax.jit(step)


def step_time_ratios(task, runner, selections, methods, *, x, y,
                     rounds: int, steps: int) -> dict:
  """Median seconds per step of each method / that of one-hot."""
  C, F = task.num_classes, runner.F
  tx = optax.adamw(1e-3, weight_decay=1e-4)
  seed = runner.data.seeds[-1]
  programs, states = {}, {}
  for method in methods:
    d = runner.small_d[seed] if method.codes == "spectral-small" else F
    key = _program(method, d)
    body = _bodies.make_body(task.body, d, single=True)
    if key not in programs:
      head, loss_name, _ = key
      programs[key] = _step(body, C, d, head, loss_name, task.tree, tx)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]),
                                    _training.init_params(body, C, d, [0],
                                                  x.shape[1:]))
    keep = {"body"} | {"dense": {"dense_w", "dense_b"},
                       "cosine": {"class_vectors"},
                       "coral": {"ordinal_w", "coral_b"},
                       "regression": {"ordinal_w", "reg_b"}}.get(
                           method.head, set())
    params = {k: v for k, v in params.items() if k in keep}
    hp = selections[method.name].chosen
    knob = method.timed_as[1]
    # A kernel loss without a tuned temperature (SORD) runs at τ = 1.
    untuned = 1.0 if method.timed_as[0] == "kernel" else 0.0
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y),
             "knob": jnp.float32(hp[knob] if knob else untuned)}
    if method.head in ("cosine", "codebook"):
      batch["scale"] = jnp.float32(hp["scale"])
    if method.head == "codebook":
      codes = runner.codebooks[seed][method.codes]
      batch["W"] = jnp.asarray(codes[:, :d], jnp.float32)
    if key[1] == "kernel":
      batch["kernel"] = jnp.asarray(runner.kernels[seed], jnp.float32)
    if key[1] == "online":
      batch["online"] = jnp.full((C, C), 1.0 / C, jnp.float32)
    states[method.name] = (programs[key], params, tx.init(params),
                           jnp.zeros((C, C)), batch)
  times: dict[str, list[float]] = {name: [] for name in states}
  order = np.random.default_rng(0)
  for _ in range(rounds):
    for name in order.permutation(list(states)):
      fn, p, opt, sums, batch = states[name]
      p, opt, sums = jax.block_until_ready(fn(p, opt, sums, batch))
      t0 = time.perf_counter()
      for _ in range(steps):
        p, opt, sums = fn(p, opt, sums, batch)
      jax.block_until_ready((p, opt, sums))
      times[name].append((time.perf_counter() - t0) / steps)
      states[name] = (fn, p, opt, sums, batch)
  base = float(np.median(times["one-hot"]))
  return {name: float(np.median(t)) / base for name, t in times.items()}

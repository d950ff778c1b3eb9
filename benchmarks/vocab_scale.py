"""Vocabulary-scale losses: fused against naive (issue 23).

1. Memory: XLA's compiled ``memory_analysis().temp_size_in_bytes`` of
   ``jax.jit(jax.value_and_grad(loss))`` (gradient with respect to the
   student's hidden states and weight), f32 and bf16, fused against naive
   (the full logits, then optax's cross-entropy / the textbook forward KL,
   reverse KL and JSD), for cross-entropy and each divergence
   at N = 8192, D = 1024, V in {32768, 131072}. Compiled only: nothing runs.
2. Time: medians of interleaved runs (naive, fused, fused reduced, naive,
   ...) of the value and gradient of the mean loss at N = 2048, V = 32768,
   D = 512, f32.
3. Scale: one training step (value and gradient of a linear map into the
   codebook's space, the codebook fixed) of a codebook head at C = 1,000,000
   classes, B = 256, d = 128: a random unit-row codebook, the fused
   cross-entropy with a scale; time and peak memory, in a fresh process.
4. The largest V at which the naive forward-KL step (N = 8192, D = 1024,
   f32) still fits 24 GB (temporaries + arguments + outputs, as compiled),
   and the fused step's memory there and at V = 10**6.

    python benchmarks/vocab_scale.py            # all (about 20 minutes)
    python benchmarks/vocab_scale.py --quick    # small shapes, a smoke run
    python benchmarks/vocab_scale.py --only memory   # or time, scale, limit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets.bench import cpu_name

LOSSES = ("cross_entropy", "forward", "reverse", "jensen_shannon")
GB = 1e9


def _naive_divergence(s, t, kind, beta=0.5):
  t = jax.lax.stop_gradient(t)
  lq, lp = jax.nn.log_softmax(s), jax.nn.log_softmax(t)
  if kind == "forward":  # the textbook KL (distillation_loss holds more)
    return jnp.sum(jnp.exp(lp) * (lp - lq), -1)
  if kind == "reverse":
    return jnp.sum(jnp.exp(lq) * (lq - lp), -1)
  lm = jnp.logaddexp(jnp.log(beta) + lp, jnp.log1p(-beta) + lq)
  return (beta * jnp.sum(jnp.exp(lp) * (lp - lm), -1)
          + (1 - beta) * jnp.sum(jnp.exp(lq) * (lq - lm), -1))


def objective(kind, fused, reduced=False):
  """The mean loss over positions as f(hs, ws, ht, wt, labels)."""

  def f(hs, ws, ht, wt, labels):
    if kind == "cross_entropy":
      if fused:
        per = st.fused_linear_cross_entropy(hs, ws, labels)
      else:
        logits = jnp.einsum("nd,vd->nv", hs, ws,
                            preferred_element_type=jnp.float32)
        per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    elif fused:
      per = st.fused_linear_distillation_loss(hs, ws, ht, wt,
                                              divergence=kind)
    else:
      s = jnp.einsum("nd,vd->nv", hs, ws, preferred_element_type=jnp.float32)
      t = jnp.einsum("nd,vd->nv", ht, wt, preferred_element_type=jnp.float32)
      per = _naive_divergence(s, t, kind)
    return per.mean()

  if reduced:
    return _reduced(kind)
  return f


def _reduced(kind):
  def f(hs, ws, ht, wt, labels):
    if kind == "cross_entropy":
      return st.fused_linear_cross_entropy(hs, ws, labels, reduction="mean")
    return st.fused_linear_distillation_loss(hs, ws, ht, wt, divergence=kind,
                                             reduction="mean")
  return f


def _args(N, V, D, dtype, concrete=False):
  shapes = [(N, D), (V, D), (N, D), (V, D)]
  if not concrete:
    return ([jax.ShapeDtypeStruct(s, dtype) for s in shapes]
            + [jax.ShapeDtypeStruct((N,), jnp.int32)])
  rng = np.random.default_rng(0)
  arrays = [jnp.asarray(rng.normal(size=s) / np.sqrt(s[1]) * (4 if i % 2 == 0
                                                               else 1), dtype)
            for i, s in enumerate(shapes)]
  return arrays + [jnp.asarray(rng.integers(0, V, N), jnp.int32)]


def _step(f):
  return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def compiled_memory(f, args):
  m = _step(f).lower(*args).compile().memory_analysis()
  return dict(temp=m.temp_size_in_bytes, argument=m.argument_size_in_bytes,
              output=m.output_size_in_bytes)


def memory(sizes, N, D):
  rows = []
  for V in sizes:
    for dtype in (jnp.float32, jnp.bfloat16):
      args = _args(N, V, D, dtype)
      for kind in LOSSES:
        naive = compiled_memory(objective(kind, False), args)
        fused = compiled_memory(objective(kind, True), args)
        red = compiled_memory(objective(kind, True, reduced=True), args)
        rows.append(dict(N=N, V=V, D=D, dtype=jnp.dtype(dtype).name,
                         loss=kind, naive_temp=naive["temp"],
                         fused_temp=fused["temp"], reduced_temp=red["temp"],
                         ratio=fused["temp"] / naive["temp"],
                         reduced_ratio=red["temp"] / naive["temp"]))
        print(json.dumps(rows[-1]), flush=True)
  return rows


def timing(N, V, D, repeats):
  rows = []
  args = _args(N, V, D, jnp.float32, concrete=True)
  for kind in LOSSES:
    steps = {name: _step(objective(kind, name != "naive",
                                   reduced=name == "reduced"))
             for name in ("naive", "fused", "reduced")}
    for s in steps.values():  # compile, and check the three agree
      jax.block_until_ready(s(*args))
    got = {k: s(*args) for k, s in steps.items()}
    agree = max(float(jnp.max(jnp.abs(got[k][1][1] - got["naive"][1][1])))
                for k in ("fused", "reduced"))
    times = {k: [] for k in steps}
    for _ in range(repeats):
      for k, s in steps.items():  # interleaved: each round runs all three
        start = time.perf_counter()
        jax.block_until_ready(s(*args))
        times[k].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows.append(dict(N=N, V=V, D=D, loss=kind, repeats=repeats,
                     naive_s=med["naive"], fused_s=med["fused"],
                     reduced_s=med["reduced"],
                     fused_ratio=med["fused"] / med["naive"],
                     reduced_ratio=med["reduced"] / med["naive"],
                     max_abs_grad_difference=agree))
    print(json.dumps(rows[-1]), flush=True)
  return rows


def scale_step(C, B, d, chunk_size):
  """One training step of a codebook head at C classes; run in a child."""
  rng = np.random.default_rng(0)
  codes = rng.normal(size=(C, d)).astype(np.float32)
  codes /= np.linalg.norm(codes, axis=1, keepdims=True)
  codes = jnp.asarray(codes)
  x = jnp.asarray(rng.normal(size=(B, d)), jnp.float32)
  y = jnp.asarray(rng.integers(0, C, B), jnp.int32)
  proj = jnp.asarray(rng.normal(size=(d, d)) / np.sqrt(d), jnp.float32)
  opt = optax.sgd(0.1)
  state = opt.init(proj)

  @jax.jit
  def step(proj, state):
    def loss(proj):
      return st.fused_linear_cross_entropy(x @ proj, codes, y, scale=16.0,
                                           chunk_size=chunk_size).mean()
    value, grad = jax.value_and_grad(loss)(proj)
    updates, state = opt.update(grad, state)
    return optax.apply_updates(proj, updates), state, value

  compiled = step.lower(proj, state).compile()
  mem = compiled.memory_analysis()
  start = time.perf_counter()
  out = jax.block_until_ready(step(proj, state))
  first = time.perf_counter() - start
  times = []
  for _ in range(3):
    start = time.perf_counter()
    out = jax.block_until_ready(step(out[0], out[1]))
    times.append(time.perf_counter() - start)
  with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f
               if line.startswith("VmHWM")) * 1024
  return dict(C=C, B=B, d=d, chunk_size=chunk_size, loss=float(out[2]),
              first_step_s=first, step_s=float(np.median(times)),
              temp_bytes=mem.temp_size_in_bytes,
              argument_bytes=mem.argument_size_in_bytes, peak_rss=hwm)


def scale(C, B, d, chunk_size):
  out = subprocess.run(
      [sys.executable, __file__, "--scale-child", str(C), str(B), str(d),
       str(chunk_size)], check=True, capture_output=True, text=True,
      env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}).stdout
  row = json.loads(out.strip().splitlines()[-1])
  print(json.dumps(row), flush=True)
  return row


def limit(N, D, budget, step):
  """The largest V (a multiple of ``step``) whose naive forward-KL step
  compiles to at most ``budget`` bytes in all; the fused step beside it."""

  def total(kind_fused, V):
    m = compiled_memory(objective("forward", kind_fused),
                        _args(N, V, D, jnp.float32))
    return m["temp"] + m["argument"] + m["output"]

  lo, hi = step, step
  while total(False, hi) <= budget:
    lo, hi = hi, hi * 2
  while hi - lo > step:
    mid = (lo + hi) // 2 // step * step
    lo, hi = (mid, hi) if total(False, mid) <= budget else (lo, mid)
  row = dict(N=N, D=D, budget=budget, naive_largest_V=lo,
             naive_total=total(False, lo), fused_total_there=total(True, lo))
  V = 10**6
  m = compiled_memory(objective("forward", True), _args(N, V, D, jnp.float32))
  row |= dict(fused_V=V, fused_temp_at_V=m["temp"],
              fused_total_at_V=m["temp"] + m["argument"] + m["output"])
  print(json.dumps(row), flush=True)
  return row


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--only", choices=("memory", "time", "scale", "limit"))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--out", help="write the rows as JSON here")
  p.add_argument("--scale-child", nargs=4, type=int, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.scale_child:
    print(json.dumps(scale_step(*a.scale_child)))
    return
  print(f"# {cpu_name()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}", flush=True)
  q = a.quick
  results = {}
  if a.only in (None, "memory"):
    results["memory"] = memory([2048, 8192] if q else [32768, 131072],
                               256 if q else 8192, 64 if q else 1024)
  if a.only in (None, "time"):
    results["time"] = timing(256 if q else 2048, 4096 if q else 32768,
                             64 if q else 512, 2 if q else a.repeats)
  if a.only in (None, "scale"):
    results["scale"] = scale(20_000 if q else 1_000_000, 256,
                             32 if q else 128, 32)
  if a.only in (None, "limit"):
    results["limit"] = limit(256 if q else 8192, 64 if q else 1024,
                             (0.25 if q else 24) * GB, 4096 if q else 8192)
  if a.out:
    with open(a.out, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

"""A codebook head with the class axis sharded over 4 CPU devices: the loss
equals the single-device loss, and no device gathers the C-wide logits."""

import contextlib
import re

import jax
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import spectral_targets as st

C, D, B = 1024, 16, 32
RNG = np.random.default_rng(0)
W = RNG.normal(size=(C, D)).astype(np.float32)
Z = RNG.normal(size=(B, D)).astype(np.float32)
Y = RNG.integers(0, C, size=B)


def loss(z, codebook, labels, explicit):
  logits = st.codebook_logits(z, codebook, scale=16.0)
  ce = optax.softmax_cross_entropy_with_integer_labels
  if explicit:
    # Under an Explicit mesh, optax's label gather needs its output sharding
    # named; auto_axes lets the partitioner choose it (the README's recipe).
    ce = jax.sharding.auto_axes(ce, out_sharding=P(None))
  return ce(logits, labels).mean()


@pytest.mark.parametrize("kind", [AxisType.Auto, AxisType.Explicit],
                         ids=lambda k: k.name)
def test_class_sharded_loss_equals_single_device(kind):
  mesh = jax.make_mesh((4,), ("classes",), axis_types=(kind,))
  explicit = kind == AxisType.Explicit
  want, want_grad = jax.value_and_grad(loss)(Z, W, Y, False)
  with jax.set_mesh(mesh) if explicit else contextlib.nullcontext():
    codebook = jax.device_put(W, NamedSharding(mesh, P("classes", None)))
    assert codebook.addressable_shards[0].data.shape == (C // 4, D)
    step = jax.jit(jax.value_and_grad(loss), static_argnums=3)
    got, got_grad = step(Z, codebook, Y, explicit)
    hlo = step.lower(Z, codebook, Y, explicit).compile().as_text()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-6)
  collectives = [line for line in hlo.splitlines()
                 if re.search(r"all-gather|all-reduce|all-to-all|"
                              r"collective-permute", line)]
  assert collectives, "expected cross-device reductions over the class axis"
  assert not any("all-gather" in line for line in collectives)
  # Only per-example values cross devices, never a C-wide (or C/4) row.
  for line in collectives:
    shapes = re.findall(r"f32\[([\d,]*)\]", line.split("=", 1)[1][:200])
    for shape in shapes:
      dims = [int(s) for s in shape.split(",") if s]
      assert all(dim < C // 4 for dim in dims), line

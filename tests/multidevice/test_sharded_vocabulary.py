"""The fused vocabulary-scale losses with the vocabulary sharded over 4 CPU
devices (``axis_name`` inside ``shard_map``): the same values and gradients
as on one device, and no device gathers the V-wide logits."""

import functools
import re

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import spectral_targets as st

N, D, E, V, K = 10, 6, 5, 32, 4
RNG = np.random.default_rng(0)
HS = RNG.normal(size=(N, D)).astype(np.float32)
WS = RNG.normal(size=(V, D)).astype(np.float32)
B = RNG.normal(size=V).astype(np.float32)
HT = RNG.normal(size=(N, E)).astype(np.float32)
WT = RNG.normal(size=(V, E)).astype(np.float32)
Y = RNG.integers(0, V, size=N)
VALUES = (2 * RNG.normal(size=(N, K))).astype(np.float32)
INDICES = np.stack([RNG.choice(V, K, replace=False) for _ in range(N)])
MASK = RNG.random(N) > 0.3
COT = RNG.normal(size=N).astype(np.float32)
MESH = jax.make_mesh((4,), ("vocab",), axis_types=(AxisType.Auto,))

LOSSES = {
    "cross_entropy": lambda hs, ws, b, wt, **kw: (
        st.fused_linear_cross_entropy(hs, ws, Y, bias=b, label_smoothing=0.1,
                                      **kw)),
    "forward": lambda hs, ws, b, wt, **kw: (
        st.fused_linear_distillation_loss(hs, ws, HT, wt, temperature=2.0,
                                          **kw)),
    "reverse": lambda hs, ws, b, wt, **kw: (
        st.fused_linear_distillation_loss(hs, ws, HT, wt,
                                          divergence="reverse", **kw)),
    "jensen_shannon": lambda hs, ws, b, wt, **kw: (
        st.fused_linear_distillation_loss(
            hs, ws, HT, wt, divergence="jensen_shannon", beta=0.3,
            temperature=1.5, **kw)),
    "top_k": lambda hs, ws, b, wt, **kw: st.top_k_distillation_loss(
        hs, ws, VALUES, INDICES, temperature=2.0, **kw),
}


def _objective(name, sharded):
  loss = functools.partial(LOSSES[name], where=MASK, chunk_size=4)
  if not sharded:
    return lambda hs, ws, b: loss(hs, ws, b, WT) @ COT
  f = jax.shard_map(
      lambda hs, ws, b, wt: loss(hs, ws, b, wt, axis_name="vocab") @ COT,
      mesh=MESH, in_specs=(P(), P("vocab", None), P("vocab"),
                           P("vocab", None)), out_specs=P())
  return lambda hs, ws, b: f(hs, ws, b, WT)


@pytest.mark.parametrize("blocks", [False, True],
                         ids=["whole", "vocabulary_blocks"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_sharded_vocabulary_equals_single_device(name, blocks, monkeypatch):
  if blocks:  # the backward pass in blocks of 2 of each shard's 8 rows
    monkeypatch.setattr(st._vocabulary_chunks, "CHUNK_ELEMENTS", 8)
  want, want_grad = jax.value_and_grad(_objective(name, False),
                                       argnums=(0, 1, 2))(HS, WS, B)
  step = jax.jit(jax.value_and_grad(_objective(name, True),
                                    argnums=(0, 1, 2)))
  ws = jax.device_put(WS, NamedSharding(MESH, P("vocab", None)))
  assert ws.addressable_shards[0].data.shape == (V // 4, D)
  got, got_grad = step(HS, ws, B)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for g, w in zip(got_grad, want_grad):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
  hlo = step.lower(HS, ws, B).compile().as_text()
  assert re.search(r"all-reduce", hlo), "expected per-shard reductions"
  assert not re.search(r"all-gather", hlo), "logits must not be gathered"

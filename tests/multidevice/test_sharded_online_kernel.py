"""OnlineKernel under data-parallel sharding on 4 CPU devices: jit with an
Auto and an Explicit mesh (the batch_mesh fixture of conftest.py), and
all_reduce inside shard_map."""

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import spectral_targets as st

C, N = 6, 64
RNG = np.random.default_rng(0)
Y = RNG.integers(0, C, size=N)
LOGITS = (RNG.normal(size=(C, C)) + 2 * np.eye(C))[Y] + RNG.normal(size=(N, C))
PROBS = np.asarray(jax.nn.softmax(LOGITS.astype(np.float32)))


def _sharded(mesh):
  p = jax.device_put(PROBS, NamedSharding(mesh, P("batch", None)))
  y = jax.device_put(Y, NamedSharding(mesh, P("batch")))
  assert p.addressable_shards[0].data.shape == (N // 4, C)
  return p, y


def _assert_same(got, want):
  np.testing.assert_array_equal(got.counts, want.counts)
  np.testing.assert_allclose(got.sums, want.sums, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.kernel(), want.kernel(), rtol=1e-5,
                             atol=1e-6)


def test_jit_update_sharded_equals_single_device(batch_mesh):
  mesh = batch_mesh
  p, y = _sharded(mesh)
  got = jax.jit(st.OnlineKernel.update)(st.OnlineKernel.init(C), p, y)
  _assert_same(got, st.OnlineKernel.init(C).update(PROBS, Y))
  assert 0 < int(got.counts.sum()) < N   # some examples were not counted


def test_all_reduce_in_shard_map_equals_one_shot(batch_mesh):
  mesh = batch_mesh
  p, y = _sharded(mesh)

  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh,
                     in_specs=(P("batch", None), P("batch")), out_specs=P())
  def per_device(p, y):
    return st.OnlineKernel.init(C).update(p, y).all_reduce("batch")

  _assert_same(per_device(p, y), st.OnlineKernel.init(C).update(PROBS, Y))


def test_all_reduce_equals_pairwise_merges(all_reduce_parts):
  parts = [st.OnlineKernel.init(C).update(PROBS[i::4], Y[i::4])
           for i in range(4)]
  _assert_same(all_reduce_parts(parts),
               functools.reduce(st.OnlineKernel.merge, parts))

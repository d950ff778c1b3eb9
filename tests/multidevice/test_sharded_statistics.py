"""Class statistics under data-parallel sharding on 4 CPU devices, with an
Auto mesh (jit's SPMD partitioner) and an Explicit one (jax.set_mesh)."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import spectral_targets as st
from spectral_targets import _sharding

C, D, N = 7, 5, 400
RNG = np.random.default_rng(0)
Y = RNG.integers(0, C, size=N)
Z = (RNG.normal(size=(C, D)) * 3)[Y] + RNG.normal(size=(N, D))
Z = Z.astype(np.float32)
MESHES = {kind: jax.make_mesh((4,), ("batch",), axis_types=(kind,))
          for kind in (AxisType.Auto, AxisType.Explicit)}


@pytest.fixture(params=list(MESHES), ids=lambda k: k.name)
def mesh(request):
  mesh = MESHES[request.param]
  ctx = (jax.set_mesh(mesh) if request.param == AxisType.Explicit
         else contextlib.nullcontext())
  with ctx:
    yield mesh


def _sharded(mesh):
  z = jax.device_put(Z, NamedSharding(mesh, P("batch", None)))
  y = jax.device_put(Y, NamedSharding(mesh, P("batch")))
  assert len(z.addressable_shards) == 4
  assert z.addressable_shards[0].data.shape == (N // 4, D)
  return z, y


def test_jit_class_covariances_sharded_equals_single_device(mesh):
  z, y = _sharded(mesh)
  got = jax.jit(st.class_covariances, static_argnums=2)(z, y, C)
  want = st.class_covariances(Z, Y, C)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_update_sharded_equals_single_device(mesh):
  z, y = _sharded(mesh)
  update = jax.jit(st.ClassStatistics.update)
  got = update(st.ClassStatistics.zeros(C, D), z, y)
  want = st.ClassStatistics.zeros(C, D).update(Z, Y)
  for a, b in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_all_reduce_in_shard_map_equals_one_shot(mesh):
  z, y = _sharded(mesh)

  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh,
                     in_specs=(P("batch", None), P("batch")), out_specs=P())
  def per_device(z, y):
    local = st.ClassStatistics.zeros(C, D).update(z, y)
    return local.all_reduce("batch")

  got = per_device(z, y)
  one = st.ClassStatistics.zeros(C, D).update(Z, Y)
  np.testing.assert_array_equal(got.counts, one.counts)
  for a, b in zip(got.covariances(), one.covariances()):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got.means, one.means, rtol=1e-5, atol=1e-5)


def test_all_reduce_equals_pairwise_merges():
  # all_reduce agrees with merging the four shards' statistics by hand.
  mesh = MESHES[AxisType.Auto]
  parts = [st.ClassStatistics.zeros(C, D).update(Z[i::4], Y[i::4])
           for i in range(4)]
  merged = functools.reduce(st.ClassStatistics.merge, parts)
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *parts)
  stacked = jax.device_put(stacked, NamedSharding(mesh, P("batch")))

  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh, in_specs=P("batch"),
                     out_specs=P())
  def reduce(stats):
    squeeze = jax.tree_util.tree_map(lambda x: x[0], stats)
    return squeeze.all_reduce("batch")

  got = reduce(stacked)
  for a, b in zip(got.covariances(), merged.covariances()):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sharded_features_are_never_gathered(mesh):
  # Rows split over devices take the one partitionable product: each device
  # reduces its own rows; only C × D and D × D sums cross devices.
  z, y = _sharded(mesh)
  hlo = jax.jit(st.class_covariances, static_argnums=2).lower(
      z, y, C).compile().as_text()
  assert "all-reduce" in hlo
  assert "all-gather" not in hlo and "all-to-all" not in hlo


def test_which_rows_may_be_split(mesh):
  # The blocked product runs only where the rows are known to be whole.
  split = _sharding.may_split_rows
  z, _ = _sharded(mesh)
  assert split(z)
  assert not split(jax.device_put(Z, NamedSharding(mesh, P())))
  assert not split(jax.device_put(Z, jax.devices()[0]))
  whole = jax.device_put(Z, NamedSharding(mesh, P()))
  seen = []
  jax.jit(lambda z: seen.append(split(z)))(z)
  jax.jit(lambda z: seen.append(split(z)))(whole)
  jax.jit(jax.shard_map(lambda z: seen.append(split(z)) or z, mesh=mesh,
                        in_specs=P("batch", None), out_specs=P("batch")))(z)
  # An Explicit mesh types the sharding; under Auto axes jit cannot know
  # yet; inside shard_map the rows are local.
  explicit = mesh.axis_types[0] == AxisType.Explicit
  assert seen == [True, not explicit, False]

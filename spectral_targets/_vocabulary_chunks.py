"""Losses of a linear head, chunk by chunk, without the (N, V) logits.

The machinery the fused losses share (DESIGN.md §12). A loss of the logits
ℓ = h Wᵀ (+ b) of N positions over V classes needs only per-position
reductions over the vocabulary (log-sum-exps, expectations), and its
gradient with respect to ℓ, row by row. So positions are processed in
chunks of ``chunk`` rows: each chunk's (chunk, V) logits are formed,
reduced to a few numbers per position, and dropped. A ``jax.custom_vjp``
keeps only the inputs and those per-position numbers; the backward pass
recomputes each chunk's logits, forms ∂L/∂ℓ for the chunk from the saved
numbers, and contracts it at once into ∂L/∂h (chunk, D) and into float32
accumulators for ∂L/∂W (V, D) and ∂L/∂b, so no (N, V) array ever exists,
forward or backward.

The vocabulary of a chunk may be split across devices: inside
``shard_map``, with ``axis_name`` naming the mesh axis over which the
weight's rows are sharded, every reduction over the vocabulary is a local
one followed by ``pmax``/``psum`` (the maximum of a log-sum-exp, then its
rescaled sum; Megatron-LM's vocabulary-parallel cross-entropy). Only (chunk,)
numbers cross devices, never logits; ∂L/∂h is the ``psum`` of the shards'
contributions, and each device keeps the gradient of its own rows of W.

A loss is a ``ChunkLoss``: ``value`` maps a chunk's logits to per-position
losses and the per-position numbers its gradient needs; ``gradient`` maps
the recomputed logits and those numbers to ∂L/∂ℓ. Both see the vocabulary
only through a ``Vocabulary``, which does the (possibly collective)
reductions, so one implementation serves one device and many.

Implementation notes: the chunk loop is ``lax.map`` forward and
``lax.scan`` backward (the gradient accumulators are its carry). An
uneven last chunk is padded with masked positions. Logit matmuls take the
inputs' dtype with ``preferred_element_type`` float32 (float64 for float64
inputs), so bf16/f16 inputs accumulate in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _validation as v

#: Logit entries per chunk when ``chunk_size`` is None: 2**22 float32 logits
#: (16 MiB) per array, a few such arrays live at a time.
CHUNK_ELEMENTS = 2**22

#: A loss's scalar hyperparameters (temperature, …), as arrays.
Params = tuple[jax.Array, ...]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Reductions over the class axis of a chunk's logits, whose columns are
  this device's ``local`` classes ``offset, …, offset + local − 1`` of
  ``size``; with ``axis_name`` the rest are on the other devices. A block
  of the device's ``shard`` rows starts at row ``start`` of it (the
  backward pass's vocabulary blocks; their gradients use no reductions)."""

  size: int
  local: int
  axis_name: str | None
  start: jax.Array | int = 0
  shard: int | None = None

  @property
  def offset(self) -> jax.Array | int:
    if self.axis_name is None:
      return self.start
    rows = self.local if self.shard is None else self.shard
    return jax.lax.axis_index(self.axis_name) * rows + self.start

  def total(self, x: jax.Array) -> jax.Array:
    """Σ over the vocabulary (last axis, kept)."""
    out = jnp.sum(x, axis=-1, keepdims=True)
    return out if self.axis_name is None else jax.lax.psum(out, self.axis_name)

  def largest(self, x: jax.Array) -> jax.Array:
    """max over the vocabulary (last axis, kept)."""
    out = jnp.max(x, axis=-1, keepdims=True)
    return out if self.axis_name is None else jax.lax.pmax(out, self.axis_name)

  def logsumexp(self, x: jax.Array) -> jax.Array:
    """log Σ exp(x) over the vocabulary (kept); -inf for a row of -inf."""
    m = self.largest(x)
    m = jnp.where(jnp.isfinite(m), m, 0)
    return m + jnp.log(self.total(jnp.exp(x - m)))

  def take(self, x: jax.Array, index: jax.Array) -> jax.Array:
    """x[i, index[i, j]] for global class indices (c, k); every device gets
    every entry (0 where an index is out of range)."""
    local = index - self.offset
    inside = (local >= 0) & (local < self.local)
    got = jnp.take_along_axis(x, jnp.where(inside, local, 0), axis=-1)
    got = jnp.where(inside, got, 0)
    return got if self.axis_name is None else jax.lax.psum(got, self.axis_name)

  def one_hot(self, index: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """(c, local) boolean: True at the global classes ``index`` (c, k)."""
    local = index - self.offset
    local = jnp.where((local >= 0) & (local < self.local), local, self.local)
    rows = jnp.arange(shape[0])[:, None]
    return jnp.zeros(shape, bool).at[rows, local].set(True, mode="drop")


class ChunkLoss(Protocol):
  """A per-position loss of a chunk of logits (see the module docstring).

  ``value(s, t, data, params, vocab)`` → ((c,) losses, (c, m) saved);
  ``gradient(s, t, data, saved, params, vocab)`` → (c, local) ∂L_i/∂s_iv.
  ``value`` sees the whole (local) vocabulary; ``gradient`` may see one
  block of it (``vocab.offset``, ``vocab.local``), so it must be
  elementwise given ``saved``: no reductions over the vocabulary.
  ``s`` are the student's logits (c, local); ``t`` the teacher's (or None);
  ``data`` the chunk's rows of the per-position arrays; ``params`` the
  scalar hyperparameters. Must be hashable (it is a static argument).
  """

  def value(self, s: jax.Array, t: jax.Array | None, data: Any,
            params: Params, vocab: Vocabulary
            ) -> tuple[jax.Array, jax.Array]:
    ...

  def gradient(self, s: jax.Array, t: jax.Array | None, data: Any,
               saved: jax.Array, params: Params, vocab: Vocabulary
               ) -> jax.Array:
    ...


def logsumexp_outside(x: jax.Array, mask: jax.Array,
                      vocab: Vocabulary) -> jax.Array:
  """log Σ exp(x) over the entries ``mask`` excludes (kept axis)."""
  return vocab.logsumexp(jnp.where(mask, -jnp.inf, x))


def log1mexp(x: jax.Array) -> jax.Array:
  """log(1 − eˣ) for x ≤ 0, accurate on both sides of log 2 (Mächler)."""
  return jnp.where(x > -math.log(2), jnp.log(-jnp.expm1(x)),
                   jnp.log1p(-jnp.exp(x)))


def forward_kl_gradient(lp: jax.Array, lq: jax.Array, d: jax.Array,
                        mean: jax.Array, kl: jax.Array,
                        temperature: jax.Array) -> jax.Array:
  r"""∂/∂s of τ²·KL(p ‖ softmax(s/τ)): τ (q − p), without cancellation.

  With ``d`` and ``mean`` those of ``tempered_kl`` (t − s up to a row
  constant, and its mean under p) and ``kl`` the KL itself,
  :math:`\log q_c - \log p_c = -\epsilon_c - \mathrm{KL}`,
  :math:`\epsilon = (d - \mu)/\tau`, so :math:`q - p = p\,
  \operatorname{expm1}(-\epsilon - \mathrm{KL})` keeps full precision when
  q ≈ p (large τ); elsewhere q − p has nothing to cancel. Off the teacher's
  support (p = 0) it is τ q.
  """
  tau = temperature
  support = lp != -jnp.inf
  eps = jnp.where(support, d - mean, 0) / tau
  x = -eps - kl
  near = support & (jnp.abs(x) <= 0.5)
  p = jnp.where(support, jnp.exp(jnp.where(support, lp, 0)), 0)
  close = p * jnp.expm1(jnp.where(near, x, 0))
  return tau * jnp.where(near, close, jnp.exp(lq) - p)


def pick_chunk(chunk_size: int | None, n: int, local: int) -> int:
  """The chunk size: as given (checked), else CHUNK_ELEMENTS / V rows."""
  if chunk_size is None:
    return max(1, min(n, CHUNK_ELEMENTS // max(local, 1)))
  return v.check_int(chunk_size, "chunk_size", minimum=1)


@dataclasses.dataclass(frozen=True)
class _Static:
  loss: ChunkLoss
  chunk: int
  vocab: Vocabulary


def _logits(h: jax.Array, w: jax.Array, b: jax.Array | None,
            dtype: Any) -> jax.Array:
  out = jnp.einsum("cd,vd->cv", h, w, preferred_element_type=dtype)
  return out if b is None else out + b.astype(dtype)


def _chunked(x: Any, chunk: int, n: int) -> Any:
  """Every (N, ...) leaf padded to n·chunk rows and reshaped (n, chunk, ...)."""

  def one(a: jax.Array) -> jax.Array:
    pad = n * chunk - a.shape[0]
    if pad:
      a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((n, chunk) + a.shape[1:])

  return jax.tree_util.tree_map(one, x)


def fused_loss(loss: ChunkLoss, hidden: jax.Array, weight: jax.Array,
               bias: jax.Array | None, teacher: tuple[jax.Array, jax.Array]
               | None, data: Any, params: Any, mask: jax.Array, *,
               chunk: int, vocab: Vocabulary) -> jax.Array:
  """(N,) per-position losses of ``loss`` on ``hidden @ weight.T + bias``
  (and ``teacher``'s logits), zero where ``mask`` is False; differentiable
  in ``hidden``, ``weight`` and ``bias`` only."""
  teacher = jax.lax.stop_gradient(teacher)
  return _fused(_Static(loss, chunk, vocab), hidden, weight, bias, teacher,
                data, params, mask)


def _compute_dtype(hidden: jax.Array) -> Any:
  return v.compute_dtype(hidden.dtype)


def _forward_chunks(st: _Static, hidden: jax.Array, weight: jax.Array,
                    bias: jax.Array | None, teacher: Any, data: Any,
                    params: Any, mask: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  dtype = _compute_dtype(hidden)
  N = hidden.shape[0]
  n = -(-N // st.chunk)
  th = None if teacher is None else teacher[0]
  xs = _chunked((hidden, th, data, mask), st.chunk, n)

  def body(x: Any) -> tuple[jax.Array, jax.Array]:
    h, t_h, d, m = x
    s = _logits(h, weight, bias, dtype)
    t = None if teacher is None else _logits(t_h, teacher[1], None, dtype)
    value, saved = st.loss.value(s, t, d, params, st.vocab)
    return jnp.where(m, value, 0), saved

  values, saved = jax.lax.map(body, xs)
  return values.reshape(-1)[:N], saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(st: _Static, hidden: jax.Array, weight: jax.Array,
           bias: jax.Array | None, teacher: Any, data: Any, params: Any,
           mask: jax.Array) -> jax.Array:
  return _forward_chunks(st, hidden, weight, bias, teacher, data, params,
                         mask)[0]


def _fused_fwd(st: _Static, hidden: jax.Array, weight: jax.Array,
               bias: jax.Array | None, teacher: Any, data: Any, params: Any,
               mask: jax.Array) -> tuple[jax.Array, Any]:
  values, saved = _forward_chunks(st, hidden, weight, bias, teacher, data,
                                  params, mask)
  return values, (hidden, weight, bias, teacher, data, params, mask, saved)


def vocabulary_block(rows: int, chunk: int, features: int) -> int:
  """Rows of W per block of the backward pass: the largest divisor of
  ``rows`` whose tile (chunk × block logits) and ∂L/∂W block (block ×
  features) hold at most CHUNK_ELEMENTS entries each (all rows when the
  best divisor is under an eighth of that: a prime V is one block)."""
  target = max(1, CHUNK_ELEMENTS // max(chunk, features))
  if rows <= target:
    return rows
  best = max(c for b in range(1, math.isqrt(rows) + 1) if rows % b == 0
             for c in (b, rows // b) if c <= target)
  return best if best * 8 >= target else rows


def _tile(st: _Static, x: Any, w: jax.Array, b: jax.Array | None,
          wt: jax.Array | None, params: Any, vocab: Vocabulary,
          with_value: bool) -> tuple[Any, ...]:
  """One tile (a chunk of positions × a block of W's rows): the chunk's
  losses (``with_value``: then the block is the whole vocabulary), and the
  tile's contributions to ∂L/∂h, ∂L/∂W and ∂L/∂b, weighted by g."""
  h, t_h, d, m, g, saved = x
  dtype = _compute_dtype(h)
  acc = jnp.promote_types(dtype, w.dtype)
  s = _logits(h, w, b, dtype)
  t = None if wt is None else _logits(t_h, wt, None, dtype)
  value = None
  if with_value:
    value, saved = st.loss.value(s, t, d, params, vocab)
    value = jnp.where(m, value, 0)
  ds = st.loss.gradient(s, t, d, saved, params, vocab)
  ds = jnp.where(m[:, None], ds * g[:, None].astype(dtype), 0)
  low = ds.astype(w.dtype)
  dh = jnp.einsum("cv,vd->cd", low, w, preferred_element_type=dtype)
  # A masked row's features never reach ∂L/∂W (0 · NaN would).
  h = jnp.where(m[:, None], h, 0).astype(w.dtype)
  dw = jnp.einsum("cv,cd->vd", low, h, preferred_element_type=acc)
  db = None if b is None else jnp.sum(ds, axis=0).astype(acc)
  return value, dh, dw, db


def _add(total: Any, part: Any) -> Any:
  return jax.tree_util.tree_map(jnp.add, total, part)


def _zeros(w: jax.Array, b: jax.Array | None, dtype: Any) -> Any:
  # zeros_like keeps the weight's manual-axis type under shard_map.
  return (jnp.zeros_like(w, dtype),
          None if b is None else jnp.zeros_like(b, dtype))


def _finish(st: _Static, hidden: jax.Array, weight: jax.Array,
            bias: jax.Array | None, dh: jax.Array, dw: jax.Array,
            db: jax.Array | None) -> tuple[Any, ...]:
  dh = dh.reshape((-1, hidden.shape[1]))[:hidden.shape[0]]
  if st.vocab.axis_name is not None:
    dh = jax.lax.psum(dh, st.vocab.axis_name)
  return (dh.astype(hidden.dtype), dw.reshape(weight.shape).astype(
      weight.dtype), None if db is None or bias is None
          else db.reshape(bias.shape).astype(bias.dtype))


def _tiles(st: _Static, hidden: jax.Array, teacher: Any, data: Any,
           mask: jax.Array, g: jax.Array, saved: jax.Array | None) -> Any:
  n = -(-hidden.shape[0] // st.chunk)
  th = None if teacher is None else teacher[0]
  return _chunked((hidden, th, data, mask, g), st.chunk, n) + (saved,)


def _blocked_backward(st: _Static, hidden: jax.Array, weight: jax.Array,
                      bias: jax.Array | None, teacher: Any, data: Any,
                      params: Any, mask: jax.Array, g: jax.Array,
                      saved: jax.Array) -> tuple[Any, ...]:
  """∂(Σᵢ gᵢ Lᵢ)/∂(hidden, weight, bias), tile by tile: an outer scan over
  blocks of W's rows, an inner one over chunks of positions. Each block's
  ∂L/∂W is complete when its inner scan ends and is written out as it is
  (no (V, D) float32 accumulator beside the gradient itself); ∂L/∂h is the
  outer carry, (N, D)."""
  rows = weight.shape[0]
  block = vocabulary_block(rows, st.chunk, weight.shape[1])
  xs = _tiles(st, hidden, teacher, data, mask, g, saved)
  acc = jnp.promote_types(_compute_dtype(hidden), weight.dtype)

  def slab(x: jax.Array | None, j: jax.Array) -> jax.Array | None:
    return None if x is None else jax.lax.dynamic_slice_in_dim(
        x, j * block, block, 0)

  def outer(dh: jax.Array, j: jax.Array) -> tuple[jax.Array, Any]:
    w = jax.lax.dynamic_slice_in_dim(weight, j * block, block, 0)
    b = slab(bias, j)
    wt = None if teacher is None else slab(teacher[1], j)
    vocab = dataclasses.replace(st.vocab, local=block, start=j * block,
                                shard=rows)

    def inner(carry: Any, x: Any) -> tuple[Any, jax.Array]:
      _, dh_c, dw, db = _tile(st, x, w, b, wt, params, vocab, False)
      return _add(carry, (dw, db)), dh_c

    (dw, db), dh_j = jax.lax.scan(inner, _zeros(w, b, acc), xs)
    return dh + dh_j, (dw.astype(weight.dtype), db)

  dh0 = jnp.zeros(xs[0].shape, _compute_dtype(hidden))
  if st.vocab.axis_name is not None:  # the carry sums per-shard parts
    dh0 = jax.lax.pcast(dh0, (st.vocab.axis_name,), to="varying")
  dh, (dw, db) = jax.lax.scan(outer, dh0, jnp.arange(rows // block))
  return _finish(st, hidden, weight, bias, dh, dw, db)


def _value_and_gradient(st: _Static, hidden: jax.Array, weight: jax.Array,
                        bias: jax.Array | None, teacher: Any, data: Any,
                        params: Any, mask: jax.Array, g: jax.Array
                        ) -> tuple[Any, ...]:
  """The (N,) losses and ∂(Σᵢ gᵢ Lᵢ)/∂(hidden, weight, bias) in one scan
  over the chunks (the reduced form): each chunk's value, then its
  gradient, from the same logits."""
  xs = _tiles(st, hidden, teacher, data, mask, g, None)
  acc = jnp.promote_types(_compute_dtype(hidden), weight.dtype)
  wt = None if teacher is None else teacher[1]

  def body(carry: Any, x: Any) -> tuple[Any, Any]:
    value, dh_c, dw, db = _tile(st, x, weight, bias, wt, params, st.vocab,
                                True)
    return _add(carry, (dw, db)), (dh_c, value)

  (dw, db), (dh, values) = jax.lax.scan(body, _zeros(weight, bias, acc), xs)
  return (values.reshape(-1)[:hidden.shape[0]],
          *_finish(st, hidden, weight, bias, dh, dw, db))


def _fused_bwd(st: _Static, res: Any, g: jax.Array) -> tuple[Any, ...]:
  hidden, weight, bias, teacher, data, params, mask, saved = res
  dh, dw, db = _blocked_backward(st, hidden, weight, bias, teacher, data,
                                 params, mask, g, saved)
  return dh, dw, db, None, None, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)


def fused_mean(loss: ChunkLoss, hidden: jax.Array, weight: jax.Array,
               bias: jax.Array | None, teacher: tuple[jax.Array, jax.Array]
               | None, data: Any, params: Any, mask: jax.Array, *,
               chunk: int, vocab: Vocabulary) -> jax.Array:
  """The mean of ``fused_loss`` over the positions ``mask`` keeps (0 when
  it keeps none), its gradient computed in the forward pass: one pass over
  the chunks, no recomputation (a scalar's cotangent only rescales it)."""
  teacher = jax.lax.stop_gradient(teacher)
  return _mean(_Static(loss, chunk, vocab), hidden, weight, bias, teacher,
               data, params, mask)


def reduced(reduction: str) -> Callable[..., jax.Array]:
  """``fused_loss`` for reduction "none", ``fused_mean`` for "mean"."""
  if reduction == "none":
    return fused_loss
  if reduction == "mean":
    return fused_mean
  raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}.")


def _weights(mask: jax.Array, dtype: Any) -> jax.Array:
  m = mask.astype(dtype)
  return m / jnp.maximum(jnp.sum(m), 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mean(st: _Static, hidden: jax.Array, weight: jax.Array,
          bias: jax.Array | None, teacher: Any, data: Any, params: Any,
          mask: jax.Array) -> jax.Array:
  values, _ = _forward_chunks(st, hidden, weight, bias, teacher, data,
                              params, mask)
  return values @ _weights(mask, values.dtype)


def _mean_fwd(st: _Static, hidden: jax.Array, weight: jax.Array,
              bias: jax.Array | None, teacher: Any, data: Any, params: Any,
              mask: jax.Array) -> tuple[jax.Array, Any]:
  g = _weights(mask, _compute_dtype(hidden))
  values, dh, dw, db = _value_and_gradient(st, hidden, weight, bias,
                                           teacher, data, params, mask, g)
  return values @ g, (dh, dw, db)


def _mean_bwd(st: _Static, res: Any, g: jax.Array) -> tuple[Any, ...]:
  dh, dw, db = res

  def scale(x: jax.Array | None) -> jax.Array | None:
    return None if x is None else (x * g).astype(x.dtype)

  return scale(dh), scale(dw), scale(db), None, None, None, None


_mean.defvjp(_mean_fwd, _mean_bwd)


# -- argument checks shared by the public losses --------------------------------

def as_head(hidden: jax.typing.ArrayLike, weight: jax.typing.ArrayLike,
            hidden_name: str, weight_name: str
            ) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
  """(N, D) hidden (leading axes flattened), (V, D) weight, batch shape."""
  h = v.as_array(hidden, hidden_name)
  w = v.as_array(weight, weight_name)
  for x, name in ((h, hidden_name), (w, weight_name)):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(f"{name} must have a floating dtype, got {x.dtype}.")
  if h.ndim < 1:
    raise ValueError(f"{hidden_name} must have shape (..., D), got a "
                     "scalar.")
  v.check_rank(w, 2, weight_name)
  if h.shape[-1] != w.shape[1]:
    raise ValueError(f"{hidden_name} has D = {h.shape[-1]} features but "
                     f"{weight_name} has shape {w.shape} (V, D): D must "
                     "match.")
  batch = h.shape[:-1]
  return h.reshape((-1, h.shape[-1])), w, batch


def vocabulary(local: int, axis_name: str | None) -> Vocabulary:
  """The vocabulary of a weight with ``local`` rows here (sharded over
  ``axis_name`` inside ``shard_map``, if given)."""
  if axis_name is None:
    return Vocabulary(local, local, None)
  if not isinstance(axis_name, str):
    raise TypeError(f"axis_name must be a mesh axis name (str) or None, "
                    f"got {axis_name!r}.")
  try:
    shards = jax.lax.axis_size(axis_name)
  except NameError:
    raise ValueError(f"axis_name {axis_name!r} is not a mesh axis bound "
                     "here: call the loss inside jax.shard_map over a mesh "
                     "with that axis.") from None
  return Vocabulary(local * int(shards), local, axis_name)


def position_mask(where: jax.typing.ArrayLike | None,
                  batch: tuple[int, ...]) -> jax.Array:
  """``where`` (batch shape, boolean) flattened to (N,); all True if None."""
  if where is None:
    return jnp.ones((math.prod(batch),), bool)
  m = v.as_array(where, "where")
  if m.dtype != jnp.bool_:
    raise TypeError(f"where must be a boolean mask, got {m.dtype}.")
  if m.shape != batch:
    try:
      m = jnp.broadcast_to(m, batch)
    except ValueError:
      raise ValueError(f"where must have the positions' shape {batch} (one "
                       f"entry per position), got {m.shape}.") from None
  return m.reshape(-1)


def check_concrete_indices(indices: jax.Array, size: int, name: str) -> None:
  """Indices in [0, size) and, per position, distinct (when concrete)."""
  if not v.is_concrete(indices) or not indices.size:
    return
  host = np.asarray(indices)
  lo, hi = int(host.min()), int(host.max())
  if lo < 0 or hi >= size:
    raise ValueError(f"{name} must lie in [0, {size}); found values in "
                     f"[{lo}, {hi}].")
  rows = np.sort(host.reshape(-1, host.shape[-1]), axis=-1)
  repeated = np.nonzero((rows[:, 1:] == rows[:, :-1]).any(-1))[0]
  if repeated.size:
    pos = np.unravel_index(int(repeated[0]), host.shape[:-1])
    raise ValueError(
        f"{name} must hold distinct classes at each position; "
        f"{repeated.size} position(s) repeat a class, the first at "
        f"{tuple(int(i) for i in pos)}: {host[pos].tolist()}.")





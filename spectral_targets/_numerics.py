"""Numerically safe building blocks shared by the losses.

Low-precision inputs (bf16, f16) are computed in float32; masked softmaxes
give exact zeros on masked entries and a fully masked row gives a zero loss
with finite gradients (the double-``where`` trick).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _validation as v


def as_compute(x, name: str) -> jax.Array:
  """``x`` as a floating array, raised to at least float32."""
  arr = jnp.asarray(x)
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(f"{name} must have a floating dtype, got {arr.dtype}.")
  return arr.astype(jnp.promote_types(arr.dtype, jnp.float32))


def class_mask(where, shape, axis, name: str = "where"):
  """``where`` broadcast to ``shape``, or None.

  As in Optax, a mask with one dimension fewer than ``shape`` is batch-shaped
  and gets the class ``axis`` back; with ``axis=None`` the mask must
  broadcast to ``shape`` as it is (e.g. a (C,) mask of prototypes).
  """
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise TypeError(f"{name} must be a boolean mask, got {where.dtype}.")
  if axis is not None and where.ndim == len(shape) - 1:
    where = jnp.expand_dims(where, axis)
  try:
    return jnp.broadcast_to(where, shape)
  except ValueError:
    raise ValueError(f"{name} of shape {where.shape} does not broadcast to "
                     f"{tuple(shape)}.") from None


def log_softmax(x, axis, where):
  """log softmax over ``axis``; 0 on masked entries (never -inf or NaN)."""
  if where is None:
    return jax.nn.log_softmax(x, axis=axis)
  x0 = jnp.where(where, x, 0)
  m = jnp.max(jnp.where(where, x0, -jnp.inf), axis=axis, keepdims=True)
  m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
  total = jnp.sum(jnp.where(where, jnp.exp(x0 - m), 0), axis=axis,
                  keepdims=True)
  safe = jnp.where(total > 0, total, 1)
  return jnp.where(where, x0 - m - jnp.log(safe), 0)


def kl_from_log_probs(log_p, log_q, axis, where):
  """KL(p || q) = Σ p (log p − log q) over ``axis`` (masked entries out).

  Clipped at 0: rounding can leave a -1e-20 where p = q, and a divergence is
  never negative (the gradient there is zero either way).
  """
  terms = jnp.exp(log_p) * (log_p - log_q)
  if where is not None:
    terms = jnp.where(where, terms, 0)
  return jnp.maximum(jnp.sum(terms, axis=axis), 0)


def check_temperature(temperature, name: str = "temperature") -> None:
  v.check_positive(temperature, name)

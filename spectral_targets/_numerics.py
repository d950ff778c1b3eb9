"""Numerically safe building blocks shared by the losses and kernels.

* Low-precision inputs (bf16, f16) are computed in float32.
* Norms and unit vectors rescale by the largest magnitude before squaring
  (as LAPACK's ``nrm2`` does), so scale-free quantities stay scale-free from
  subnormal to near-overflow inputs.
* One rule reads every ``where`` mask (``class_mask``).
* Masked softmaxes give exact zeros on masked entries, and a fully masked
  row gives a zero loss with finite gradients (the double-``where`` trick).
* One temperature-scaled KL (``tempered_kl``) serves every distillation
  loss: exact for confident logits, at any temperature, and with
  :math:`0 \\log 0 = 0` for teacher logits of :math:`-\\infty`.

NaN in an input propagates to the output; it is never masked into a finite
number.

One host-side (NumPy) helper is shared by the codebook's merged-code
detection and its tie-breaking: ``unique_rows``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _validation as v


def as_compute(x: object, name: str) -> jax.Array:
  """``x`` as a floating array, raised to at least float32."""
  arr = v.as_array(x, name)
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(f"{name} must have a floating dtype, got {arr.dtype}.")
  return arr.astype(v.compute_dtype(arr.dtype))


# -- scale-robust norms ---------------------------------------------------------

def _rescaled(x: jax.Array, axis: int | None
              ) -> tuple[jax.Array, jax.Array]:
  """x / m over ``axis`` (kept) and m, the largest finite magnitude (1
  for a slice with none).

  The maximum is a constant to autodiff: every use is invariant to it, so
  treating it as one gives the exact gradient. NaN and inf entries stay
  what they are and propagate.
  """
  finite = jnp.where(jnp.isfinite(x), jnp.abs(x), 0)
  m = jax.lax.stop_gradient(jnp.max(finite, axis=axis, keepdims=True))
  m = jnp.where(m > 0, m, 1)
  return x / m, m


def power_of_two_scale(x: jax.Array) -> jax.Array:
  """A power of two near the largest finite magnitude of ``x`` (1 when there
  is none): dividing by it is exact, so scale-free quantities computed from
  ``x / s`` are those of ``x`` bit for bit, and squares neither overflow nor
  underflow. A constant to autodiff, like ``rescale``'s maximum."""
  finite = jnp.where(jnp.isfinite(x), jnp.abs(x), 0)
  m = jnp.max(finite) if x.size else jnp.zeros((), x.dtype)
  _, e = jnp.frexp(jnp.where(m > 0, m, 1))
  return jax.lax.stop_gradient(jnp.ldexp(jnp.ones((), x.dtype), e - 1))


def rescale(x: jax.Array, axis: int | None = None) -> jax.Array:
  """x divided by its largest finite magnitude over ``axis`` (None: all):
  for quantities invariant to positive scaling, before anything is squared
  or summed."""
  return _rescaled(x, axis)[0]


def norm(x: jax.Array, axis: int | None = -1, keepdims: bool = False
         ) -> jax.Array:
  """Euclidean norm over ``axis`` (None: all) without overflow or underflow.

  .. math:: \\lVert x\\rVert = m \\lVert x/m\\rVert, \\qquad m = \\max|x|
  """
  y, m = _rescaled(x, axis)
  out = m * jnp.sqrt(jnp.sum(y * y, axis=axis, keepdims=True))
  return out if keepdims else jnp.squeeze(out, axis)


def unit(x: jax.Array, axis: int | None = -1) -> jax.Array:
  r"""x / ‖x‖ over ``axis`` (None: the whole array), without an epsilon.

  After division by the largest magnitude, a non-zero slice has
  :math:`1 \le \sum y^2 \le n`: nothing overflows or underflows, and no
  epsilon is needed, so any non-zero input normalises exactly, whatever its
  scale. A zero slice stays 0, with the gradient of the identity (finite).
  """
  y, _ = _rescaled(x, axis)
  sq = jnp.sum(y * y, axis=axis, keepdims=True)
  return y * jax.lax.rsqrt(jnp.where(sq > 0, sq, 1))


def unit_rows(x: jax.Array) -> jax.Array:
  """``unit(x, axis=-1)``: each row over the last axis."""
  return unit(x, -1)


# -- masks ---------------------------------------------------------------------

def class_mask(where: jax.typing.ArrayLike | None, shape: Sequence[int],
               axis: int, name: str = "where") -> jax.Array | None:
  """``where`` broadcast to ``shape`` (class axis at ``axis``), or None.

  One rule for every loss. A mask with as many dimensions as ``shape`` must
  broadcast to it as it is. A mask with fewer dimensions is read as

  * the batch shape (``shape`` without ``axis``), as in Optax, when it has
    exactly one dimension fewer and broadcasts to the batch shape: it
    selects whole examples;
  * a class mask, when its last dimension is C and the rest broadcasts to
    the batch shape's trailing dimensions: (C,) selects the same classes in
    every example.

  When both readings fit and differ (a (C,) mask for a (C, C) batch of
  logits), the mask is ambiguous and raises ``ValueError``: pass
  ``where[None, :]`` for a class mask or ``where[:, None]`` for a batch
  mask. All of this is static, so it works under ``jit``.
  """
  if where is None:
    return None
  where = v.as_array(where, name)
  if where.dtype != jnp.bool_:
    raise TypeError(f"{name} must be a boolean mask, got {where.dtype}.")
  shape = tuple(shape)
  if not -len(shape) <= axis < len(shape):
    raise ValueError(f"axis {axis} is out of range for shape {shape}.")
  axis = axis % len(shape)
  C = shape[axis]
  batch = shape[:axis] + shape[axis + 1:]
  if where.ndim == len(shape):
    if _broadcasts(where.shape, shape):
      return jnp.broadcast_to(where, shape)
  elif where.ndim < len(shape):
    as_batch = (where.ndim == len(batch) and _broadcasts(where.shape, batch))
    as_classes = (where.ndim >= 1 and where.shape[-1] == C
                  and _broadcasts(where.shape, batch + (C,)))
    if as_batch and as_classes and where.size > 1:
      raise ValueError(
          f"{name} of shape {where.shape} is ambiguous for shape {shape} "
          f"(class axis {axis}): it fits both the batch shape {batch} and "
          f"the {C} classes. Pass where[None, :] for a class mask or "
          "where[:, None] for a batch mask.")
    if as_batch:
      return jnp.broadcast_to(jnp.expand_dims(where, axis), shape)
    if as_classes:
      return jnp.moveaxis(jnp.broadcast_to(where, batch + (C,)), -1, axis)
  raise ValueError(
      f"{name} of shape {where.shape} does not broadcast to shape {shape} "
      f"(class axis {axis}): pass that shape (or one that broadcasts to "
      f"it), the batch shape {batch}, or a class mask ({C},).")


def _broadcasts(small: Sequence[int], big: Sequence[int]) -> bool:
  try:
    return np.broadcast_shapes(small, big) == tuple(big)
  except ValueError:
    return False


# -- log-space softmax and KL ----------------------------------------------------

def logsumexp(x: jax.Array, axis: int, where: jax.Array | None = None,
              keepdims: bool = False) -> jax.Array:
  """log Σ exp(x) over the entries ``where`` selects; -inf (with zero
  gradient) where it selects none or only -inf."""
  if where is None:
    where = jnp.ones(x.shape, bool)
  m = jnp.max(jnp.where(where, x, -jnp.inf), axis=axis, keepdims=True)
  m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
  safe = jnp.where(where, x, m)  # no exp overflow in excluded entries
  total = jnp.sum(jnp.where(where, jnp.exp(safe - m), 0), axis=axis,
                  keepdims=True)
  some = total != 0  # NaN counts: it propagates
  out = jnp.where(some, m + jnp.log(jnp.where(some, total, 1)), -jnp.inf)
  return out if keepdims else jnp.squeeze(out, axis)


def tempered(x: jax.Array, temperature: jax.typing.ArrayLike, axis: int,
             where: jax.Array | None = None) -> jax.Array:
  """Logits at temperature τ for a softmax: (x − max x)/τ over ``axis``
  (the maximum over ``where``; a constant to autodiff).

  The shift is taken in the logits' own scale, where it is exact, so the
  largest entry is exactly 0 however small τ is. Shifting x/τ instead
  fails at small τ: at τ = 1e-10 an ulp of x/τ is ~1e3, XLA may round
  x/τ and max(x)/τ differently (it folds a constant τ into a reciprocal),
  and a "zero" of 254 overflows the softmax's exp. Softmaxes are invariant
  to the shift.
  """
  inside = jnp.ones(x.shape, bool) if where is None else where
  m = jnp.max(jnp.where(inside, x, -jnp.inf), axis=axis, keepdims=True)
  m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0))
  return (x - m) / temperature


def log_softmax(x: jax.Array, axis: int, where: jax.Array | None
                ) -> jax.Array:
  """log softmax over ``axis``; 0 on masked entries.

  A row whose included entries are all -inf (or that holds NaN) gives NaN:
  its distribution is undefined.
  """
  if where is None:
    return jax.nn.log_softmax(x, axis=axis)
  x0 = jnp.where(where, x, 0)
  return jnp.where(where, x0 - logsumexp(x0, axis, where, keepdims=True), 0)


# G(e) = (exp(-e) - 1 + e) / e² = Σ_k (-e)^k / (k + 2)!, used for |e| <= 1/2,
# with as many terms as the dtype resolves: 0.5^K / (K + 2)! below its eps.
_SERIES_RADIUS = 0.5


def _excess_series(e: jax.Array) -> jax.Array:
  eps = float(jnp.finfo(e.dtype).eps)
  terms = next(k for k in range(1, 30)
               if _SERIES_RADIUS**k / math.factorial(k + 2) < eps / 4)
  out = jnp.full_like(e, (-1) ** (terms - 1) / math.factorial(terms + 1))
  for k in range(terms - 2, -1, -1):
    out = (-1) ** k / math.factorial(k + 2) + e * out
  return out


def tempered_kl(log_p: jax.Array, log_q: jax.Array, diff: jax.Array,
                temperature: jax.typing.ArrayLike, axis: int = -1,
                where: jax.Array | None = None, *,
                total: Callable[[jax.Array], jax.Array] | None = None
                ) -> tuple[jax.Array, jax.Array]:
  r"""τ²·KL(p ‖ q) over ``axis``, accurate at any τ, and the mean of
  ``diff`` under p.

  ``log_p`` and ``log_q`` are the teacher's and the student's
  log-probabilities at temperature τ (normalised over ``where``), and
  ``diff`` = t − s the logit difference *before* division by τ, up to a
  per-row constant that the loss does not see (``mean`` is in its frame):
  pass :math:`(t - t_k) - (s - s_k)` for a reference class k, so that a
  common offset of the logits costs no precision. Entries with
  :math:`p_c = 0` (masked, or a teacher logit of -inf) contribute
  :math:`0 \log 0 = 0`. With S the support of p, :math:`\mu = E_p[t - s]`
  and :math:`\epsilon_c = (t_c - s_c - \mu)/\tau`,

  .. math::
    \mathrm{KL}(p\|q) = \log\Big(1 + \sum_{c\in S} p_c\,g(\epsilon_c)\Big)
      + \log\Big(1 + \frac{q(\bar S)}{q(S)}\Big),
    \qquad g(\epsilon) = e^{-\epsilon} - 1 + \epsilon \ge 0.

  Every term is non-negative, so nothing cancels: τ²·p·g(ε) is evaluated as
  :math:`p (t - s - \mu)^2 G(\epsilon)`, :math:`G = g/\epsilon^2` by its
  Taylor series for :math:`|\epsilon| \le 1/2`, which keeps full relative
  precision as τ → ∞ (the limit is :math:`\tfrac12 \mathrm{Var}_p(t - s)`)
  where the textbook :math:`\sum p (\log p - \log q)` loses everything to
  cancellation (6% off at τ = 1e3 in float32). When that textbook value
  exceeds 1 there is no cancellation to fear and it is used instead, since
  :math:`e^{\mathrm{KL}} - 1` would overflow for confident, wrong students.

  ``total(x)`` sums ``x`` over ``axis`` (kept); the default is
  ``jnp.sum``. A vocabulary split across devices passes a sum followed by
  ``psum``: every reduction of the formula is such a sum, so the KL of the
  whole vocabulary is exact from the shards' pieces.

  Returns:
    ``(loss, mean)``: τ²·KL with ``axis`` reduced, and μ with ``axis`` kept.
  """
  if total is None:
    total = functools.partial(jnp.sum, axis=axis, keepdims=True)
  tau = temperature
  inside = jnp.ones(log_p.shape, bool) if where is None else where
  support = inside & (log_p != -jnp.inf)  # NaN stays in: it propagates
  outside = inside & ~support
  lp = jnp.where(support, log_p, 0)
  lq = jnp.where(support, log_q, 0)
  p = jnp.where(support, jnp.exp(lp), 0)

  textbook = total(jnp.where(support, p * (lp - lq), 0))
  far = jax.lax.stop_gradient(textbook) > 1

  d = jnp.where(support, diff, 0)
  mean = total(p * d)
  c = jnp.where(support & ~far, d - mean, 0)
  e = c / tau
  small = jnp.abs(e) <= _SERIES_RADIUS
  e_small = jnp.where(small, e, 0)
  e_large = jnp.where(small, 1, e)
  # p g(ε): by the series near 0, else directly (p e^{-ε} in log space);
  # and τ² p g(ε), whose series terms carry no τ. Nothing is divided by
  # τ²: at τ = 1e-20 it is subnormal, which XLA's CPU backend flushes to 0
  # (and it folds x / τ / τ into x / τ²), so 0 / 0 would give NaN.
  series = p * _excess_series(e_small)
  direct = jnp.exp(lp - e_large) - p + p * e_large
  # e^KL_S − 1, and τ²(e^KL_S − 1)
  x = total(jnp.where(small, series * e_small * e_small, direct))
  scaled = total(jnp.where(small, series * c * c, direct * tau * tau))
  # log1p(x)/x; near 0 by its series (the quotient's derivative would square
  # a subnormal x, which the CPU flushes to 0: inf − inf).
  tiny = x < 1e-3
  xs = jnp.where(tiny, 1, x)
  ratio = jnp.where(tiny, 1 - x * (1 / 2 - x * (1 / 3 - x / 4)),
                    jnp.log1p(xs) / xs)
  # -log q(S) = log(1 + q(S̄)/q(S)), the student's mass where the teacher
  # has none. Here KL <= 1, so q(S) >= 1/e: no division by 0.
  # (Computed only in rows that have such classes: times τ² = inf, even a
  # zero derivative would give a NaN gradient.)
  has_out = (total(outside.astype(p.dtype)) > 0) & ~far
  q = jnp.exp(jnp.where(inside & has_out, log_q, -jnp.inf))
  q_in = total(jnp.where(support, q, 0))
  q_out = total(jnp.where(outside, q, 0))
  leak = jnp.where(has_out, jnp.log1p(
      q_out / jnp.where(has_out & (q_in != 0), q_in, 1)), 0)
  near = scaled * ratio + leak * tau * tau
  # τ²·KL as (τ·KL)·τ, kept apart: XLA would fold a constant τ·τ, which
  # underflows to 0 at τ = 1e-20 while τ²·KL (KL ~ 1/τ) is ~τ.
  far_loss = jax.lax.optimization_barrier(jnp.where(far, textbook, 0) * tau)
  loss = jnp.where(far, far_loss * tau, near)
  return jnp.squeeze(loss, axis), mean


def temperature(value: object, name: str = "temperature") -> Any:
  """τ as every temperature-taking function uses it: the one check.

  Concrete (a Python or NumPy number, or a JAX array outside a trace): it
  must be a positive, finite real scalar, else ``TypeError``/``ValueError``
  naming ``name``; returned as a Python float (any int size) or as the
  array. Traced: a tracer cannot raise, so a τ that is not positive and
  finite becomes NaN, and so does everything computed from it (a negative
  τ would otherwise give finite, wrong values). To have a bad τ raise
  under ``jit``, keep it a Python number outside the trace (close over it,
  or mark it static: ``jax.jit(f, static_argnames="temperature")``).
  """
  v.check_positive(value, name)
  tau = v.scalar_option(value, name)
  if v.is_concrete(tau):
    return tau
  tau = jnp.asarray(tau)
  return jnp.where((tau > 0) & jnp.isfinite(tau), tau, jnp.nan)


# -- host-side rows ------------------------------------------------------------

def unique_rows(keys: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """np.unique(keys, axis=0)'s first indices, inverse and counts for
  integer-valued keys, each row compared as one block of bytes (several
  times faster than a lexicographic sort of wide rows). Keys of an integer
  dtype keep it (uint8 keys: a row is as many bytes as it has entries, and
  the rows come in np.unique's lexicographic order); others are cast to
  int64."""
  if not np.issubdtype(keys.dtype, np.integer):
    keys = keys.astype(np.int64)
  keys = np.ascontiguousarray(keys)
  rows = keys.view(np.dtype((np.void, keys.itemsize * keys.shape[1]))
                   ).reshape(-1)
  _, first, inverse, counts = np.unique(rows, return_index=True,
                                        return_inverse=True,
                                        return_counts=True)
  return first, inverse.reshape(-1), counts

"""Argument checks shared by every public function.

Static properties (rank, shape, dtype) are checked always, so the errors also
fire at trace time under ``jit``. Value properties (finiteness, symmetry,
label range) can only be seen on concrete arrays: they are checked eagerly and
skipped, as documented by each caller, when the argument is a tracer. A
concrete array with shards on other processes (multi-process JAX) is checked
by a jitted reduction that every process runs, so all of them raise alike.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _sharding
from spectral_targets._jit import jit


def is_concrete(x: object) -> bool:
  """True when ``x`` holds values now (not a tracer under jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def float_dtype(x: jax.typing.ArrayLike, name: str) -> np.dtype[Any]:
  """The floating dtype ``x`` is computed in; ints and bools promote to float."""
  dtype = jnp.result_type(x)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    raise TypeError(f"{name} must be real, got complex dtype {dtype}.")
  if jnp.issubdtype(dtype, jnp.floating):
    return dtype
  if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
    return jnp.result_type(float)
  raise TypeError(f"{name} must be a numeric array, got dtype {dtype}.")


def compute_dtype(dtype: jax.typing.DTypeLike) -> np.dtype[Any]:
  """The dtype to compute in: bf16 and f16 raised to float32 (eigensolvers
  and long sums need it), wider floats kept."""
  return jnp.promote_types(dtype, jnp.float32)


def as_array(x: object, name: str) -> jax.Array:
  """``x`` as a JAX array; None, ragged nesting or non-numeric values raise
  an error naming ``name`` rather than JAX's or NumPy's own."""
  if x is None:
    raise TypeError(f"{name} must be an array, got None.")
  if isinstance(x, (str, bytes)):
    raise TypeError(f"{name} must be a numeric array, got a string {x!r}.")
  try:
    return jnp.asarray(x)
  except TypeError as e:
    raise TypeError(f"{name} must be a numeric array: {e}") from None
  except ValueError as e:
    raise ValueError(f"{name} must be a rectangular numeric array (equal "
                     f"lengths at every level): {e}") from None


def as_float_array(x: object, name: str) -> jax.Array:
  """``x`` as a JAX array of a real floating dtype (ints/bools promoted)."""
  arr = as_array(x, name)
  return arr.astype(float_dtype(arr, name))


def check_rank(x: jax.typing.ArrayLike, rank: int, name: str) -> None:
  if jnp.ndim(x) != rank:
    raise ValueError(
        f"{name} must have rank {rank}, got shape {jnp.shape(x)}."
    )


def check_positive(value: object, name: str) -> None:
  """Raises unless a concrete scalar ``value`` is > 0 (tracers pass)."""
  if not is_concrete(value):
    return
  v = np.asarray(value)
  if v.shape != ():
    raise ValueError(f"{name} must be a scalar, got shape {v.shape}.")
  if not np.isfinite(v) or not v > 0:
    raise ValueError(f"{name} must be a positive finite number, got {value}.")


def check_nonnegative(value: object, name: str) -> None:
  """Raises unless a concrete scalar ``value`` is >= 0 and finite (tracers
  pass)."""
  if not is_concrete(value):
    return
  v = np.asarray(value)
  if v.shape != ():
    raise ValueError(f"{name} must be a scalar, got shape {v.shape}.")
  if not np.isfinite(v) or not v >= 0:
    raise ValueError(f"{name} must be a non-negative finite number, got "
                     f"{value}.")


def check_int(value: object, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
  """``value`` as a Python int within [minimum, maximum], else a clear error."""
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
        f"{name} must be a static Python int, got a traced value "
        f"({value.aval}); under jax.jit mark it static, e.g. "
        f"jax.jit(f, static_argnames='{name}').")
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{name} must be an int, got {value!r}.")
  value = int(value)
  if minimum is not None and value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  if maximum is not None and value > maximum:
    raise ValueError(f"{name} must be <= {maximum}, got {value}.")
  return value


def check_finite(x: jax.typing.ArrayLike, name: str) -> None:
  if not is_concrete(x) or not jnp.size(x):
    return
  if _sharding.spans_processes(x):
    found, index, value = _first_nonfinite(x)
    if bool(found):
      where = tuple(int(i) for i in np.unravel_index(int(index), x.shape))
      raise ValueError(f"{name} must be finite; found {float(value)} at "
                       f"index {where}.")
    return
  a = np.asarray(x)
  if not np.isfinite(a).all():
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    raise ValueError(f"{name} must be finite; found {a[bad]} at index {bad}.")


@jit
def _first_nonfinite(x: jax.Array
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(any non-finite?, flat index of the first, its value), replicated."""

  def first(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    flat = x.reshape(-1)
    bad = ~jnp.isfinite(flat)
    i = jnp.argmax(bad)
    return bad[i], i, flat[i]

  return _sharding.replicated_outputs(first, 3)(x)


def check_labels(labels: jax.typing.ArrayLike, num_classes: int,
                 name: str = "labels") -> jax.Array:
  """Integer labels; values in [0, num_classes) when concrete."""
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name} must have an integer dtype, got {labels.dtype}.")
  if is_concrete(labels) and labels.size:
    if _sharding.spans_processes(labels):
      lo, hi = map(int, _value_range(labels))
    else:
      host = np.asarray(labels)
      lo, hi = int(host.min()), int(host.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"{name} must lie in [0, {num_classes}); found values in "
          f"[{lo}, {hi}]."
      )
  return labels


@jit
def _value_range(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(min, max) of an array, replicated."""
  return _sharding.replicated_outputs(lambda x: (x.min(), x.max()), 2)(x)


def as_kernel(kernel: object, name: str = "kernel", *, rtol: float = 1e-5
              ) -> jax.Array:
  """Validates a label kernel: square, real, finite and symmetric.

  Integer and boolean kernels are promoted to float, bf16 and f16 ones to
  float32 (what the eigensolvers need); complex or non-numeric ones raise
  ``TypeError``. Symmetry is required to within
  ``rtol * max|S|`` (plus a few ulps of the dtype), and the error names the
  largest asymmetry. Finiteness and symmetry are only checked when the kernel
  is concrete.
  """
  given = as_float_array(kernel, name)
  S = given.astype(compute_dtype(given.dtype))
  if S.ndim != 2 or S.shape[0] != S.shape[1]:
    raise ValueError(f"{name} must be a square matrix, got shape {S.shape}.")
  if S.shape[0] == 0:
    raise ValueError(f"{name} must have at least one class, got shape "
                     f"{S.shape}.")
  if is_concrete(S):
    a = np.asarray(S)  # on the host: no compile per shape
    largest = float(np.abs(a).max())  # NaN or inf if any entry is
    if not np.isfinite(largest):
      check_finite(a, name)
    scale = max(largest, np.finfo(np.float64).tiny)
    tol = (rtol + 8 * float(jnp.finfo(given.dtype).eps)) * scale
    worst, (i, j) = _max_asymmetry(a)
    if worst > tol:
      raise ValueError(
          f"{name} must be symmetric; largest asymmetry "
          f"|S[{i}, {j}] - S[{j}, {i}]| = {worst:.3g} exceeds the "
          f"tolerance {tol:.3g}."
      )
  return S


def _max_asymmetry(a: np.ndarray, block: int = 256
                   ) -> tuple[float, tuple[int, int]]:
  """max |a - aᵀ| and where, comparing square tiles a[I, J] with
  a[J, I]ᵀ: no C × C temporary, and each transposed tile fits in cache (a
  whole-matrix a - a.T took longer than an iterative solve at C = 16,384)."""
  worst, where = 0.0, (0, 0)
  n = a.shape[0]
  for i in range(0, n, block):
    for j in range(i, n, block):
      diff = np.abs(a[i:i + block, j:j + block] - a[j:j + block, i:i + block].T)
      r, c = divmod(int(np.argmax(diff)), diff.shape[1])
      if diff[r, c] > worst:
        worst, where = float(diff[r, c]), (i + r, j + c)
  return worst, where

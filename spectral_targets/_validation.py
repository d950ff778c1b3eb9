"""Argument checks shared by every public function.

Static properties (rank, shape, dtype) are checked always, so the errors also
fire at trace time under ``jit``. Value properties (finiteness, symmetry,
label range) can only be seen on concrete arrays: they are checked eagerly and
skipped, as documented by each caller, when the argument is a tracer. A
concrete array with shards on other processes (multi-process JAX) is checked
by a jitted reduction that every process runs, so all of them raise alike.

One vocabulary, one rule per kind of argument:

* **Shapes, ranks, dtypes**: chex's static assertions (``assert_shape``,
  ``assert_rank``, ``assert_type``, ``assert_equal_shape``) do the checking,
  here wrapped so the error is a ``ValueError``/``TypeError`` naming the
  argument (``check_shape``, ``check_rank``, ``check_equal_shape``).
* **Labels** (``check_labels``): an integer array of exactly the batch shape
  (the scores' shape without the class axis: never broadcast), with values
  in [0, C) checked in the labels' own width, before any cast (JAX without
  x64 would read a NumPy int64 2³² + 1 as 1).
* **Real scalar options** (``real_scalar``, ``check_positive``,
  ``check_nonnegative``): None, strings, bools, complex numbers and arrays
  raise ``TypeError``/``ValueError`` naming the option; a traced value passes
  (a tracer cannot raise) and is the caller's to document.
* **Integer options** (``check_int``): a Python int within the option's
  bounds, by default those of int32, since every one of them reaches array
  code (sizes, iteration counts, seeds); ``check_extent`` keeps an
  allocation's byte count within what XLA can index.
* **Distributions** (``check_distributions``): rows of probabilities, one
  tolerance.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import chex
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


def floating_dtype(dtype: Any, name: str = "dtype") -> np.dtype[Any]:
  """``dtype`` (a dtype-like option) as a floating NumPy dtype, else a
  ``TypeError`` naming ``name``."""
  try:
    dt: np.dtype[Any] = jnp.dtype(dtype)
  except TypeError:
    raise TypeError(f"{name} must be a floating dtype, got {dtype!r}."
                    ) from None
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{name} must be a floating dtype, got {dt}.")
  return dt


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


# -- shapes, ranks, dtypes: chex's static assertions, messages naming the
# argument ----------------------------------------------------------------

def _shape_text(shape: Sequence[int | None]) -> str:
  dims = ["N" if d is None else str(d) for d in shape]
  return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def check_shape(x: Any, shape: Sequence[int | None], name: str,
                context: str = "", *, what: str = "shape") -> None:
  """``ValueError`` unless ``x`` has ``shape`` (None: any size there);
  ``context`` follows the expected shape in the message (e.g. " to match
  probs (5, 3)"), ``what`` names it ("shape", "the batch shape")."""
  try:
    chex.assert_shape(x, tuple(shape))
  except AssertionError:
    raise ValueError(f"{name} must have {what} {_shape_text(shape)}{context}"
                     f", got {jnp.shape(x)}.") from None


def check_rank(x: Any, rank: int, name: str) -> None:
  """``ValueError`` unless ``x`` has rank ``rank``."""
  try:
    chex.assert_rank(x, rank)
  except AssertionError:
    raise ValueError(
        f"{name} must have rank {rank}, got shape {jnp.shape(x)}.") from None


def check_equal_shape(arrays: dict[str, Any]) -> None:
  """``ValueError`` unless the named arrays all have the same shape."""
  try:
    chex.assert_equal_shape(list(arrays.values()))
  except AssertionError:
    names = " and ".join(arrays)
    shapes = " and ".join(str(jnp.shape(a)) for a in arrays.values())
    raise ValueError(f"{names} must have the same shape, got {shapes}."
                     ) from None


def check_integer_dtype(x: object, name: str) -> None:
  """``TypeError`` unless ``x`` has an integer dtype (not bool)."""
  try:
    chex.assert_type(x, int)
  except AssertionError:
    got = str(np.dtype(x.dtype)) if hasattr(x, "dtype") else repr(x)
    raise TypeError(f"{name} must have an integer dtype, got {got}."
                    ) from None


# -- scalar options ----------------------------------------------------------

def real_scalar(value: object, name: str) -> float | None:
  """The value of a concrete real scalar option, or None for a traced one.

  None, strings, bools, complex numbers, non-scalar arrays and objects that
  are not numbers raise a ``TypeError``/``ValueError`` naming ``name``.
  Python ints of any size are read exactly as floats.
  """
  if not is_concrete(value):
    return None
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a real number, got {value!r}.")
  if isinstance(value, numbers.Integral):
    try:
      return float(value)
    except OverflowError:
      raise ValueError(f"{name} is too large to be a float: {value}."
                       ) from None
  if value is None or isinstance(value, (str, bytes)):
    raise TypeError(f"{name} must be a real number, got {value!r}.")
  try:
    a = np.asarray(value)
  except (TypeError, ValueError):
    raise TypeError(f"{name} must be a real number, got {value!r}.") from None
  if not (np.issubdtype(a.dtype, np.integer)
          or np.issubdtype(a.dtype, np.floating)):
    kind = "complex" if np.issubdtype(a.dtype, np.complexfloating) else str(
        a.dtype)
    raise TypeError(f"{name} must be a real number, got {value!r} "
                    f"({kind}).")
  if a.shape != ():
    raise ValueError(f"{name} must be a scalar, got shape {a.shape}.")
  return float(a)


def scalar_option(value: object, name: str) -> Any:
  """``value`` as the rest of a function should use it: a Python float for
  a Python or NumPy number (any int size), the array itself for a JAX array
  (its dtype kept, traced or not). Checked by ``real_scalar``."""
  number = real_scalar(value, name)
  if number is None or isinstance(value, jax.Array):
    return value
  return number


def check_positive(value: object, name: str) -> None:
  """Raises unless a concrete scalar ``value`` is > 0 (tracers pass)."""
  number = real_scalar(value, name)
  if number is not None and not (math.isfinite(number) and number > 0):
    raise ValueError(f"{name} must be a positive finite number, got {value}.")


def check_nonnegative(value: object, name: str) -> None:
  """Raises unless a concrete scalar ``value`` is >= 0 and finite (tracers
  pass)."""
  number = real_scalar(value, name)
  if number is not None and not (math.isfinite(number) and number >= 0):
    raise ValueError(f"{name} must be a non-negative finite number, got "
                     f"{value}.")


def check_bool(value: object, name: str, *, traced: bool = False) -> Any:
  """A Python/NumPy bool, or (with ``traced``) a boolean 0-d JAX array,
  traced or not; anything else is a ``TypeError`` naming ``name``."""
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if traced and isinstance(value, jax.Array) and value.shape == () and (
      value.dtype == jnp.bool_):
    return value
  kind = "a bool or a boolean scalar array" if traced else "a bool"
  raise TypeError(f"{name} must be {kind}, got {value!r}.")


def check_axis_name(axis_name: object, name: str = "axis_name") -> None:
  """A mesh axis name (str) or a non-empty tuple of them, as
  ``jax.lax.psum`` takes inside ``shard_map``/``pmap``. (An int would be
  read by ``psum`` as an array axis.)"""
  names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
  if not names or not all(isinstance(n, str) for n in names):
    raise TypeError(f"{name} must be a mesh axis name or a tuple of "
                    f"them, got {axis_name!r}.")


INT32_MIN, INT32_MAX = -2**31, 2**31 - 1


def check_int(value: object, name: str, *, minimum: int | None = INT32_MIN,
              maximum: int | None = INT32_MAX) -> int:
  """``value`` as a Python int within [minimum, maximum], else a clear error.

  The bounds default to int32's: an integer option reaches array code (a
  size, an iteration count compared with an int32 counter, a PRNG seed), so
  a larger one would fail there, naming an internal argument.
  """
  if isinstance(value, jax.core.Tracer):
    raise TypeError(
        f"{name} must be a static Python int, got a traced value "
        f"({value.aval}); under jax.jit mark it static, e.g. "
        f"jax.jit(f, static_argnames='{name}').")
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, numbers.Integral):
    raise TypeError(f"{name} must be an int, got {value!r}.")
  value = int(value)
  if minimum is not None and value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}.")
  if maximum is not None and value > maximum:
    raise ValueError(f"{name} must be <= {maximum}, got {value}.")
  return value


def check_seed(value: object, name: str = "seed") -> int:
  """A PRNG seed: an int in [0, 2³² − 1], the range that both NumPy's
  generators and JAX's 32-bit keys read exactly (``jax.random.key`` with
  x64 off silently maps 2³² to the key of 0)."""
  return check_int(value, name, minimum=0, maximum=2**32 - 1)


def check_extent(shape: Sequence[int], dtype: jax.typing.DTypeLike,
                 name: str) -> None:
  """``ValueError`` naming ``name`` when an array of ``shape`` would hold
  2⁶³ bytes or more: XLA aborts the process on such a shape instead of
  raising."""
  size = math.prod(shape) * jnp.dtype(dtype).itemsize
  if size >= 2**63:
    raise ValueError(f"{name} is too large: an array of shape {tuple(shape)} "
                     f"and dtype {jnp.dtype(dtype)} would need {size:.3g} "
                     "bytes, beyond what XLA can index.")


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


def check_labels(labels: object, num_classes: int, *,
                 shape: Sequence[int | None] | None = None,
                 name: str = "labels", context: str = "",
                 what: str = "shape") -> jax.Array:
  """The one label check: integer labels of exactly ``shape``, in
  [0, num_classes).

  The rule, for every function that takes labels: a label array holds one
  integer class per example, so its shape is the batch shape, exactly; it
  is never broadcast against the scores (labels of shape (N, 1) against
  (N, C) scores would give an (N, N) loss). ``shape`` is that batch shape
  (None: any, for a function whose labels define it, such as
  ``kernel_soft_labels``; there a trailing axis of size 1, a column of
  labels, is rejected for the same reason). The dtype must be an integer
  one (bool is not). When concrete, the range is checked in the labels' own
  width, on the NumPy or JAX array as given, before anything is cast: with
  JAX's default 32-bit mode a NumPy int64 label 2³² + 1 would otherwise
  silently become class 1. Tracers get the static checks only.

  Returns:
    The labels as a JAX array (exact: every value fits int32).
  """
  if labels is None or isinstance(labels, (str, bytes)):
    raise TypeError(f"{name} must be an array of integers, got {labels!r}.")
  arr: Any = labels
  if not isinstance(labels, jax.Array):
    try:
      arr = np.asarray(labels)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{name} must be a rectangular integer array: {e}"
                       ) from None
    if arr.dtype == object and arr.size and all(
        isinstance(x, numbers.Integral) and not isinstance(x, bool)
        for x in arr.flat):
      lo, hi = min(arr.flat), max(arr.flat)
      raise ValueError(f"{name} must lie in [0, {num_classes}); found values "
                       f"in [{lo}, {hi}].")
  if arr.dtype == object:
    raise TypeError(f"{name} must be an array of integers, got {labels!r}.")
  check_integer_dtype(arr, name)
  if shape is not None:
    check_shape(arr, shape, name, context, what=what)
  elif arr.ndim >= 2 and arr.shape[-1] == 1:
    raise ValueError(
        f"{name} must hold one integer class per example, got shape "
        f"{arr.shape}: a trailing axis of size 1 (a column of labels) would "
        f"broadcast against the logits; pass {name}[..., 0] (or "
        f"{name}.reshape(-1)).")
  if is_concrete(arr) and arr.size:
    if _sharding.spans_processes(arr):
      lo, hi = map(int, _value_range(arr))
    else:
      host = np.asarray(arr)
      lo, hi = int(host.min()), int(host.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"{name} must lie in [0, {num_classes}); found values in "
          f"[{lo}, {hi}]."
      )
  return jnp.asarray(arr)


def check_distributions(p: Any, name: str,
                        dtype: jax.typing.DTypeLike | None = None) -> None:
  """Rows (last axis) of probabilities, when concrete: finite entries in
  [0, 1], each row summing to 1 within ``DISTRIBUTION_ATOL`` plus 4 ulps
  of ``dtype`` (the input's; a softmax computed in bf16 and cast up is
  still a distribution). Logits fail this by far."""
  if not is_concrete(p) or not np.size(p):
    return
  host = np.asarray(p, np.float64)
  host = host.reshape(-1, host.shape[-1]) if host.ndim else host.reshape(1, 1)
  bad = np.argwhere(~((host >= 0) & (host <= 1)))  # NaN is bad too
  if bad.size:
    i, j = (int(k) for k in bad[0])
    raise ValueError(
        f"{name} must hold probabilities in [0, 1] (logits? pass "
        f"jax.nn.softmax(logits), not the logits); found {host[i, j]} in "
        f"row {i}, column {j}.")
  eps = float(jnp.finfo(jnp.result_type(p) if dtype is None else dtype).eps)
  tol = DISTRIBUTION_ATOL + 4 * eps
  sums = host.sum(axis=-1)
  off = np.flatnonzero(np.abs(sums - 1) > tol)
  if off.size:
    i = int(off[0])
    raise ValueError(
        f"{name} rows must sum to 1 (logits? pass jax.nn.softmax(logits)); "
        f"row {i} sums to {sums[i]:.6g}.")


#: How far a row of probabilities may sum from 1 (plus the input dtype's
#: rounding): loose enough for a softmax computed in bf16 and then cast to
#: float32 (its rows sum to 1 within ~0.4%), tight enough that rows of
#: logits fail by far.
DISTRIBUTION_ATOL = 1e-2


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

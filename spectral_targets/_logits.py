"""Logits of a fixed codebook head: scaled cosines to each class code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _sharding
from spectral_targets import _validation as v
from spectral_targets._jit import jit
from spectral_targets._numerics import unit_rows


def check_codebook(features: jax.Array, codebook: jax.Array,
                   name: str = "codebook") -> None:
  """Static checks of a (…, d) feature array against a (C, d) codebook,
  C, d >= 1."""
  if jnp.ndim(codebook) != 2 or 0 in jnp.shape(codebook):
    raise ValueError(f"{name} must have shape (C, d) with C, d >= 1, got "
                     f"{jnp.shape(codebook)}.")
  if jnp.ndim(features) < 1 or jnp.shape(features)[-1] != jnp.shape(
      codebook)[1]:
    raise ValueError(
        f"features must have shape (..., {jnp.shape(codebook)[1]}) to match "
        f"{name} {jnp.shape(codebook)}, got {jnp.shape(features)}.")


def head_codebook(codebook: object) -> jax.Array:
  """The codebook of a head (NNX or Linen), checked: real, (C, d) with
  C, d >= 1, finite, and (when concrete) no zero row, whose class's logit
  would be 0 whatever the features (a head that cannot score that class).
  """
  W = v.as_float_array(codebook, "codebook")
  v.check_rank(W, 2, "codebook")
  check_codebook(jnp.zeros(W.shape[1:], W.dtype), W)
  v.check_finite(W, "codebook")
  if v.is_concrete(W):
    if _sharding.spans_processes(W):  # every process reduces, all raise
      count, first = map(int, _zero_rows(W))
      zero = np.array([first] if count else [], int)
    else:
      zero = np.flatnonzero(~np.asarray(W).any(axis=1))
    if zero.size:
      raise ValueError(
          f"codebook has a zero row for class(es) {zero.tolist()[:10]}"
          f"{' ...' if zero.size > 10 else ''}: a head cannot score a class "
          "whose code is 0 (its logit is 0 for every feature).")
  return W


@jit
def _zero_rows(W: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(number of zero rows, index of the first), replicated."""

  def count(W: jax.Array) -> tuple[jax.Array, jax.Array]:
    zero = ~jnp.any(W != 0, axis=1)
    return zero.sum(), jnp.argmax(zero)

  return _sharding.replicated_outputs(count, 2)(W)


def codebook_logits(features: jax.typing.ArrayLike,
                    codebook: jax.typing.ArrayLike, *,
                    scale: jax.typing.ArrayLike) -> jax.Array:
  r"""Scaled cosine between each feature and each class code.

  .. math::
    \ell_{\dots c} = s\,\frac{z^\top w_c}{\lVert z\rVert\,\lVert w_c\rVert}

  A fixed codebook head (Hoffer et al., 2018; Barz & Denzler, 2019): feed
  the result to ``optax.softmax_cross_entropy_with_integer_labels``
  unchanged. The scale s sets the softmax's sharpness (cosines lie in
  [-1, 1]). Low-precision inputs are computed and returned in float32.

  The formula has no epsilon, and neither has its evaluation: each row is
  divided by its largest magnitude before its norm is taken (as LAPACK's
  ``nrm2`` does), so every non-zero feature or code, of norm 1e-30 or 1e30,
  gives exactly its cosine. A zero feature gives zero logits, and finite
  gradients (those of the identity at 0, where the cosine has none).

  Args:
    features: (..., d) features.
    codebook: (C, d) class codes, C, d >= 1 (need not be unit-norm; a zero
      code gives that class logits of 0).
    scale: s > 0, a scalar (may be a learned parameter).

  Returns:
    (..., C) logits.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> codes = st.spectral_codebook(st.flat(3), 2)
    >>> st.codebook_logits(2.0 * codes, codes, scale=10.0).argmax(-1)
    Array([0, 1, 2], dtype=int32)

  References:
    Hoffer, Hubara & Soudry, "Fix your classifier: the marginal value of
    training the last weight layer", ICLR 2018.
  """
  z = num.as_compute(features, "features")
  W = num.as_compute(codebook, "codebook")
  check_codebook(z, W)
  return cosine_logits(z, W, scale)


def cosine_logits(z: jax.Array, W: jax.Array, scale: jax.typing.ArrayLike
                  ) -> jax.Array:
  """s·cos(z, w_c) for checked float arrays: the head's logits."""
  v.check_positive(scale, "scale")
  scale = v.scalar_option(scale, "scale")
  return (unit_rows(z) @ unit_rows(W).T) * scale

"""What a distribution over classes says: its dark knowledge (the mass off
the label) and its entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v


def dark_knowledge_mass(probs: jax.typing.ArrayLike,
                        labels: jax.typing.ArrayLike, *,
                        axis: int = -1) -> jax.Array:
  r"""The probability a distribution puts off its label's class.

  .. math::
    m = 1 - p_y

  Args:
    probs: (..., C) distributions (class axis at ``axis``).
    labels: (...) integer labels in [0, C).
    axis: the class axis.

  Returns:
    (...) masses in [0, 1].

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.dark_knowledge_mass(jnp.array([[0.7, 0.2, 0.1]]), jnp.array([0]))
    Array([0.3], dtype=float32)
  """
  p = jnp.moveaxis(num.as_compute(probs, "probs"), axis, -1)
  y = v.check_labels(labels, p.shape[-1], shape=p.shape[:-1],
                     context=" to match probs")
  return 1 - jnp.take_along_axis(p, y[..., None], axis=-1)[..., 0]


def entropy(probs: jax.typing.ArrayLike, *, axis: int = -1,
            where: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""Shannon entropy in nats, with 0 log 0 = 0.

  .. math::
    H(p) = -\sum_c p_c \log p_c

  A NaN entry gives NaN: it is never taken for a zero.

  Args:
    probs: (..., C) distributions.
    axis: the class axis.
    where: boolean mask of the classes to include, read as in
      ``distillation_loss`` (the shape of ``probs``, its batch shape, or
      (C,)).

  Returns:
    (...) entropies in [0, log C].

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.entropy(jnp.array([0.5, 0.5, 0.0])).round(4)
    Array(0.6931, dtype=float32)
  """
  p = num.as_compute(probs, "probs")
  mask = num.class_mask(where, p.shape, axis)
  # Only exact zeros are 0 log 0 = 0; NaN (and a negative p) propagate.
  counted = p != 0 if mask is None else (p != 0) & mask
  safe = jnp.where(counted, p, 1)
  return -jnp.sum(jnp.where(counted, p * jnp.log(safe), 0), axis=axis)

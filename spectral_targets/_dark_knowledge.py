"""Soft assignment over a codebook and what it says: dark knowledge, entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._logits import check_codebook, cosine_logits


def assignment_logits(features: jax.typing.ArrayLike,
                      prototypes: jax.typing.ArrayLike,
                      scale: jax.typing.ArrayLike | None) -> jax.Array:
  """The assignment logits before the temperature, in at least float32:
  z·Pᵀ, or s·cos(z, p_c) with a ``scale`` (the codebook head's logits)."""
  z = num.as_compute(features, "features")
  P = num.as_compute(prototypes, "prototypes")
  check_codebook(z, P, "prototypes")
  if scale is None:
    return z @ P.T
  return cosine_logits(z, P, scale)


def soft_assignment(features: jax.typing.ArrayLike,
                    prototypes: jax.typing.ArrayLike, *,
                    temperature: jax.typing.ArrayLike = 1.0,
                    scale: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""Temperature-controlled assignment of features to prototypes.

  .. math::
    a = \operatorname{softmax}(z P^\top / \tau), \qquad\text{or, with a
    scale } s,\qquad
    a_c \propto \exp\big(s \cos(z, p_c) / \tau\big)

  As τ → 0, a tends to the one-hot of the best-matching prototype; as
  τ → ∞, to uniform. The off-target mass 1 − a_y is the dark knowledge
  (``dark_knowledge_mass``).

  **What τ means.** Without ``scale`` (the default, the formula of the
  design) the logits are raw inner products, so τ is measured in the units
  of :math:`z^\top p`, and rescaling the features changes the assignment.
  With ``scale=s`` the logits are the codebook head's,
  ``codebook_logits(z, P, scale=s)``, so the assignment is
  ``softmax(head_logits / τ)``: the same τ as ``distillation_loss`` on
  that head, and invariant to the features' norm.

  Args:
    features: (..., d) features.
    prototypes: (C, d) prototypes (e.g. a codebook).
    temperature: τ > 0.
    scale: None, or s > 0 for cosine logits s·cos(z, p_c) as the head's.

  Returns:
    (..., C) distributions.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> st.soft_assignment(jnp.array([1., 0.]), jnp.eye(2),
    ...                    temperature=0.5).round(2)
    Array([0.88, 0.12], dtype=float32)
    >>> st.soft_assignment(jnp.array([3., 0.]), jnp.eye(2), scale=1.0,
    ...                    temperature=0.5).round(2)  # the norm is ignored
    Array([0.88, 0.12], dtype=float32)
  """
  num.check_temperature(temperature)
  logits = assignment_logits(features, prototypes, scale)
  return jax.nn.softmax(logits / temperature, axis=-1)


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

"""Soft assignment of features to prototypes (a codebook), at a
temperature: the distributions ``soft_assignment_distillation_loss``
matches."""

from __future__ import annotations

import jax

from spectral_targets import _numerics as num
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
    temperature: τ > 0. A bad number raises ``ValueError``; a traced τ
      cannot raise, and one that is not positive and finite gives NaN: to
      have it checked under ``jit``, pass a Python number (closed over, or
      ``jax.jit(f, static_argnames="temperature")``).
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
  tau = num.temperature(temperature)
  logits = assignment_logits(features, prototypes, scale)
  # Shifted by the maximum before dividing by τ: exact down to τ = 1e-30.
  return jax.nn.softmax(num.tempered(logits, tau, axis=-1), axis=-1)

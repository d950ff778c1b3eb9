"""Regression of features onto a fixed codebook (no softmax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._logits import check_codebook
from spectral_targets._numerics import unit_rows


def cosine_regression_loss(features: jax.typing.ArrayLike,
                           labels: jax.typing.ArrayLike,
                           codebook: jax.typing.ArrayLike) -> jax.Array:
  r"""One minus the cosine between each feature and its class code.

  .. math::
    L = 1 - \frac{z^\top w_y}{\lVert z\rVert\,\lVert w_y\rVert}

  The correlation loss of Barz & Denzler (2019) for hierarchy-based
  embeddings. Norms are taken after rescaling by the largest magnitude
  (no epsilon), so any non-zero feature, of norm 1e-30 or 1e30, gives its
  exact cosine; a zero feature gives L = 1 with finite gradients.

  Args:
    features: (..., d) features.
    labels: (...) integer labels in [0, C).
    codebook: (C, d) class codes.

  Returns:
    (...) per-example losses in [0, 2].

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> codes = jnp.eye(2)
    >>> st.cosine_regression_loss(jnp.array([[1., 1.]]), jnp.array([0]),
    ...                           codes).round(4)
    Array([0.2929], dtype=float32)

  References:
    Barz & Denzler, "Hierarchy-based Image Embeddings for Semantic Image
    Retrieval", WACV 2019.
  """
  z = num.as_compute(features, "features")
  W = num.as_compute(codebook, "codebook")
  check_codebook(z, W)
  y = _check_labels(labels, z, W)
  return 1 - jnp.sum(unit_rows(z) * unit_rows(W)[y], axis=-1)


def similarity_regression_loss(features: jax.typing.ArrayLike,
                               labels: jax.typing.ArrayLike,
                               codebook: jax.typing.ArrayLike,
                               kernel: jax.typing.ArrayLike, *,
                               where: jax.typing.ArrayLike | None = None
                               ) -> jax.Array:
  r"""Squared error between a feature's cosines to every code and the
  kernel row of its label.

  .. math::
    L = \sum_c \big(\cos(z, w_c) - S_{yc}\big)^2

  The similarity regression of HAFrame (Liang & Davis, 2023): the feature
  must sit at the right angle to *every* class, not only near its own code.
  With a codebook whose Gram matrix equals S, the optimum is z ∝ w_y.

  Args:
    features: (..., d) features.
    labels: (...) integer labels in [0, C).
    codebook: (C, d) class codes.
    kernel: (C, C) target similarities (real, finite, symmetric; checked
      when concrete).
    where: boolean mask of the classes to include, read as in
      ``distillation_loss``: (..., C), the batch shape (...), or (C,).

  Returns:
    (...) per-example losses.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> codes = jnp.eye(2)
    >>> st.similarity_regression_loss(jnp.array([[1., 0.]]), jnp.array([0]),
    ...                               codes, jnp.eye(2))
    Array([0.], dtype=float32)

  References:
    Liang & Davis, "Inducing Neural Collapse to a Fixed Hierarchy-Aware
    Frame for Reducing Mistake Severity", ICCV 2023.
  """
  z = num.as_compute(features, "features")
  W = num.as_compute(codebook, "codebook")
  check_codebook(z, W)
  S = v.as_kernel(kernel)
  C = W.shape[0]
  if S.shape != (C, C):
    raise ValueError(f"kernel must have shape ({C}, {C}) to match codebook, "
                     f"got {S.shape}.")
  y = _check_labels(labels, z, W)
  cos = unit_rows(z) @ unit_rows(W).T
  err = (cos - S[y]) ** 2
  mask = num.class_mask(where, err.shape, -1)
  return jnp.sum(err if mask is None else jnp.where(mask, err, 0), axis=-1)


def _check_labels(labels: jax.typing.ArrayLike, z: jax.Array, W: jax.Array
                  ) -> jax.Array:
  return v.check_labels(labels, W.shape[0], shape=z.shape[:-1],
                        what="the batch shape", context=" of features")

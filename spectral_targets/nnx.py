"""Flax NNX heads with a fixed codebook.

Replace ``nnx.Linear(d, C, rngs=rngs)`` by ``CodebookHead(codebook)``; the
training step does not change. The codebook is an ``nnx.Variable`` of its own
type (``Codebook``), so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and
``nnx.grad`` never touch it, and ``nnx.state``/``nnx.split`` carry it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from spectral_targets import _validation as v
from spectral_targets._logits import codebook_logits, head_codebook

__all__ = ["Codebook", "CodebookHead"]


class Codebook(nnx.Variable[jax.Array]):
  """A fixed class codebook: module state, never a trainable parameter."""


class CodebookHead(nnx.Module):
  r"""Logits from scaled cosines to fixed class codes.

  .. math::
    \ell_c = s\,\cos(z, w_c)

  (``codebook_logits``), with the codebook W (C, d) fixed. With
  ``learn_scale=True`` the scale s is an ``nnx.Param`` trained with the rest
  of the model (Hoffer et al., 2018); otherwise it is a constant.

  Args:
    codebook: (C, d) class codes, e.g. from ``spectral_codebook``: finite,
      C, d >= 1, no zero row (``ValueError`` otherwise: that class could
      not be scored).
    scale: s > 0; 16 by default (cosine logits in [-1, 1] need a sharper
      softmax; the benchmark chooses it per task on a validation split).
    learn_scale: make s a trainable ``nnx.Param``.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> from spectral_targets.nnx import CodebookHead
    >>> head = CodebookHead(st.spectral_codebook(st.flat(4), 3), scale=10.0)
    >>> head(jnp.ones((2, 3))).shape
    (2, 4)
  """

  def __init__(self, codebook: jax.typing.ArrayLike, *,
               scale: float = 16.0, learn_scale: bool = False) -> None:
    W = head_codebook(codebook)
    v.check_positive(scale, "scale")
    scale = v.scalar_option(scale, "scale")
    self.codebook = Codebook(W)
    self.learn_scale = learn_scale
    self.scale: nnx.Param[jax.Array] | float
    if learn_scale:
      self.scale = nnx.Param(jnp.asarray(scale, W.dtype))
    else:
      self.scale = float(scale)

  @property
  def num_classes(self) -> int:
    return self.codebook[...].shape[0]

  def __call__(self, features: jax.typing.ArrayLike) -> jax.Array:
    """(..., d) features -> (..., C) logits."""
    scale = (self.scale[...] if isinstance(self.scale, nnx.Param)
             else self.scale)
    return codebook_logits(features, self.codebook[...], scale=scale)

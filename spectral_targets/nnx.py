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

__all__ = ["Codebook", "CodebookHead", "CoralHead"]


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
    scale: s > 0; 8 by default. Cosine logits lie in [-1, 1] and need a
      sharper softmax. Tuned on validation (``benchmarks/results/``
      ``default.json`` and ``grid-*.json``, 16 tunings), the benchmark's
      simplex and spectral heads chose s = 2 twice, 4 seven times, 8 four
      times, 16 twice (spectral codes, the 100-class hierarchy) and 32 once
      (simplex, the 7-class ordinal task); 8 is the benchmark's own starting
      point and at least the choice in 13 of 16. Tune it with the learning
      rate; more classes want a larger s.
    learn_scale: make s a trainable ``nnx.Param``.

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> from spectral_targets.nnx import CodebookHead
    >>> head = CodebookHead(st.spectral_codebook(st.flat(4), 3), scale=10.0)
    >>> head(jnp.ones((2, 3))).shape
    (2, 4)
  """

  def __init__(self, codebook: jax.typing.ArrayLike, *,
               scale: float = 8.0, learn_scale: bool = False) -> None:
    W = head_codebook(codebook)
    v.check_positive(scale, "scale")
    scale = v.scalar_option(scale, "scale")
    self.codebook = Codebook(W)
    # The scale's type is the one record of ``learn_scale``.
    self.scale: nnx.Param[jax.Array] | float
    if learn_scale:
      self.scale = nnx.Param(jnp.asarray(scale, W.dtype))
    else:
      self.scale = float(scale)

  @property
  def num_classes(self) -> int:
    return self.codebook[...].shape[0]

  @property
  def learn_scale(self) -> bool:
    """Whether the scale s is a trainable ``nnx.Param``."""
    return isinstance(self.scale, nnx.Param)

  def __call__(self, features: jax.typing.ArrayLike) -> jax.Array:
    """(..., d) features -> (..., C) logits."""
    scale = (self.scale[...] if isinstance(self.scale, nnx.Param)
             else self.scale)
    return codebook_logits(features, self.codebook[...], scale=scale)


class CoralHead(nnx.Module):
  r"""CORAL's ordinal head: K - 1 logits of P(y > k) sharing one weight
  vector, one bias each (Cao, Mirjalili & Raschka, 2020).

  .. math::
    g_k = w \cdot z + b_k, \qquad k = 0, \dots, K - 2

  Train with ``coral_loss``; predict with ``coral_predictions`` or, for a
  distribution, ``coral_probabilities``. The biases are free parameters, as
  in the paper: its Theorem 1 shows the loss's minimiser has
  :math:`b_0 \ge \dots \ge b_{K-2}`, so the answers are rank-consistent.
  They start ordered, evenly from 1 down to 1/(K - 1) (as in the authors'
  ``coral-pytorch``).

  Args:
    in_features: d, the size of the features.
    num_classes: K >= 2 grades.
    rngs: the ``nnx.Rngs`` the weight vector is drawn from (LeCun normal).

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from spectral_targets.nnx import CoralHead
    >>> head = CoralHead(3, 5, rngs=nnx.Rngs(0))
    >>> head(jnp.ones((2, 3))).shape
    (2, 4)

  References:
    Cao, Mirjalili & Raschka, "Rank consistent ordinal regression for neural
    networks with application to age estimation", Pattern Recognition
    Letters 140, 2020.
  """

  def __init__(self, in_features: int, num_classes: int, *,
               rngs: nnx.Rngs) -> None:
    d = v.check_int(in_features, "in_features", minimum=1)
    K = v.check_int(num_classes, "num_classes", minimum=2)
    init = nnx.initializers.lecun_normal()
    self.weight = nnx.Param(init(rngs.params(), (d, 1), jnp.float32)[:, 0])
    self.bias = nnx.Param(jnp.arange(K - 1, 0, -1, dtype=jnp.float32)
                          / (K - 1))

  def __call__(self, features: jax.typing.ArrayLike) -> jax.Array:
    """(..., d) features -> (..., K - 1) logits."""
    z = v.as_float_array(features, "features")
    w = self.weight[...]
    if z.ndim < 1 or z.shape[-1] != w.shape[0]:
      raise ValueError(f"features must have shape (..., {w.shape[0]}), got "
                       f"{z.shape}.")
    return (z @ w)[..., None] + self.bias[...]


def __dir__() -> list[str]:
  # dir() and tab completion show the API, not this module's imports.
  return list(__all__)

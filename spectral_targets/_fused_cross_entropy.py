"""Cross-entropy of a linear (or codebook) head at any vocabulary size,
without the (N, V) logits; the chunking is ``_vocabulary_chunks``'."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets import _vocabulary_chunks as vc


@dataclasses.dataclass(frozen=True)
class _CrossEntropy:
  """−log softmax(ℓ)_y, with label smoothing ε: lse(ℓ) − (1−ε)ℓ_y − ε ℓ̄."""

  def value(self, s: jax.Array, t: jax.Array | None, data: Any,
            params: vc.Params, vocab: vc.Vocabulary
            ) -> tuple[jax.Array, jax.Array]:
    labels, = data
    smoothing, = params
    lse = vocab.logsumexp(s)
    picked = vocab.take(s, labels[:, None])
    loss = lse - (1 - smoothing) * picked
    loss = loss - smoothing * vocab.total(s) / vocab.size
    valid = (labels >= 0) & (labels < vocab.size)  # traced labels
    return jnp.where(valid, loss[:, 0], jnp.nan), lse

  def gradient(self, s: jax.Array, t: jax.Array | None, data: Any,
               saved: jax.Array, params: vc.Params, vocab: vc.Vocabulary
               ) -> jax.Array:
    labels, = data
    smoothing, = params
    target = vocab.one_hot(labels[:, None], s.shape)
    return (jnp.exp(s - saved) - (1 - smoothing) * target
            - smoothing / vocab.size)


def fused_linear_cross_entropy(hidden: jax.typing.ArrayLike,
                               weight: jax.typing.ArrayLike,
                               labels: jax.typing.ArrayLike, *,
                               bias: jax.typing.ArrayLike | None = None,
                               scale: jax.typing.ArrayLike | None = None,
                               label_smoothing: jax.typing.ArrayLike = 0.0,
                               where: jax.typing.ArrayLike | None = None,
                               chunk_size: int | None = None,
                               axis_name: str | None = None,
                               reduction: str = "none") -> jax.Array:
  r"""Softmax cross-entropy of a linear head, never forming its logits.

  .. math::
    L_i = \log \sum_{c=1}^{V} e^{\ell_{ic}} - (1 - \varepsilon)\,\ell_{i y_i}
          - \frac{\varepsilon}{V} \sum_{c=1}^{V} \ell_{ic},
    \qquad
    \ell = h W^\top + b \quad\text{or, with a scale } s,\quad
    \ell = s\,\hat h W^\top + b,\ \hat h_i = h_i / \lVert h_i \rVert

  the cross-entropy against the labels smoothed by ε
  (``optax.smooth_labels``). Equal to
  ``optax.softmax_cross_entropy_with_integer_labels(hidden @ weight.T + bias,
  labels)`` at ε = 0, but positions are processed ``chunk_size`` at a time
  and the gradient recomputes each chunk's logits (``jax.custom_vjp``), so
  memory grows like ``chunk_size × V``, not ``N × V``. bf16/f16 inputs are
  multiplied with float32 accumulation and the loss is float32.

  **A codebook head at any number of classes.** With unit-norm weight rows
  (a spectral codebook) and ``scale=s``, the logits are
  ``codebook_logits(hidden, weight, scale=s)``, so this is that head's
  cross-entropy for C = V classes, at a memory cost independent of C beyond
  the codebook and its gradient.

  **Vocabulary sharded across devices.** Inside ``jax.shard_map``, pass the
  local rows of a weight (and bias) sharded over mesh axis ``axis_name``
  (row block j of V/n on device j) with ``hidden`` and ``labels``
  replicated over that axis (labels are global class indices): the
  per-shard log-sum-exps, label logits and sums are combined by
  ``pmax``/``psum``, never gathering logits, and every device returns the
  full per-position losses. Gradients are the same as unsharded: each
  device gets its own rows of ∂L/∂W, and ∂L/∂h is summed over the shards.

  Args:
    hidden: (..., D) features, one row per position.
    weight: (V, D) class weights (local rows with ``axis_name``).
    labels: (...) integer labels in [0, V) (global indices).
    bias: optional (V,) logit biases.
    scale: None for the linear head, or s > 0 for the cosine head above.
    label_smoothing: ε in [0, 1].
    where: optional boolean mask of shape (...): positions to include; a
      masked position gives 0 and no gradient.
    chunk_size: positions per chunk (any size; an uneven last chunk is
      padded). None picks about 2**22 / V (16 MiB of float32 logits).
    axis_name: the mesh axis the vocabulary is sharded over (inside
      ``shard_map``), or None.
    reduction: "none" for the per-position losses (the Optax convention);
      "mean" for their mean over the positions ``where`` keeps (0 if none),
      whose gradient is computed chunk by chunk in the same pass as the
      value, with no recomputation of the logits (only a scalar loss
      allows it: its cotangent just rescales the stored gradients).

  Returns:
    (...) per-position losses (float32 for low-precision inputs); a
    scalar with reduction "mean".

  Examples:
    >>> import jax.numpy as jnp, optax, spectral_targets as st
    >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = jnp.array([0, 1, 2])
    >>> st.fused_linear_cross_entropy(h, w, y, chunk_size=2).round(4)
    Array([0.4076, 0.2395, 2.7586], dtype=float32)
    >>> optax.softmax_cross_entropy_with_integer_labels(h @ w.T, y).round(4)
    Array([0.4076, 0.2395, 2.7586], dtype=float32)

  References:
    Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models",
    ICLR 2025; Shoeybi et al., "Megatron-LM", 2019 (vocabulary-parallel
    cross-entropy).
  """
  h, w, batch = vc.as_head(hidden, weight, "hidden", "weight")
  vocab = vc.vocabulary(w.shape[0], axis_name)
  y = v.check_labels(labels, vocab.size)
  if y.shape != batch:
    raise ValueError(f"labels must have the positions' shape {batch}, got "
                     f"{y.shape}.")
  b = None
  if bias is not None:
    b = v.as_array(bias, "bias")
    if b.shape != (w.shape[0],):
      raise ValueError(f"bias must have shape ({w.shape[0]},), one per row "
                       f"of weight, got {b.shape}.")
  v.check_nonnegative(label_smoothing, "label_smoothing")
  if v.is_concrete(label_smoothing) and np.asarray(label_smoothing) > 1:
    raise ValueError(f"label_smoothing must lie in [0, 1], got "
                     f"{label_smoothing}.")
  if scale is not None:
    v.check_positive(scale, "scale")
    h = (num.unit_rows(h.astype(v.compute_dtype(h.dtype))) * scale
         ).astype(h.dtype)
  mask = vc.position_mask(where, batch)
  chunk = vc.pick_chunk(chunk_size, h.shape[0], w.shape[0])
  smoothing = jnp.asarray(label_smoothing, v.compute_dtype(h.dtype))
  loss = vc.reduced(reduction)(_CrossEntropy(), h, w, b, None,
                               (y.reshape(-1),), (smoothing,), mask,
                               chunk=chunk, vocab=vocab)
  return loss if reduction == "mean" else loss.reshape(batch)

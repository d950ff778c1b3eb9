"""Distillation from a teacher stored as its top-k logits per position (the
format offline LM distillation keeps), against a linear student head over
the full vocabulary, without the student's (N, V) logits."""

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
class _TopK:
  """τ²·KL over k + 1 buckets: the teacher's k classes and the student's
  tail (every other class), where the teacher has no mass."""

  def value(self, s: jax.Array, t: jax.Array | None, data: Any,
            params: vc.Params, vocab: vc.Vocabulary
            ) -> tuple[jax.Array, jax.Array]:
    values, indices = data
    tau, = params
    values = values.astype(s.dtype)
    lse_s = vocab.logsumexp(s / tau)
    picked = vocab.take(s, indices)                       # (c, k)
    # The tail's log-mass by its own log-sum-exp: no 1 − Σ cancellation.
    tail = vc.logsumexp_outside(s / tau, vocab.one_hot(indices, s.shape),
                                vocab) - lse_s
    lp = num.log_softmax(values / tau, -1, None)
    lp = jnp.concatenate([lp, jnp.full_like(tail, -jnp.inf)], -1)
    lq = jnp.concatenate([picked / tau - lse_s, tail], -1)
    top_t = jnp.max(values, -1, keepdims=True)
    top_s = jnp.max(picked, -1, keepdims=True)
    d = jnp.concatenate([(values - top_t) - (picked - top_s),
                         jnp.zeros_like(tail)], -1)
    loss, mean = num.tempered_kl(lp, lq, d, tau)
    # The student's top-k logits are saved: the backward pass sees one
    # block of the vocabulary at a time.
    return loss, jnp.concatenate([lse_s, top_t, top_s, mean,
                                  loss[:, None], picked], -1)

  def gradient(self, s: jax.Array, t: jax.Array | None, data: Any,
               saved: jax.Array, params: vc.Params, vocab: vc.Vocabulary
               ) -> jax.Array:
    values, indices = data
    tau, = params
    values = values.astype(s.dtype)
    lse_s, top_t, top_s, mean, loss = (saved[:, i:i + 1] for i in range(5))
    picked = saved[:, 5:]
    lp = num.log_softmax(values / tau, -1, None)
    lq = picked / tau - lse_s
    d = (values - top_t) - (picked - top_s)
    at_top = vc.forward_kl_gradient(lp, lq, d, mean, loss / tau**2, tau)
    # τ q everywhere (p = 0 off the top k), then τ(q − p) at the top k.
    grad = tau * jnp.exp(s / tau - lse_s)
    local = indices - vocab.offset
    local = jnp.where((local >= 0) & (local < vocab.local), local,
                      vocab.local)
    rows = jnp.arange(s.shape[0])[:, None]
    return grad.at[rows, local].set(at_top, mode="drop")


def top_k_distillation_loss(student_hidden: jax.typing.ArrayLike,
                            student_weight: jax.typing.ArrayLike,
                            teacher_values: jax.typing.ArrayLike,
                            teacher_indices: jax.typing.ArrayLike, *,
                            temperature: jax.typing.ArrayLike = 1.0,
                            where: jax.typing.ArrayLike | None = None,
                            chunk_size: int | None = None,
                            axis_name: str | None = None,
    reduction: str = "none") -> jax.Array:
  r"""τ²·KL from a teacher's stored top-k logits to a linear student head.

  With the teacher's k logits :math:`v_j` at classes :math:`c_j` and the
  student's :math:`q = \operatorname{softmax}(h W^\top / \tau)` over all V
  classes:

  .. math::
    L = \tau^2 \sum_{j=1}^{k} p_j \log \frac{p_j}{q_{c_j}}, \qquad
    p = \operatorname{softmax}(v / \tau)

  **The tail.** The teacher's mass outside its top k is not stored, so it
  is taken as 0: p is the softmax over the k stored logits, as though the
  teacher's other logits were -inf, and this is exactly
  ``distillation_loss(h @ W.T, t)`` with t the stored values scattered into
  a row of -inf. The student's mass outside the k classes is one explicit
  bucket, :math:`q_{\text{tail}} = 1 - \sum_j q_{c_j}`, in which the
  teacher has none: it enters as :math:`-\log(1 - q_{\text{tail}})`, a
  penalty for the student's mass where the teacher put none, and its
  gradient pushes every tail logit down by τ q_c. The tail's log-mass is
  computed by its own log-sum-exp over the other V − k classes (never as
  1 − Σ, which cancels). The KL is the temperature-robust one of
  ``distillation_loss``; stored values of -inf (fewer than k classes) are
  allowed and contribute 0.

  Positions are processed ``chunk_size`` at a time and the gradient
  recomputes each chunk's logits; with ``axis_name`` (inside
  ``jax.shard_map``) the student's weight is the local rows of a
  vocabulary sharded over that axis, ``teacher_indices`` hold global class
  indices, and the per-shard pieces are combined by collectives (see
  ``fused_linear_cross_entropy``).

  Args:
    student_hidden: (..., D) student features.
    student_weight: (V, D) student head.
    teacher_values: (..., k) the teacher's top-k logits.
    teacher_indices: (..., k) their classes in [0, V), distinct per position.
    temperature: τ > 0.
    where: optional boolean mask of shape (...): positions to include.
    chunk_size: positions per chunk; None picks about 2**22 / V.
    axis_name: the mesh axis the vocabulary is sharded over, or None.
    reduction: "none" (per position) or "mean" (over the kept positions,
      its gradient computed in the forward pass), as in
      ``fused_linear_cross_entropy``.

  Returns:
    (...) per-position losses, >= 0; a scalar with reduction "mean".

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> h = jnp.array([[1.0, 0.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> values, indices = jnp.array([[2.0, 1.0]]), jnp.array([[0, 1]])
    >>> print(f"{st.top_k_distillation_loss(h, w, values, indices)[0]:.4f}")
    0.0943
    >>> t = jnp.array([[2.0, 1.0, -jnp.inf]])  # the same teacher, scattered
    >>> print(f"{st.distillation_loss(h @ w.T, t)[0]:.4f}")
    0.0943

  References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015.
  """
  h, w, batch = vc.as_head(student_hidden, student_weight, "student_hidden",
                           "student_weight")
  vals = num.as_compute(teacher_values, "teacher_values")
  idx = v.as_array(teacher_indices, "teacher_indices")
  if not jnp.issubdtype(idx.dtype, jnp.integer):
    raise TypeError(f"teacher_indices must have an integer dtype, got "
                    f"{idx.dtype}.")
  if vals.ndim < 1 or vals.shape[:-1] != batch:
    raise ValueError(f"teacher_values must have shape {batch + ('k',)} (the "
                     f"positions, then k), got {vals.shape}.")
  if idx.shape != vals.shape:
    raise ValueError(f"teacher_indices must have the shape of "
                     f"teacher_values {vals.shape}, got {idx.shape}.")
  vocab = vc.vocabulary(w.shape[0], axis_name)
  k = vals.shape[-1]
  if not 1 <= k <= vocab.size:
    raise ValueError(f"teacher_values must hold 1 <= k <= V = {vocab.size} "
                     f"logits per position, got k = {k}.")
  vc.check_concrete_indices(idx, vocab.size, "teacher_indices")
  temperature = num.temperature(temperature)
  mask = vc.position_mask(where, batch)
  chunk = vc.pick_chunk(chunk_size, h.shape[0], w.shape[0])
  tau = jnp.asarray(temperature, v.compute_dtype(h.dtype))
  data = (jax.lax.stop_gradient(vals.reshape(-1, k)), idx.reshape(-1, k))
  loss = vc.reduced(reduction)(_TopK(), h, w, None, None, data, (tau,),
                               mask, chunk=chunk, vocab=vocab)
  return loss if reduction == "mean" else loss.reshape(batch)

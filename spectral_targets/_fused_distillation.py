"""Distillation between two linear heads at any vocabulary size, without
either head's (N, V) logits; the chunking is ``_vocabulary_chunks``', the
KL ``_numerics.tempered_kl`` (the numerics of ``distillation_loss``).

Gradients with respect to the student's logits, per position (p the
teacher's and q the student's softmax at τ, all exact identities):

* forward, τ²KL(p‖q): τ(q − p), as ``forward_kl_gradient`` (no
  cancellation at large τ);
* reverse, τ²KL(q‖p): τ q (log(q/p) − KL) = q (d′ − E_q d′), with
  d′ = s − t (up to a row constant): log(q/p) − KL(q‖p) = (d′ − E_q d′)/τ;
* JSD_β = β KL(p‖m) + (1−β) KL(q‖m), m = βp + (1−β)q:
  τ(1 − β) q (log(q/m) − KL(q‖m)) = (1 − β) q (d″ − E_q d″), with
  d″ = τ log(q/m), since ∂JSD/∂q_c = (1 − β) log(q_c/m_c).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets import _vocabulary_chunks as vc

DIVERGENCES = ("forward", "reverse", "jensen_shannon")


def _tempered(s: jax.Array, t: jax.Array, tau: jax.Array,
              vocab: vc.Vocabulary
              ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """log p, log q (at τ), d = t − s relative to each head's top logit (a
  common offset costs no precision), and the saved row numbers."""
  lse_t = vocab.logsumexp(t / tau)
  lse_s = vocab.logsumexp(s / tau)
  top_t, top_s = vocab.largest(t), vocab.largest(s)
  d = (t - top_t) - (s - top_s)
  return t / tau - lse_t, s / tau - lse_s, d, jnp.concatenate(
      [lse_t, lse_s, top_t, top_s], -1)


def _recompute(s: jax.Array, t: jax.Array, tau: jax.Array,
               saved: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  lse_t, lse_s, top_t, top_s = (saved[:, i:i + 1] for i in range(4))
  return t / tau - lse_t, s / tau - lse_s, (t - top_t) - (s - top_s)


def _log_mixture(lp: jax.Array, lq: jax.Array, d: jax.Array,
                 mean: jax.Array, kl: jax.Array, tau: jax.Array,
                 beta: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """log m for m = βp + (1−β)q, τ log(p/m) and τ log(q/m), precise when
  q ≈ p.

  On p's support, x = log(q/p) = −ε − KL(p‖q) (see ``forward_kl_gradient``)
  and log(m/p) = log1p((1−β) expm1(x)); off it m = (1−β)q.
  """
  support = lp != -jnp.inf
  eps = jnp.where(support, d - mean, 0) / tau
  x = jnp.where(kl > 1, lq - jnp.where(support, lp, 0), -eps - kl)
  small = jnp.abs(x) <= 1
  a = jnp.where(small, jnp.log1p((1 - beta) * jnp.expm1(jnp.where(
      small, x, 0))), jnp.logaddexp(jnp.log(beta), jnp.log1p(-beta) + x))
  lm = jnp.where(support, lp + a, jnp.log1p(-beta) + lq)
  return (lm, -tau * jnp.where(support, a, 0),
          tau * jnp.where(support, x - a, -jnp.log1p(-beta)))


@dataclasses.dataclass(frozen=True)
class _Distillation:
  divergence: str

  def value(self, s: jax.Array, t: jax.Array | None, data: Any,
            params: vc.Params, vocab: vc.Vocabulary
            ) -> tuple[jax.Array, jax.Array]:
    assert t is not None
    tau, beta = params
    lp, lq, d, rows = _tempered(s, t, tau, vocab)
    if self.divergence == "forward":
      loss, mean = num.tempered_kl(lp, lq, d, tau, total=vocab.total)
      extra = [mean, loss[:, None]]
    elif self.divergence == "reverse":
      loss, mean = num.tempered_kl(lq, lp, -d, tau, total=vocab.total)
      extra = [mean]
    else:
      kl, mean = num.tempered_kl(lp, lq, d, tau, total=vocab.total)
      lm, dp, dq = _log_mixture(lp, lq, d, mean, kl[:, None] / tau**2, tau,
                                beta)
      kl_p, _ = num.tempered_kl(lp, lm, dp, tau, total=vocab.total)
      kl_q, mean_q = num.tempered_kl(lq, lm, dq, tau, total=vocab.total)
      loss = beta * kl_p + (1 - beta) * kl_q
      extra = [mean, kl[:, None], mean_q]
    return loss, jnp.concatenate([rows] + extra, -1)

  def gradient(self, s: jax.Array, t: jax.Array | None, data: Any,
               saved: jax.Array, params: vc.Params, vocab: vc.Vocabulary
               ) -> jax.Array:
    assert t is not None
    tau, beta = params
    lp, lq, d = _recompute(s, t, tau, saved)
    mean = saved[:, 4:5]
    if self.divergence == "forward":
      return vc.forward_kl_gradient(lp, lq, d, mean, saved[:, 5:6] / tau**2,
                                    tau)
    q = jnp.exp(lq)
    if self.divergence == "reverse":
      return q * (-d - mean)
    _, _, dq = _log_mixture(lp, lq, d, mean, saved[:, 5:6] / tau**2, tau,
                            beta)
    return (1 - beta) * q * (dq - saved[:, 6:7])


def fused_linear_distillation_loss(
    student_hidden: jax.typing.ArrayLike,
    student_weight: jax.typing.ArrayLike,
    teacher_hidden: jax.typing.ArrayLike,
    teacher_weight: jax.typing.ArrayLike, *,
    temperature: jax.typing.ArrayLike = 1.0,
    divergence: str = "forward",
    beta: jax.typing.ArrayLike = 0.5,
    where: jax.typing.ArrayLike | None = None,
    chunk_size: int | None = None,
    axis_name: str | None = None,
    reduction: str = "none") -> jax.Array:
  r"""τ²-scaled divergence between two linear heads, never forming logits.

  With :math:`p = \operatorname{softmax}(h_T W_T^\top/\tau)` (teacher) and
  :math:`q = \operatorname{softmax}(h_S W_S^\top/\tau)` (student) over the
  V classes, per position:

  .. math::
    \text{forward: } \tau^2\,\mathrm{KL}(p\,\|\,q), \qquad
    \text{reverse: } \tau^2\,\mathrm{KL}(q\,\|\,p), \\
    \text{jensen\_shannon: } \tau^2\big(\beta\,\mathrm{KL}(p\,\|\,m)
      + (1-\beta)\,\mathrm{KL}(q\,\|\,m)\big), \quad m = \beta p + (1-\beta) q

  Forward is Hinton's distillation (``distillation_loss`` of the two heads'
  logits, to which it is equal); reverse is mode-seeking; the generalised
  Jensen–Shannon divergence of skew β is GKD's (Agarwal et al.), bounded
  by τ² times the entropy of the Bernoulli(β). Positions are processed
  ``chunk_size`` at a time and the gradient recomputes each chunk's logits
  (``jax.custom_vjp``): memory grows like ``chunk_size × V``. No gradient
  flows into the teacher. Every KL is the temperature-robust one of
  ``distillation_loss`` (float32 precision from τ ≪ 1 to τ = 1e30; a
  teacher logit of -inf contributes 0 log 0 = 0 to KL(p‖·)), and so is the
  gradient (the identities in the module notes). Where the teacher rules
  out a class the student does not, the reverse KL is +inf.

  With ``axis_name``, inside ``jax.shard_map``, both weights are the local
  rows of a vocabulary sharded over that mesh axis (the same rows for both
  heads) and the hidden states are replicated over it; the per-shard sums
  are combined by ``psum``/``pmax`` (see ``fused_linear_cross_entropy``).

  Args:
    student_hidden: (..., D_S) student features.
    student_weight: (V, D_S) student head.
    teacher_hidden: (..., D_T) teacher features (same positions).
    teacher_weight: (V, D_T) teacher head.
    temperature: τ > 0.
    divergence: "forward", "reverse" or "jensen_shannon".
    beta: the skew β in (0, 1) of "jensen_shannon" (else unused).
    where: optional boolean mask of shape (...): positions to include; a
      masked position gives 0 and no gradient.
    chunk_size: positions per chunk (an uneven last chunk is padded); None
      picks about 2**22 / V.
    axis_name: the mesh axis the vocabulary is sharded over, or None.
    reduction: "none" (per position) or "mean" (over the kept positions,
      its gradient computed in the forward pass), as in
      ``fused_linear_cross_entropy``.

  Returns:
    (...) per-position losses, >= 0 (float32 for low-precision inputs); a
    scalar with reduction "mean".

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> hs = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> ht = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    >>> st.fused_linear_distillation_loss(hs, w, ht, w).round(4)
    Array([0.1156, 0.1016], dtype=float32)
    >>> st.distillation_loss(hs @ w.T, ht @ w.T).round(4)
    Array([0.1156, 0.1016], dtype=float32)
    >>> st.fused_linear_distillation_loss(
    ...     hs, w, ht, w, divergence="jensen_shannon").round(4)
    Array([0.0324, 0.026 ], dtype=float32)

  References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015; Agarwal et al., "On-Policy Distillation of Language
    Models: Learning from Self-Generated Mistakes" (GKD), ICLR 2024.
  """
  if divergence not in DIVERGENCES:
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got "
                     f"{divergence!r}.")
  hs, ws, batch = vc.as_head(student_hidden, student_weight,
                             "student_hidden", "student_weight")
  ht, wt, t_batch = vc.as_head(teacher_hidden, teacher_weight,
                               "teacher_hidden", "teacher_weight")
  if t_batch != batch:
    raise ValueError(f"student_hidden and teacher_hidden must have the same "
                     f"positions, got {batch} and {t_batch}.")
  if wt.shape[0] != ws.shape[0]:
    raise ValueError(f"student_weight and teacher_weight must have the same "
                     f"number of classes V, got {ws.shape[0]} and "
                     f"{wt.shape[0]}.")
  temperature = num.temperature(temperature)
  if divergence == "jensen_shannon" and v.is_concrete(beta):
    b = np.asarray(beta)
    if not 0 < b < 1:
      raise ValueError(f"beta must lie in (0, 1), got {beta}.")
  vocab = vc.vocabulary(ws.shape[0], axis_name)
  mask = vc.position_mask(where, batch)
  chunk = vc.pick_chunk(chunk_size, hs.shape[0], ws.shape[0])
  dtype = v.compute_dtype(hs.dtype)
  params = (jnp.asarray(temperature, dtype), jnp.asarray(beta, dtype))
  loss = vc.reduced(reduction)(_Distillation(divergence), hs, ws, None,
                               (ht, wt), (), params, mask, chunk=chunk,
                               vocab=vocab)
  return loss if reduction == "mean" else loss.reshape(batch)


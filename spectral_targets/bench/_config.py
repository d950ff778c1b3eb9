"""A method as data: the ``MethodConfig`` arrays of one model.

Every method of a task trains the same body; what differs is data, not
code: the head (a learned Dense layer, a learned cosine classifier, a
fixed codebook, CORAL's rank-consistent binary heads or a scalar regression
on the grade index), the codebook and its scale, the learning rate, the targets
and the loss weights are arrays in a ``MethodConfig``. So any methods, grid
points and seeds of a task can train in one ``vmap``-ed program
(``_training``); which parts of the model that program computes follows
from the configs it trains (``_training.active_terms``: a part every model
weights 0 is left out).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

_FIELDS = ("lr", "total_steps", "warmup_steps", "mask", "head", "codebook", "scale",
           "target_kernel", "target_temperature", "alpha", "w_online",
           "w_ce", "w_hxe", "hxe_alpha", "w_kd", "kd_temperature", "w_dkd",
           "dkd_beta", "dkd_warmup", "w_sa", "w_coral", "w_reg",
           "probabilistic", "mixup")


@functools.partial(jax.tree_util.register_dataclass, data_fields=list(_FIELDS),
                   meta_fields=[])
@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """A method at one grid point, as arrays (stack along a leading axis to
  vmap; float32 and never weak-typed, so one compiled program serves every
  method of a task).

  lr, total_steps, warmup_steps: peak learning rate of AdamW's schedule
    (``_training.optimizer``: linear warm-up from 0 over ``warmup_steps``,
    then cosine decay to 0 at ``total_steps``).
  mask: (F,) which feature dimensions the head sees (a d-dim codebook pads
    to F with zero columns and masks the rest).
  head: (5,) one-hot over ``HEADS``: Dense, learned cosine, fixed
    codebook, CORAL (K − 1 logits g_k = w·z + b_k; class logits
    log ``coral_probabilities``) and regression on the grade index (a scalar
    r = w·z + b; class logits −(i − r)², so the argmax is the nearest grade,
    clipped to [0, C − 1]).
  codebook: (C, F) fixed codes (zeros for the learned heads); scale: the
    cosine heads' logit scale.
  target_kernel, target_temperature, alpha: targets
    ``kernel_soft_labels(y, K, temperature, alpha)`` (alpha 0: one-hot);
    w_online: weight of the online soft targets (the previous epoch's mean
    prediction per class) mixed into them.
  w_ce, w_hxe, w_kd, w_dkd, w_sa: weights of cross-entropy on those targets,
    hierarchical cross-entropy (``hxe_alpha``), Hinton KD on logits
    (``kd_temperature``), DKD (``dkd_beta``, linear warm-up over
    ``dkd_warmup`` epochs) and KD of soft assignments over the codebook;
    w_coral, w_reg: of ``coral_loss`` on the CORAL head's logits and of
    the squared error (r − y)² of the regression head.
  probabilistic: 1 where the head's softmax is a model of the class
    distribution, 0 where it is not (the regression head): the scorer
    reports the metrics that read probabilities (``PROBABILISTIC_METRICS``)
    as NaN, not applicable, for such a model.
  mixup: 1 where the model trains on mixup'd inputs (``_training``:
    λ x_i + (1 − λ) x_j with the partner j and λ drawn per epoch and example
    before training, the targets mixed alike and the teacher's outputs
    those on the same mixed input), 0 on clean inputs.
  """
  lr: np.ndarray
  total_steps: np.ndarray
  warmup_steps: np.ndarray
  mask: np.ndarray
  head: np.ndarray
  codebook: np.ndarray
  scale: np.ndarray
  target_kernel: np.ndarray
  target_temperature: np.ndarray
  alpha: np.ndarray
  w_online: np.ndarray
  w_ce: np.ndarray
  w_hxe: np.ndarray
  hxe_alpha: np.ndarray
  w_kd: np.ndarray
  kd_temperature: np.ndarray
  w_dkd: np.ndarray
  dkd_beta: np.ndarray
  dkd_warmup: np.ndarray
  w_sa: np.ndarray
  w_coral: np.ndarray
  w_reg: np.ndarray
  probabilistic: np.ndarray
  mixup: np.ndarray


HEADS = ("dense", "cosine", "codebook", "coral", "regression")

#: The scored metrics that read a model's predicted probabilities (and the
#: validation NLL, the tuning's tie-break); ``crm_*`` too (CRM re-ranks
#: them). For a model whose softmax is no distribution (``probabilistic``
#: 0) they are not applicable: NaN in the scores, "n/a" in the report, and
#: no paired difference is formed on them.
PROBABILISTIC_METRICS = ("nll", "val_nll", "ece", "ece_calibrated",
                         "temperature", "median_mae")


def needs_probabilities(metric: str) -> bool:
  """Whether ``metric`` reads predicted probabilities (not applicable to a
  model that has none)."""
  return metric in PROBABILISTIC_METRICS or metric.startswith("crm_")


def method_config(C: int, F: int, *, lr: float, total_steps: int,
                  warmup_steps: float = 0.0, head: str = "dense", codebook=None, scale: float = 1.0,
                  target_kernel=None, target_temperature: float = 1.0,
                  alpha: float = 0.0, w_online: float = 0.0,
                  w_ce: float = 1.0, w_hxe: float = 0.0,
                  hxe_alpha: float = 0.0, w_kd: float = 0.0,
                  kd_temperature: float = 4.0, w_dkd: float = 0.0,
                  dkd_beta: float = 8.0, dkd_warmup: float = 1.0,
                  w_sa: float = 0.0, w_coral: float = 0.0,
                  w_reg: float = 0.0, probabilistic: bool = True,
                  mixup: float = 0.0) -> MethodConfig:
  """A ``MethodConfig`` of host float32 arrays. ``codebook`` may have d < F
  columns: it is padded to F and the head sees only its d dimensions."""
  f32 = lambda a: np.asarray(a, np.float32)
  mask = np.ones(F, np.float32)
  codes = np.zeros((C, F), np.float32)
  if codebook is not None:
    codebook = f32(codebook)
    codes[:, :codebook.shape[1]] = codebook
    mask[codebook.shape[1]:] = 0
  return MethodConfig(
      lr=f32(lr), total_steps=f32(total_steps),
      warmup_steps=f32(warmup_steps), mask=mask,
      head=f32(np.eye(len(HEADS))[HEADS.index(head)]), codebook=codes,
      scale=f32(scale),
      target_kernel=f32(np.zeros((C, C)) if target_kernel is None
                        else target_kernel),
      target_temperature=f32(target_temperature), alpha=f32(alpha),
      w_online=f32(w_online), w_ce=f32(w_ce), w_hxe=f32(w_hxe),
      hxe_alpha=f32(hxe_alpha), w_kd=f32(w_kd),
      kd_temperature=f32(kd_temperature), w_dkd=f32(w_dkd),
      dkd_beta=f32(dkd_beta), dkd_warmup=f32(max(dkd_warmup, 1.0)),
      w_sa=f32(w_sa), w_coral=f32(w_coral), w_reg=f32(w_reg),
      probabilistic=f32(1.0 if probabilistic else 0.0), mixup=f32(mixup))


def stack(items):
  """Stacks pytrees of host arrays along a new leading axis."""
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *items)

"""The methods the benchmark compares, and the hyperparameters each tunes.

One row of ``METHODS`` per method: its head, its own knobs (each with a
small grid and a default) and its loss; ``method.config(context, hp)``
turns it into the ``MethodConfig`` arrays of one model. Every method also
tunes the learning rate on the same grid (``_tuning.LEARNING_RATES``) and
trains on the same schedule (``_training.RECIPE``: one epoch of linear
warm-up, then cosine decay).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from spectral_targets.bench._config import MethodConfig, method_config
from spectral_targets.bench._training import warmup_steps

#: The scale of every cosine or codebook head (logits = scale · cosine).
SCALES = (2.0, 4.0, 8.0, 16.0, 32.0)


@dataclasses.dataclass
class Context:
  """What a method's config needs for one seed of a task."""
  num_classes: int
  features: int
  epochs: int
  total_steps: int
  kernel: np.ndarray | None
  codebooks: dict  # name -> (C, d) codes


def _cross_entropy(ctx: Context, hp: dict) -> dict:
  return {}


@dataclasses.dataclass(frozen=True)
class Method:
  """One method: its row in ``METHODS`` carries everything about it.

  Attributes:
    name: id used in tables and on the command line.
    note: one line for the legend.
    head: "dense", "cosine" (learned unit class vectors), "codebook",
      "coral" (rank-consistent binary heads) or "regression" (a scalar on
      the grade index): ``_config.HEADS``.
    codes: for a codebook head, which codebook: "simplex", "spectral",
      "spectral-small", "random" or "online".
    knobs: the method's own hyperparameters: name -> grid.
    defaults: name -> the value used while the learning rate is tuned.
    loss: ``loss(context, hp)`` -> the ``method_config`` keywords of the
      method's targets and loss terms at hyperparameters ``hp`` (nothing:
      cross-entropy on one-hot targets).
    timed_as: how ``_timing`` writes the method's single-model step, as a
      user would: (the loss, the knob of ``hp`` that loss reads or None).
    probabilistic: whether the head's softmax is a model of the class
      distribution (not for regression on the grade index: its NLL, ECE,
      temperature, CRM and posterior-median metrics are not applicable).
    needs_kernel: whether the method reads the task's label kernel.
    needs_teacher: "logits" or "codebook" for distillation methods.
    needs_tree: whether the method reads the task's class tree.
    control: the method that lacks only this method's ingredient; its
      effect is the paired difference against it (and against one-hot).
    compare: further methods it is compared with (paired), for the
      reading (e.g. an online kernel against the true kernel's method).
  """
  name: str
  note: str
  head: str = "dense"
  codes: str | None = None
  knobs: dict = dataclasses.field(default_factory=dict)
  defaults: dict = dataclasses.field(default_factory=dict)
  loss: Callable[[Context, dict], dict] = _cross_entropy
  timed_as: tuple[str, str | None] = ("ce", None)
  probabilistic: bool = True
  needs_kernel: bool = False
  needs_teacher: str | None = None
  needs_tree: bool = False
  control: str = "one-hot"
  compare: tuple[str, ...] = ()

  def config(self, ctx: Context, hp: dict) -> MethodConfig:
    """The ``MethodConfig`` of this method at hyperparameters ``hp`` (which
    hold ``lr`` and every knob of the method)."""
    head: dict = {}
    if self.head in ("cosine", "codebook"):
      head.update(head=self.head, scale=hp["scale"])
      if self.head == "codebook":
        head["codebook"] = ctx.codebooks[self.codes]
    elif self.head != "dense":
      head.update(head=self.head)
    return method_config(ctx.num_classes, ctx.features, lr=hp["lr"],
                         total_steps=ctx.total_steps,
                         warmup_steps=warmup_steps(ctx.total_steps,
                                                   ctx.epochs), **head,
                         probabilistic=self.probabilistic,
                         **self.loss(ctx, hp))


def _scaled(knobs=None, defaults=None, **kwargs):
  return dict(knobs={"scale": SCALES, **(knobs or {})},
              defaults={"scale": 8.0, **(defaults or {})}, **kwargs)


def _rank_distances(C: int) -> np.ndarray:
  i = np.arange(C, dtype=np.float64)
  return np.abs(i[:, None] - i[None, :])


#: Distillation temperature of DKD and soft-assignment KD (Zhao et al.'s
#: CIFAR setting); Hinton KD tunes its own.
KD_TEMPERATURE = 4.0
#: DKD's loss weight ramps up linearly over this fraction of the epochs
#: (Zhao et al.: 20 of 240 epochs).
DKD_WARMUP = 0.1


METHODS = {m.name: m for m in (
    Method("one-hot", "Dense head, softmax cross-entropy (the baseline)"),
    # optax.smooth_labels(one_hot, α) = kernel_soft_labels of a constant
    # kernel with weight α.
    Method("smooth-labels", "Dense head, optax.smooth_labels targets",
           knobs={"alpha": (0.05, 0.1, 0.2)}, defaults={"alpha": 0.1},
           loss=lambda ctx, hp: dict(alpha=hp["alpha"]),
           timed_as=("smooth", "alpha")),
    Method("kernel-soft-labels",
           "Dense head, kernel_soft_labels targets softmax(S_y / τ) (on a "
           "taxonomy: the soft labels of Bertinetto et al. 2020, τ = 1/β)",
           knobs={"temperature": (0.02, 0.05, 0.1, 0.2)},
           defaults={"temperature": 0.05}, needs_kernel=True,
           loss=lambda ctx, hp: dict(target_kernel=ctx.kernel, alpha=1.0,
                                     target_temperature=hp["temperature"]),
           timed_as=("kernel", "temperature")),
    # SORD's softmax(−φ(i, y)) is kernel_soft_labels of the kernel −φ at
    # α = 1, τ = 1; φ = |i − j|, the error the ordinal tasks score.
    Method("sord", "Dense head, SORD soft ordinal labels softmax(−|i − y|) "
           "(Díaz & Marathe 2019; ordered classes only)",
           loss=lambda ctx, hp: dict(target_kernel=-_rank_distances(
               ctx.num_classes), alpha=1.0, target_temperature=1.0),
           timed_as=("kernel", None)),
    # CORAL's decision rule counts the tasks answered "above" (σ(g_k) >
    # 1/2); with ordered biases that is the posterior median of
    # coral_probabilities, which is what median_mae scores.
    Method("coral", "CORAL (Cao, Mirjalili & Raschka 2020): K − 1 "
           "rank-consistent binary heads P(y > k) = σ(w·z + b_k) on the "
           "body's features (one shared weight vector, K − 1 biases "
           "starting ordered as in coral-pytorch), trained with coral_loss "
           "and scored by its grade distribution coral_probabilities "
           "(accuracy and MAE of its mode); CORAL's own prediction, the "
           "count of σ(g_k) > 1/2, is the posterior median of that "
           "distribution when the biases are ordered, so its published MAE "
           'is the column "MAE, posterior median" (ordered classes only)',
           head="coral", loss=lambda ctx, hp: dict(w_ce=0.0, w_coral=1.0),
           timed_as=("coral", None)),
    Method("regression", "regression on the grade index: a scalar head "
           "r = w·z + b trained with squared error (r − y)², predicting the "
           "nearest grade clipped to [0, C − 1] (the metric-regression "
           "baseline of ordinal work, e.g. Niu et al. 2016's MR-CNN; "
           "ordered classes only); it has no probabilities, so NLL, ECE, "
           "temperature scaling, CRM and the posterior median are n/a",
           head="regression", probabilistic=False,
           loss=lambda ctx, hp: dict(w_ce=0.0, w_reg=1.0),
           timed_as=("regression", None)),
    Method("cosine", "learned cosine classifier: unit features, unit "
           "learned class vectors, logits scale · cos (the control for a "
           "fixed codebook)", **_scaled(head="cosine")),
    Method("random-codebook", "fixed codebook of unit Gaussian codes, "
           "d = C − 1 (the control for a codebook's structure)",
           **_scaled(head="codebook", codes="random", control="cosine")),
    Method("simplex", "fixed codebook of the flat kernel, d = C − 1 (the "
           "simplex ETF)", **_scaled(head="codebook", codes="simplex",
                                     control="cosine")),
    Method("spectral", "fixed codebook of the task's kernel, d = C − 1",
           **_scaled(head="codebook", codes="spectral", needs_kernel=True,
                     control="cosine")),
    Method("spectral-small", "fixed codebook of the task's kernel, small d "
           "(at least the d that separates every class)",
           **_scaled(head="codebook", codes="spectral-small",
                     needs_kernel=True, control="cosine")),
    Method("hxe", "Dense head, hierarchical cross-entropy (Bertinetto et al. "
           "2020), weights exp(−α · depth)",
           knobs={"hxe_alpha": (0.1, 0.2, 0.5)}, defaults={"hxe_alpha": 0.2},
           loss=lambda ctx, hp: dict(w_ce=0.0, w_hxe=1.0,
                                     hxe_alpha=hp["hxe_alpha"]),
           timed_as=("hxe", "hxe_alpha"), needs_tree=True),
    Method("online-soft-labels",
           "Dense head, online label smoothing (Zhang et al. 2021): the "
           "previous epoch's mean prediction per class as soft targets, "
           "mixed with one-hot",
           knobs={"w_online": (0.25, 0.5, 0.75)}, defaults={"w_online": 0.5},
           loss=lambda ctx, hp: dict(w_online=hp["w_online"]),
           timed_as=("online", "w_online"),
           control="smooth-labels", compare=("kernel-soft-labels",)),
    Method("online-codebook", "fixed codebook head refreshed every epoch "
           "from the online label kernel (starts as the simplex), rotated "
           "onto the previous codes", timed_as=("online", None),
           **_scaled(head="codebook", codes="online", control="simplex",
                     compare=("cosine", "spectral"))),
    Method("kd", "Dense-head student, (1 − w) CE + w distillation_loss "
           "(Hinton et al. 2015) from a one-hot teacher",
           knobs={"temperature": (2.0, 4.0, 8.0), "weight": (0.3, 0.6, 0.9)},
           defaults={"temperature": 4.0, "weight": 0.6},
           loss=lambda ctx, hp: dict(w_ce=1 - hp["weight"], w_kd=hp["weight"],
                                     kd_temperature=hp["temperature"]),
           needs_teacher="logits"),
    Method("dkd", "Dense-head student, CE + decoupled_distillation_loss "
           "(Zhao et al. 2022; α = 1, τ = 4, warm-up over the first 10% of "
           "the epochs) from a one-hot teacher",
           knobs={"beta": (0.125, 0.5, 2.0, 8.0)}, defaults={"beta": 2.0},
           loss=lambda ctx, hp: dict(w_dkd=1.0, dkd_beta=hp["beta"],
                                     kd_temperature=KD_TEMPERATURE,
                                     dkd_warmup=DKD_WARMUP * ctx.epochs),
           needs_teacher="logits"),
    Method("sa-kd", "spectral-codebook student, (1 − w) CE + w "
           "soft_assignment_distillation_loss (τ = 4) from a "
           "spectral-codebook teacher",
           **_scaled(knobs={"weight": (0.3, 0.6, 0.9)},
                     defaults={"weight": 0.6},
                     loss=lambda ctx, hp: dict(
                         w_ce=1 - hp["weight"], w_sa=hp["weight"],
                         kd_temperature=KD_TEMPERATURE),
                     head="codebook", codes="spectral", needs_kernel=True,
                     needs_teacher="codebook", control="spectral")),
    # Function matching (Beyer et al. 2022, "Knowledge distillation: a
    # good teacher is patient and consistent"): mixed inputs, the teacher's
    # distribution at T = 1 on the same input, no label term; its control
    # mixup with hard labels (the same inputs, the mixed one-hot targets).
    Method("mixup", "Dense head, mixup (Zhang et al. 2018) with hard labels: "
           "inputs λ x + (1 − λ) x', targets λ e_y + (1 − λ) e_y'",
           loss=lambda ctx, hp: dict(mixup=1.0)),
    Method("function-matching", "Dense-head student, function matching "
           "(Beyer et al. 2022): distillation_loss at T = 1 to a one-hot "
           "teacher on the very mixup'd input the student sees, no label "
           "term", loss=lambda ctx, hp: dict(mixup=1.0, w_ce=0.0, w_kd=1.0,
                                             kd_temperature=1.0),
           needs_teacher="logits", control="mixup", compare=("kd",)),
    Method("spectral-mixup", "spectral-codebook head, mixup with hard "
           "labels (the control of soft-assignment function matching)",
           **_scaled(head="codebook", codes="spectral", needs_kernel=True,
                     loss=lambda ctx, hp: dict(mixup=1.0), control="mixup")),
    Method("sa-function-matching", "spectral-codebook student, function "
           "matching by soft_assignment_distillation_loss at τ = 1 to a "
           "spectral-codebook teacher on the same mixup'd input, no label "
           "term", **_scaled(head="codebook", codes="spectral",
                             needs_kernel=True, needs_teacher="codebook",
                             loss=lambda ctx, hp: dict(
                                 mixup=1.0, w_ce=0.0, w_sa=1.0,
                                 kd_temperature=1.0),
                             control="spectral-mixup",
                             compare=("function-matching",))),
)}


def describe(hp: dict) -> str:
  """``lr 0.01, scale 8`` for a report."""
  return ", ".join(f"{k} {v:g}" for k, v in hp.items())

"""spectral_targets: fixed-target heads and spectral distillation for JAX.

A label kernel S (C x C: how similar class i is to class j) is diagonalised;
its top-d eigenmodes give a codebook, one unit vector per class, whose Gram
matrix best approximates S. The codebook becomes a fixed classifier head,
soft training targets, and the frame in which a teacher's dark knowledge is
distilled. Every name below is importable from ``spectral_targets`` (the two
Flax modules load flax on first use); ``help(spectral_targets.NAME)`` shows
its math, shapes and an example. The documentation (``docs/``) groups the
reference the same way.

Kernels
  flat, blocks, graded, double_center, from_hierarchy, load_hierarchy,
  cifar100_hierarchy, random_hierarchy, from_distances, from_confusion,
  from_class_means, build_tree, Tree, OnlineKernel
Kernel operators (kernels too large to form)
  KernelOperator, TreeKernel, LowRankKernel, low_rank_kernel
Spectral machinery
  spectrum, eigenmodes, top_eigenmodes, TopEigenmodes, ConvergenceWarning,
  spectral_codebook, separating_dimension, gram_error, alignment,
  procrustes, coherence, welch_bound, refresh_codebook
Heads, targets, losses
  nnx.CodebookHead, nnx.Codebook, linen.CodebookHead, linen.FrozenArray,
  codebook_logits, kernel_soft_labels, cosine_regression_loss,
  similarity_regression_loss, hierarchical_cross_entropy
Distillation and dark knowledge
  distillation_loss, decoupled_distillation_loss, soft_assignment,
  soft_assignment_distillation_loss, dark_knowledge_mass, entropy
Diagnostics
  class_covariances, ClassStatistics, collapse_metrics,
  collapse_metrics_from_statistics, CollapseMetrics
Evaluation
  expected_calibration_error, mistake_severity, hierarchical_distance_at_k,
  fit_temperature
Vocabulary-scale losses (never forming the N x V logits)
  fused_linear_cross_entropy, fused_linear_distillation_loss,
  top_k_distillation_loss
Ordinal and expected-cost
  expected_costs, expected_cost_predictions, posterior_median, coral_loss,
  coral_probabilities, coral_predictions, nnx.CoralHead,
  mean_absolute_error, quadratic_weighted_kappa

Subpackages loaded on request: ``spectral_targets.render`` (the animations,
the ``viz`` extra) and ``spectral_targets.bench`` (the benchmark behind
``spectral-targets bench``, the ``bench`` extra).
"""

from typing import TYPE_CHECKING

from spectral_targets._calibration import fit_temperature as fit_temperature
from spectral_targets._class_statistics import ClassStatistics as ClassStatistics
from spectral_targets._class_statistics import class_covariances as class_covariances
from spectral_targets._codebook import separating_dimension as separating_dimension
from spectral_targets._codebook import spectral_codebook as spectral_codebook
from spectral_targets._collapse import CollapseMetrics as CollapseMetrics
from spectral_targets._collapse import collapse_metrics as collapse_metrics
from spectral_targets._collapse import collapse_metrics_from_statistics as collapse_metrics_from_statistics
from spectral_targets._coral import coral_loss as coral_loss
from spectral_targets._coral import coral_predictions as coral_predictions
from spectral_targets._coral import coral_probabilities as coral_probabilities
from spectral_targets._dark_knowledge import dark_knowledge_mass as dark_knowledge_mass
from spectral_targets._dark_knowledge import entropy as entropy
from spectral_targets._distillation import decoupled_distillation_loss as decoupled_distillation_loss
from spectral_targets._distillation import distillation_loss as distillation_loss
from spectral_targets._distillation import soft_assignment_distillation_loss as soft_assignment_distillation_loss
from spectral_targets._eigensolvers import ConvergenceWarning as ConvergenceWarning
from spectral_targets._eigensolvers import TopEigenmodes as TopEigenmodes
from spectral_targets._eigensolvers import top_eigenmodes as top_eigenmodes
from spectral_targets._fused_cross_entropy import fused_linear_cross_entropy as fused_linear_cross_entropy
from spectral_targets._fused_distillation import fused_linear_distillation_loss as fused_linear_distillation_loss
from spectral_targets._evaluation import expected_calibration_error as expected_calibration_error
from spectral_targets._evaluation import hierarchical_distance_at_k as hierarchical_distance_at_k
from spectral_targets._evaluation import mistake_severity as mistake_severity
from spectral_targets._expected_cost import expected_cost_predictions as expected_cost_predictions
from spectral_targets._expected_cost import expected_costs as expected_costs
from spectral_targets._expected_cost import posterior_median as posterior_median
from spectral_targets._hierarchical_loss import hierarchical_cross_entropy as hierarchical_cross_entropy
from spectral_targets._kernels import blocks as blocks
from spectral_targets._kernels import double_center as double_center
from spectral_targets._kernels import flat as flat
from spectral_targets._kernels import from_class_means as from_class_means
from spectral_targets._kernels import from_confusion as from_confusion
from spectral_targets._kernels import from_distances as from_distances
from spectral_targets._kernels import graded as graded
from spectral_targets._logits import codebook_logits as codebook_logits
from spectral_targets._online_kernel import OnlineKernel as OnlineKernel
from spectral_targets._operators import KernelOperator as KernelOperator
from spectral_targets._ordinal_metrics import mean_absolute_error as mean_absolute_error
from spectral_targets._ordinal_metrics import quadratic_weighted_kappa as quadratic_weighted_kappa
from spectral_targets._operators import LowRankKernel as LowRankKernel
from spectral_targets._operators import TreeKernel as TreeKernel
from spectral_targets._operators import low_rank_kernel as low_rank_kernel
from spectral_targets._refresh import refresh_codebook as refresh_codebook
from spectral_targets._regression import cosine_regression_loss as cosine_regression_loss
from spectral_targets._regression import similarity_regression_loss as similarity_regression_loss
from spectral_targets._soft_assignment import soft_assignment as soft_assignment
from spectral_targets._spectral import alignment as alignment
from spectral_targets._spectral import coherence as coherence
from spectral_targets._spectral import eigenmodes as eigenmodes
from spectral_targets._spectral import gram_error as gram_error
from spectral_targets._spectral import procrustes as procrustes
from spectral_targets._spectral import spectrum as spectrum
from spectral_targets._spectral import welch_bound as welch_bound
from spectral_targets._targets import kernel_soft_labels as kernel_soft_labels
from spectral_targets._top_k_distillation import top_k_distillation_loss as top_k_distillation_loss
from spectral_targets._taxonomies import cifar100_hierarchy as cifar100_hierarchy
from spectral_targets._taxonomies import load_hierarchy as load_hierarchy
from spectral_targets._taxonomies import random_hierarchy as random_hierarchy
from spectral_targets._tree import Tree as Tree
from spectral_targets._tree import build_tree as build_tree
from spectral_targets._tree import from_hierarchy as from_hierarchy

__version__ = "0.1.0"

if TYPE_CHECKING:
  # Seen by type checkers as attributes, and every other name stays an
  # error there (a module __getattr__ would type any name as a module).
  from spectral_targets import linen as linen
  from spectral_targets import nnx as nnx
else:

  def __getattr__(name: str) -> object:
    # The Flax heads import flax; load them on first use only.
    if name in ("nnx", "linen"):
      import importlib
      return importlib.import_module(f"spectral_targets.{name}")
    raise AttributeError(
        f"module 'spectral_targets' has no attribute {name!r}")

# The public names are the re-exports above (`from ._m import x as x`) and
# the two Flax modules: one place to add a name. The documentation's
# coverage check (docs/_ext/coverage.py) reads this list.
__all__ = sorted(
    {name for name in globals()
     if not name.startswith("_") and name != "TYPE_CHECKING"}
    | {"linen", "nnx"})


def __dir__() -> list[str]:
  return [*__all__, "__version__"]

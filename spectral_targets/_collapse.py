"""Neural-collapse metrics (Papyan, Han & Donoho, 2020) from class statistics."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from spectral_targets import _numerics as num
from spectral_targets import _validation as v
from spectral_targets._class_statistics import ClassStatistics, _check_inputs
from spectral_targets._jit import jit

#: Σ_B eigenvalues above this fraction of the largest count as modes.
PROTOTYPE_MODE_RTOL = 1e-3


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["nc1", "nc2", "nc2_equinorm", "nc3", "nc4",
                 "prototype_modes", "num_present", "between_spectrum",
                 "within_spectrum"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class CollapseMetrics:
  """Neural-collapse metrics; a pytree, so it can leave a ``jit``.

  Attributes:
    nc1: tr(Σ_W Σ_B⁺)/K, within-class variability (→ 0 under collapse).
    nc2: ‖G/‖G‖_F − (I − 11ᵀ/K)/√(K−1)‖_F for the Gram matrix G of the
      normalised centred class means (→ 0 for a simplex ETF).
    nc2_equinorm: coefficient of variation of the centred class-mean norms.
    nc3: ‖W/‖W‖_F − M/‖M‖_F‖_F, classifier vs centred means (None without a
      classifier).
    nc4: fraction of samples where the classifier's argmax agrees with the
      nearest-class-centre rule (→ 1; None without classifier or samples).
    prototype_modes: Σ_B eigenvalues above ``PROTOTYPE_MODE_RTOL`` (1e-3)
      times the largest; at most K − 1.
    num_present: K, the number of classes with at least one sample.
    between_spectrum: (D,) eigenvalues of Σ_B, descending.
    within_spectrum: (D,) eigenvalues of Σ_W, descending.
  """
  nc1: jax.Array
  nc2: jax.Array
  nc2_equinorm: jax.Array
  nc3: jax.Array | None
  nc4: jax.Array | None
  prototype_modes: jax.Array
  num_present: jax.Array
  between_spectrum: jax.Array
  within_spectrum: jax.Array


def collapse_metrics(features: jax.typing.ArrayLike,
                     labels: jax.typing.ArrayLike, num_classes: int, *,
                     classifier: jax.typing.ArrayLike | None = None,
                     bias: jax.typing.ArrayLike | None = None
                     ) -> CollapseMetrics:
  r"""Neural-collapse metrics NC1–NC4 of features and a classifier.

  With class means :math:`\mu_c`, global mean :math:`\mu`, centred means
  :math:`M = [\mu_c - \mu]_c` and K classes present:

  .. math::
    \mathrm{NC1} = \tfrac{1}{K}\operatorname{tr}(\Sigma_W \Sigma_B^{+}),\quad
    \mathrm{NC2} = \Big\lVert \frac{G}{\lVert G\rVert_F}
      - \frac{I - \tfrac{1}{K}\mathbf{1}\mathbf{1}^\top}{\sqrt{K-1}}
      \Big\rVert_F,\ G_{cd} = \cos(M_c, M_d),\quad
    \mathrm{NC3} = \Big\lVert \frac{W}{\lVert W\rVert_F}
      - \frac{M}{\lVert M\rVert_F}\Big\rVert_F

  and NC4 the agreement of :math:`\arg\max_c (W z + b)_c` with
  :math:`\arg\min_c \lVert z - \mu_c\rVert`. NC1 and NC3 are those of
  Papyan et al. (2020) and Zhu et al. (2021); NC2 is their ETF distance
  taken on the *normalised* centred means, so that it measures angles only,
  with the norms' spread reported separately (``nc2_equinorm``). Classes
  with no samples are left out everywhere (K counts the others); fewer
  than two present classes is a ``ValueError``. Jit-able with
  ``num_classes`` static (the presence check is then skipped).

  **Scale and undefined values.** Every metric but the two spectra is
  invariant to a positive rescaling of the features, and is computed so
  (features and class means are divided by a power of two near their
  largest magnitude, which is exact): features of size 1e20 or 1e-20 in
  float32 give the metrics of features of size 1; the spectra are scaled
  back (and overflow to inf where their true values do). bf16/f16 inputs
  are computed in float32. A metric that is undefined is NaN, never a
  number: NC1 and ``nc2_equinorm`` when all class means coincide
  (Σ_B = 0, to rounding), NC2 when a present
  class's centred mean is 0, NC3 for an all-zero classifier (or zero
  centred means), NC4 when a score or a distance is NaN (e.g. a NaN in the
  classifier or the bias). A complex classifier raises ``TypeError``.

  Args:
    features: (N, D) features.
    labels: (N,) integer labels in [0, C).
    num_classes: C.
    classifier: optional (C, D) last-layer weights (or codebook).
    bias: optional (C,) last-layer bias.

  Returns:
    A ``CollapseMetrics``.

  Examples:
    >>> import jax, jax.numpy as jnp, spectral_targets as st
    >>> etf = st.spectral_codebook(st.flat(4), 3)          # simplex means
    >>> y = jnp.repeat(jnp.arange(4), 50)
    >>> z = etf[y] + 1e-3 * jax.random.normal(jax.random.key(0), (200, 3))
    >>> m = st.collapse_metrics(z, y, 4, classifier=etf)
    >>> bool(m.nc1 < 1e-4), bool(m.nc2 < 1e-2), float(m.nc4)
    (True, True, 1.0)

  References:
    Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal
    phase of deep learning training", PNAS 2020. Zhu et al., "A Geometric
    Analysis of Neural Collapse with Unconstrained Features", NeurIPS 2021.
  """
  Z, y, C = _check_inputs(features, labels, num_classes)
  # Scale-free metrics from exactly rescaled features: nothing overflows or
  # underflows in the statistics (features x 1e20 or x 1e-20 in float32);
  # the spectra, which carry units, are scaled back.
  s = num.power_of_two_scale(Z)
  stats = ClassStatistics.zeros(C, Z.shape[1], Z.dtype).update(Z / s, y)
  _check_present(stats)
  W, b = _check_classifier(classifier, bias, C, Z.shape[1])
  nc4 = None if W is None else _nc4(Z / s, stats, W,
                                    None if b is None else b / s)
  m = _from_statistics(stats, W)
  return dataclasses.replace(
      m, nc4=nc4, between_spectrum=m.between_spectrum * s * s,
      within_spectrum=m.within_spectrum * s * s)


def collapse_metrics_from_statistics(
    stats: ClassStatistics, *,
    classifier: jax.typing.ArrayLike | None = None) -> CollapseMetrics:
  """``collapse_metrics`` from accumulated ``ClassStatistics``.

  Everything but NC4, which needs the samples (``nc4`` is None).

  Examples:
    >>> import jax.numpy as jnp, spectral_targets as st
    >>> stats = st.ClassStatistics.zeros(2, 2).update(
    ...     jnp.array([[1., 0.], [-1., 0.]]), jnp.array([0, 1]))
    >>> float(st.collapse_metrics_from_statistics(stats).nc1)
    0.0
  """
  if not isinstance(stats, ClassStatistics):
    raise TypeError(f"stats must be a ClassStatistics, got {type(stats)}.")
  _check_present(stats)
  W, _ = _check_classifier(classifier, None, stats.num_classes, stats.dim)
  return _from_statistics(stats, W)


def _check_present(stats: ClassStatistics) -> None:
  counts = stats.counts
  if isinstance(counts, jax.core.Tracer):
    return
  K = int((counts > 0).sum())
  if K < 2:
    raise ValueError(f"neural-collapse metrics need samples of at least 2 "
                     f"classes; got {K}.")


def _check_classifier(classifier: object, bias: object, C: int, D: int
                      ) -> tuple[jax.Array | None, jax.Array | None]:
  if classifier is None:
    if bias is not None:
      raise ValueError("bias needs a classifier.")
    return None, None
  W = v.as_float_array(classifier, "classifier")
  v.check_shape(W, (C, D), "classifier")
  b = None
  if bias is not None:
    b = v.as_float_array(bias, "bias")
    v.check_shape(b, (C,), "bias")
    b = b.astype(v.compute_dtype(b.dtype))
  return W.astype(v.compute_dtype(W.dtype)), b


@jit
def _from_statistics(stats: ClassStatistics, W: jax.Array | None
                     ) -> CollapseMetrics:
  # One rescaling rule for the scale-free parts: the class means divided by
  # a power of two near their largest magnitude (the scatter by its
  # square), so half-precision or extreme-scale statistics neither fail in
  # LAPACK nor overflow; the spectra are scaled back.
  dt = v.compute_dtype(stats.means.dtype)
  s = num.power_of_two_scale(stats.means.astype(dt))
  stats = ClassStatistics(stats.counts, stats.means.astype(dt) / s,
                          stats.scatter.astype(dt) / s / s)
  between, within = stats.covariances()
  present = stats.counts > 0
  K = present.sum()
  # One eigendecomposition of Σ_B gives both its spectrum and Σ_B⁺ (the
  # cutoff of jnp.linalg.pinv: 10 · D · eps · max|λ|), and the one of Σ_W
  # waits for it: on CPU, two batched LAPACK calls running at once (this
  # function under vmap) can each park one thread of a two-thread pool
  # waiting for work only the other thread could run, a deadlock of
  # jaxlib's batched eigh.
  lam_b, U_b = jnp.linalg.eigh(between)
  cutoff = (10 * between.shape[0] * jnp.finfo(between.dtype).eps
            * jnp.max(jnp.abs(lam_b)))
  inverse = jnp.where(jnp.abs(lam_b) > cutoff,
                      1 / jnp.where(lam_b == 0, 1, lam_b), 0)
  # tr(Σ_W Σ_B⁺) = Σ_i (u_iᵀ Σ_W u_i) / λ_i over the kept modes; with
  # Σ_B = 0 (all class means equal) the ratio is undefined: NaN.
  nc1 = jnp.sum(inverse * jnp.sum(U_b * (within @ U_b), axis=0)) / K
  within, _ = jax.lax.optimization_barrier((within, lam_b))

  n = stats.counts.astype(stats.means.dtype)
  mu = (n @ stats.means) / jnp.maximum(n.sum(), 1)
  M = jnp.where(present[:, None], stats.means - mu, 0)
  # NC2 and NC3 are scale-free: norms rescale before squaring.
  norms = num.norm(num.rescale(M), axis=1)
  # A centred mean within rounding of 0 (the global mean is rounded) has no
  # direction; when every one is, the class means coincide and Σ_B = 0.
  rounding = 8 * jnp.finfo(M.dtype).eps * num.norm(stats.means, axis=1)
  no_direction = present & (num.norm(M, axis=1) <= rounding)
  coincide = jnp.all(no_direction | ~present)
  nc1 = jnp.where(coincide, jnp.nan, nc1)
  G = num.unit_rows(M) @ num.unit_rows(M).T
  pair = present[:, None] & present[None, :]
  Kf = K.astype(G.dtype)
  eye = jnp.eye(G.shape[0], dtype=G.dtype)
  etf = jnp.where(pair, (eye - 1 / Kf) / jnp.sqrt(jnp.maximum(Kf - 1, 1)), 0)
  # A present class whose centred mean is 0 has no direction: its cosines,
  # and NC2, are undefined.
  nc2 = jnp.where(jnp.any(no_direction), jnp.nan,
                  jnp.linalg.norm(num.unit(G, None) - etf))
  present_norms = jnp.where(present, norms, 0)
  mean_norm = present_norms.sum() / Kf
  std_norm = jnp.sqrt(jnp.where(present, (norms - mean_norm) ** 2, 0).sum()
                      / Kf)
  equinorm = jnp.where(coincide, jnp.nan, std_norm / mean_norm)

  nc3: jax.Array | None = None
  if W is not None:
    Wp = jnp.where(present[:, None], W, 0)
    nc3 = jnp.linalg.norm(num.unit(Wp, None) - num.unit(M, None))
    # W/‖W‖ or M/‖M‖ of a zero matrix is undefined (unit() would give 0).
    zero = (num.norm(Wp, None) == 0) | coincide
    nc3 = jnp.where(zero, jnp.nan, nc3)

  spec_b = lam_b[::-1]
  spec_w = jnp.linalg.eigvalsh(within)[::-1]
  modes = jnp.sum(spec_b > PROTOTYPE_MODE_RTOL * spec_b[0])
  return CollapseMetrics(nc1=nc1, nc2=nc2, nc2_equinorm=equinorm, nc3=nc3,
                         nc4=None, prototype_modes=modes, num_present=K,
                         between_spectrum=spec_b * s * s,
                         within_spectrum=spec_w * s * s)


@jit
def _nc4(Z: jax.Array, stats: ClassStatistics, W: jax.Array,
         b: jax.Array | None) -> jax.Array:
  scores = Z @ W.T + (0 if b is None else b)
  # Nearest class centre via ‖z − μ_c‖² = ‖μ_c‖² − 2 zᵀμ_c + const; absent
  # classes are never nearest.
  d2 = jnp.sum(stats.means**2, 1) - 2 * Z @ stats.means.T
  d2 = jnp.where(stats.counts > 0, d2, jnp.inf)
  agree = jnp.mean(jnp.argmax(scores, -1) == jnp.argmin(d2, -1))
  # argmax ranks a NaN somewhere; a score or distance that is NaN makes the
  # agreement undefined, never a finite fraction.
  return jnp.where(jnp.isnan(scores).any() | jnp.isnan(d2).any(), jnp.nan,
                   agree)


"""Post-hoc calibration: temperature scaling (Guo et al., 2017)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spectral_targets import _evaluation
from spectral_targets import _validation as v
from spectral_targets._jit import jit

# The search in u = log(1/τ) (logits scaled to unit spread) stays within
# this bound: beyond it the softmax is one-hot or uniform to float precision.
_U_LIMIT = 60.0


def fit_temperature(logits: jax.typing.ArrayLike,
                    labels: jax.typing.ArrayLike, *,
                    max_iter: int = 100, tol: float = 1e-6) -> jax.Array:
  r"""The temperature that minimises the negative log-likelihood (Guo et al.).

  .. math::
    \tau^\star = \arg\min_{\tau > 0}\ \mathrm{NLL}(\tau), \qquad
    \mathrm{NLL}(\tau) = \frac{1}{N}\sum_i \Big[
      \operatorname{lse}(z_i / \tau) - z_{i y_i} / \tau \Big].

  Fit on held-out (validation) logits, then divide the test logits by τ:
  accuracy is unchanged, confidence is calibrated. In :math:`\beta = 1/\tau`
  the NLL is convex, with derivative

  .. math::
    g(\beta) = \frac{1}{N}\sum_i \big(\mathbb{E}_{p_i}[z_i] - z_{i y_i}\big),
    \qquad g'(\beta) = \frac{1}{N}\sum_i \operatorname{Var}_{p_i}[z_i] \ge 0,
    \qquad p_i = \operatorname{softmax}(\beta z_i),

  non-decreasing from :math:`g(0) = \frac1N\sum_i(\bar z_i - z_{iy_i})` to
  :math:`g(\infty) = \frac1N\sum_i(\max_c z_{ic} - z_{iy_i})`. So a finite
  minimiser exists exactly when :math:`g(0) < 0 < g(\infty)`: the true
  class beats the average logit on average, and at least one example is
  misclassified. The root of g is found in :math:`u = \log\beta` (logits
  first divided by their largest row spread, so their scale does not
  matter): a bracket is grown geometrically from τ = 1, then
  safeguarded Newton steps (a bisection whenever a step would leave the
  bracket) shrink it, one pass over the data per step. Converges in a few
  steps; bf16/f16 logits are computed in float32.

  Works under ``jit`` (``max_iter``/``tol`` static). Eagerly, a problem
  without a finite minimiser raises ``ValueError`` (the message says which
  limit the NLL tends to); under ``jit`` it returns NaN, as do non-finite
  logits.

  Args:
    logits: (N, C) held-out logits, N >= 1, C >= 2.
    labels: (N,) integer labels in [0, C).
    max_iter: cap on Newton/bisection steps.
    tol: stop when a step or the bracket in :math:`\log\tau` is below it.

  Returns:
    τ, a 0-d array (float32 or wider).

  Examples:
    >>> import jax, spectral_targets as st
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> honest = 2.0 * jax.random.normal(k1, (4000, 10))
    >>> y = jax.random.categorical(k2, honest)    # labels drawn from them
    >>> logits = 3.0 * honest                     # an over-confident model
    >>> tau = st.fit_temperature(logits, y)
    >>> round(float(tau), 2)
    3.01
    >>> ece = lambda z: float(st.expected_calibration_error(
    ...     jax.nn.softmax(z), y))
    >>> print(f"ECE {ece(logits):.3f} -> {ece(logits / tau):.3f}")
    ECE 0.2... -> 0.0...

  References:
    Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
    Networks", ICML 2017.
  """
  z, y = _evaluation._check(logits, labels, "logits")
  if z.shape[1] < 2:
    raise ValueError(f"logits must have at least 2 classes, got shape "
                     f"{z.shape}.")
  max_iter = v.check_int(max_iter, "max_iter", minimum=1)
  v.check_positive(tol, "tol")
  concrete = v.is_concrete(z)
  if concrete:
    v.check_finite(z, "logits")
  tau, status = _fit(z, y, max_iter, float(tol))
  if concrete and int(status) != _SOLVED:
    raise ValueError(_FAILURES[int(status)])
  return tau


_SOLVED, _TO_ZERO, _TO_INFINITY, _NO_SPREAD, _OUT_OF_RANGE = range(5)
_FAILURES = {
    _TO_ZERO: "no finite temperature minimises the NLL: every example is "
              "classified correctly, so the NLL keeps falling as τ → 0. "
              "Fit on held-out data the model gets wrong sometimes.",
    _TO_INFINITY: "no finite temperature minimises the NLL: on average the "
                  "true class's logit is not above the mean logit, so the "
                  "NLL keeps falling as τ → ∞ (uniform predictions). Check "
                  "that labels and logits match.",
    _NO_SPREAD: "every row of logits is constant: the temperature has no "
                "effect and is undefined.",
    _OUT_OF_RANGE: f"the NLL's minimiser lies beyond τ = s·exp(±{_U_LIMIT:g}) "
                   "(s the largest spread of a row of logits), where the "
                   "softmax is one-hot or uniform to float precision.",
}


def _slope(z: jax.Array, y: jax.Array, u: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
  """g(u) = dNLL/dβ and dg/du = β·mean Var_p(z) at β = exp(u)."""
  beta = jnp.exp(u)
  p = jax.nn.softmax(beta * z, axis=1)
  mean = jnp.sum(p * z, axis=1)
  var = jnp.sum(p * (z - mean[:, None]) ** 2, axis=1)
  zy = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
  return jnp.mean(mean - zy), beta * jnp.mean(var)


_Bracket = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


@jit(static_argnums=(2, 3))
def _fit(z: jax.Array, y: jax.Array, max_iter: int, tol: float
         ) -> tuple[jax.Array, jax.Array]:
  spread = jnp.max(jnp.max(z, axis=1) - jnp.min(z, axis=1))
  z = z / jnp.where(spread > 0, spread, 1)
  zy = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
  at_zero = jnp.mean(jnp.mean(z, axis=1) - zy)
  at_infinity = jnp.mean(jnp.max(z, axis=1) - zy)
  status = jnp.select(
      [~jnp.isfinite(spread), spread == 0, at_zero >= 0, at_infinity <= 0],
      [_SOLVED, _NO_SPREAD, _TO_INFINITY, _TO_ZERO], _SOLVED)

  def slope(u: jax.Array) -> jax.Array:
    return _slope(z, y, u)[0]

  # Grow a bracket [lo, hi] with g(lo) < 0 < g(hi) from u = 0 (τ = spread).
  def grow(state: _Bracket) -> _Bracket:
    lo, hi, g_lo, g_hi, step = state
    lo = jnp.where(g_lo < 0, lo, jnp.maximum(lo - step, -_U_LIMIT))
    hi = jnp.where(g_hi > 0, hi, jnp.minimum(hi + step, _U_LIMIT))
    return lo, hi, slope(lo), slope(hi), 2 * step

  def bracketed(g_lo: jax.Array, g_hi: jax.Array) -> jax.Array:
    return (g_lo < 0) & (g_hi > 0)

  def growing(state: _Bracket) -> jax.Array:
    lo, hi, g_lo, g_hi, _ = state
    inside = (lo > -_U_LIMIT) & (hi < _U_LIMIT)
    return (status == _SOLVED) & inside & ~bracketed(g_lo, g_hi)

  zero = jnp.zeros_like(spread)
  g0 = slope(zero)
  lo, hi, g_lo, g_hi, _ = jax.lax.while_loop(
      growing, grow, (zero, zero, g0, g0, jnp.ones_like(spread)))
  status = jnp.where((status == _SOLVED) & ~bracketed(g_lo, g_hi)
                     & jnp.isfinite(g0), _OUT_OF_RANGE, status)

  # Safeguarded Newton on g(u) = 0 inside the bracket (rtsafe).
  def newton(state: _Bracket) -> _Bracket:
    k, u, lo, hi, _ = state
    g, dg = _slope(z, y, u)
    lo = jnp.where(g <= 0, u, lo)
    hi = jnp.where(g >= 0, u, hi)
    step = g / jnp.where(dg > 0, dg, 1)
    trial = u - step
    ok = (dg > 0) & (trial > lo) & (trial < hi)
    new = jnp.where(ok, trial, (lo + hi) / 2)
    return k + 1, new, lo, hi, jnp.abs(new - u)

  def running(state: _Bracket) -> jax.Array:
    k, _, lo, hi, moved = state
    return (k < max_iter) & (moved > tol) & (hi - lo > tol)

  start = (jnp.zeros((), jnp.int32), (lo + hi) / 2, lo, hi,
           jnp.full_like(spread, jnp.inf))
  _, u, _, _, _ = jax.lax.while_loop(running, newton, start)
  tau = spread / jnp.exp(u)
  bad = (status != _SOLVED) | ~jnp.isfinite(tau)
  return jnp.where(bad, jnp.nan, tau), status

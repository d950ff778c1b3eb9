"""How a win is decided: paired differences over seeds with 95% intervals.

Seeds vary the data and the initialisation and are shared across methods,
so method A and method B on seed s saw the same data: their difference on
that seed is one paired observation. The benchmark reports the mean of the
paired differences with a two-sided 95% Student-t interval (n − 1 degrees of
freedom), and calls a difference a win or a loss only where that interval
excludes 0; ``verdict`` reads that as "better" or "worse" by the
metric's direction (``DIRECTION``).
"""

from __future__ import annotations

import math

import numpy as np


def summary(values) -> dict:
  """Mean and sample standard deviation (ddof = 1; None for one value) of
  finite per-seed values."""
  x = np.asarray(values, np.float64)
  if x.size == 0 or not np.isfinite(x).all():
    return {"mean": None, "std": None, "n": int(x.size)}
  return {"mean": float(x.mean()),
          "std": float(x.std(ddof=1)) if x.size > 1 else None,
          "n": int(x.size)}


def paired_difference(a, b, *, confidence: float = 0.95) -> dict:
  """Mean of ``a − b`` over paired seeds with its Student-t interval.

  Returns ``{"mean", "low", "high", "n", "verdict"}`` where verdict is
  "higher" / "lower" when the interval excludes 0 and "tie" otherwise; the
  interval is None (verdict "n/a") with fewer than two seeds or a
  non-finite value.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"paired values need equal 1-D shapes, got {a.shape} "
                     f"and {b.shape}")
  d = a - b
  n = d.size
  if n == 0 or not np.isfinite(d).all():
    return {"mean": None, "low": None, "high": None, "n": int(n),
            "verdict": "n/a"}
  mean = float(d.mean())
  if n < 2:
    return {"mean": mean, "low": None, "high": None, "n": 1,
            "verdict": "n/a"}
  half = t_quantile(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
  low, high = mean - half, mean + half
  verdict = "higher" if low > 0 else "lower" if high < 0 else "tie"
  return {"mean": mean, "low": float(low), "high": float(high), "n": int(n),
          "verdict": verdict}


def t_quantile(p: float, df: int) -> float:
  """The p-quantile of Student's t with ``df`` degrees of freedom."""
  from scipy import stats  # scikit-learn (the bench extra) brings SciPy
  return float(stats.t.ppf(p, df))


#: Direction of each metric: +1 higher is better, −1 lower is better, 0
#: neither (a diagnostic). hdist@k is lower-better; anything else higher.
DIRECTION = {"accuracy": +1, "severity": -1, "nll": -1, "ece": -1,
             "ece_calibrated": -1, "nc1": -1, "between_condition": 0,
             "step_time_ratio": -1, "mae": -1, "median_mae": -1, "qwk": +1}


def direction(metric: str) -> int:
  """+1 where higher is better, −1 where lower is better, 0 neither."""
  metric = metric.removeprefix("crm_")  # a metric under CRM's decision
  return -1 if metric.startswith("hdist") else DIRECTION.get(metric, +1)


def arrow(metric: str) -> str:
  """↑ / ↓ / nothing: the metric's direction in a table header."""
  return {+1: "↑", -1: "↓"}.get(direction(metric), "")


def verdict(d, metric: str) -> str:
  """"better", "worse" or "tie" (or "n/a") of a paired difference ``d``
  (``paired_difference``'s dict) of ``metric``."""
  if d is None or d.get("verdict") not in ("higher", "lower"):
    return "n/a" if d is None or d.get("low") is None else "tie"
  return ("better" if (d["verdict"] == "higher") == (direction(metric) > 0)
          else "worse")

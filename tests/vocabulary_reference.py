"""Naive references for the fused vocabulary-scale losses: the full (N, V)
logits, then the textbook formula (float64 when x64 is enabled)."""

import jax
import jax.numpy as jnp


def cross_entropy(hidden, weight, labels, bias=None, smoothing=0.0):
  logits = hidden @ weight.T + (0 if bias is None else bias)
  V = weight.shape[0]
  target = (1 - smoothing) * jax.nn.one_hot(labels, V) + smoothing / V
  return -jnp.sum(target * jax.nn.log_softmax(logits), -1)


def _kl(lp, lq):
  p = jnp.exp(lp)
  return jnp.sum(jnp.where(p > 0, p * (lp - jnp.where(p > 0, lq, 0)), 0), -1)


def divergence(s, t, tau, kind, beta=0.5):
  """τ²·D(softmax(t/τ), softmax(s/τ)) from logits, textbook formulas."""
  lp = jax.nn.log_softmax(t / tau)
  lq = jax.nn.log_softmax(s / tau)
  if kind == "forward":
    d = _kl(lp, lq)
  elif kind == "reverse":
    d = _kl(lq, lp)
  else:
    lm = jnp.logaddexp(jnp.log(beta) + lp, jnp.log1p(-beta) + lq)
    d = beta * _kl(lp, lm) + (1 - beta) * _kl(lq, lm)
  return tau**2 * d

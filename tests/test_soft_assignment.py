"""Soft assignment (``_soft_assignment``): one meaning of τ for the head and
the soft assignment."""

import jax
import numpy as np
import pytest

import spectral_targets as st

RNG = np.random.default_rng(14)
B, C = 4, 6
Z_S = RNG.normal(size=(B, 3)).astype(np.float32)
Z_T = RNG.normal(size=(B, 3)).astype(np.float32)
CODES = RNG.normal(size=(C, 3)).astype(np.float32)


def test_soft_assignment_scale_matches_the_head():
  tau, scale = 2.0, 16.0
  head = st.codebook_logits(Z_S, CODES, scale=scale)
  np.testing.assert_allclose(
      st.soft_assignment(Z_S, CODES, temperature=tau, scale=scale),
      jax.nn.softmax(head / tau), atol=1e-6)
  np.testing.assert_allclose(
      st.soft_assignment_distillation_loss(Z_S, Z_T, CODES, temperature=tau,
                                           scale=scale),
      st.distillation_loss(head, st.codebook_logits(Z_T, CODES, scale=scale),
                           temperature=tau), rtol=1e-5)
  # Invariant to the features' norm, unlike the raw default.
  np.testing.assert_allclose(
      st.soft_assignment(7 * Z_S, CODES, scale=scale),
      st.soft_assignment(Z_S, CODES, scale=scale), atol=1e-6)
  with pytest.raises(ValueError, match="scale must be a positive"):
    st.soft_assignment(Z_S, CODES, scale=0.0)

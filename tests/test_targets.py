"""Kernel soft labels (``_targets``): the required alpha, and a mask that
drops the label."""

import numpy as np
import pytest

import spectral_targets as st
import reference as ref


def test_kernel_soft_labels_alpha_is_required_and_small_alpha_is_mostly_one_hot():
  with pytest.raises(TypeError, match="alpha"):
    st.kernel_soft_labels(np.array([0]), st.graded(10, 2.0))
  q = np.asarray(st.kernel_soft_labels(np.arange(10), st.graded(10, 2.0),
                                       alpha=0.1))
  assert np.all(np.diag(q) >= 0.9)
  np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_kernel_soft_labels_with_the_label_masked_out(alpha):
  S = np.asarray(st.graded(6, 2.0), np.float64)
  where = np.array([[False, True, True, False, True, True],
                    [True, True, False, True, True, True]])
  y = np.array([0, 1])
  q = np.asarray(st.kernel_soft_labels(y, S, alpha=alpha, temperature=0.5,
                                       where=where))
  np.testing.assert_allclose(q.sum(1), 1, atol=1e-6)
  # Row 0 lost its label: the kernel part alone, over the included classes.
  keep = where[0]
  np.testing.assert_allclose(q[0, keep], ref.softmax(S[0, keep] / 0.5),
                             atol=1e-6)
  assert np.all(q[0, ~keep] == 0)
  # Row 1 kept it: the usual mixture, renormalised over the included ones.
  keep = where[1]
  want = alpha * ref.softmax(S[1, keep] / 0.5) + (1 - alpha) * (
      np.arange(6)[keep] == 1)
  np.testing.assert_allclose(q[1, keep], want, atol=1e-6)

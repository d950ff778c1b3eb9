"""Expected-cost decisions (CRM) and the posterior median against float64
brute force: every candidate class's cost summed in a loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as hs
from jax.test_util import check_grads

import spectral_targets as st


def brute_force_costs(p, D):
  p, D = np.asarray(p, np.float64), np.asarray(D, np.float64)
  N, C = p.shape
  R = np.zeros((N, C))
  for i in range(N):
    for k in range(C):
      R[i, k] = sum(p[i, j] * D[j, k] for j in range(C))
  return R


def brute_force_decisions(p, D):
  """The lowest index among the exact minima of the float64 costs."""
  R = brute_force_costs(p, D)
  return np.array([min(k for k in range(R.shape[1]) if r[k] == r.min())
                   for r in R])


def brute_force_median(p):
  """The smallest k whose cumulative mass reaches half, by a loop."""
  out = []
  for row in np.asarray(p, np.float64):
    total, running = row.sum(), 0.0
    for k, pk in enumerate(row):
      running += pk
      if running >= total / 2:
        out.append(k)
        break
  return np.array(out)


def dirichlet(rng, N, C):
  return rng.dirichlet(np.full(C, 0.5), size=N)


def ordinal_costs(C):
  i = np.arange(C)
  return np.abs(i[:, None] - i[None, :]).astype(np.float64)


@pytest.mark.parametrize("jitted", [False, True])
def test_expected_costs_match_the_sum(jitted):
  rng = np.random.default_rng(0)
  p, D = dirichlet(rng, 64, 9), rng.uniform(0, 3, size=(9, 9))  # asymmetric
  fn = jax.jit(st.expected_costs) if jitted else st.expected_costs
  np.testing.assert_allclose(fn(p.astype(np.float32), D.astype(np.float32)),
                             brute_force_costs(p, D), rtol=1e-6, atol=1e-6)


def test_expected_costs_gradient():
  rng = np.random.default_rng(1)
  p, D = dirichlet(rng, 4, 5), rng.uniform(0, 2, size=(5, 5))
  with jax.enable_x64():
    check_grads(lambda p, D: st.expected_costs(p, D).sum(0) ** 2,
                (jnp.asarray(p), jnp.asarray(D)), order=2,
                modes=("rev",))


@pytest.mark.parametrize("jitted", [False, True])
def test_predictions_match_brute_force(jitted):
  rng = np.random.default_rng(2)
  p, D = dirichlet(rng, 500, 12), rng.uniform(0, 4, size=(12, 12))
  fn = jax.jit(st.expected_cost_predictions) if jitted else \
      st.expected_cost_predictions
  got = np.asarray(fn(p.astype(np.float32), D.astype(np.float32)))
  R = brute_force_costs(p, D)
  want = R.argmin(1)
  # Where float32 rounding cannot reorder the two best classes, the same
  # class; everywhere, a class within rounding of the least cost.
  top2 = np.sort(R, 1)[:, :2]
  clear = top2[:, 1] - top2[:, 0] > 1e-4
  assert clear.mean() > 0.9
  np.testing.assert_array_equal(got[clear], want[clear])
  np.testing.assert_allclose(R[np.arange(500), got], R.min(1), atol=1e-5)
  assert got.dtype == np.int32


def test_ties_go_to_the_lowest_index():
  # Dyadic probabilities and integer costs: float32 products and sums are
  # exact, so ties are exact and the lowest-index rule is tested as such.
  rng = np.random.default_rng(3)
  C = 6
  counts = rng.multinomial(8, np.full(C, 1 / C), size=400)
  p = counts / 8.0
  D = rng.integers(0, 3, size=(C, C)).astype(np.float64)
  want = brute_force_decisions(p, D)
  R = brute_force_costs(p, D)
  ties = (R == R.min(1, keepdims=True)).sum(1) > 1
  assert ties.sum() > 50  # the case is exercised
  got = np.asarray(st.expected_cost_predictions(p.astype(np.float32),
                                                D.astype(np.float32)))
  np.testing.assert_array_equal(got, want)
  # Hand case: uniform over 0 and 2 under |j - k| costs: all three tie.
  assert st.expected_cost_predictions(
      np.array([[0.5, 0.0, 0.5]]), ordinal_costs(3)).tolist() == [0]


def test_zero_one_costs_give_the_arg_max():
  rng = np.random.default_rng(4)
  p = dirichlet(rng, 200, 7).astype(np.float32)
  got = st.expected_cost_predictions(p, 1 - np.eye(7))
  np.testing.assert_array_equal(got, p.argmax(1))


def test_posterior_median_matches_brute_force_and_crm():
  rng = np.random.default_rng(5)
  p = dirichlet(rng, 500, 10)
  got = np.asarray(st.posterior_median(p.astype(np.float32)))
  cdf = np.cumsum(p, 1)
  clear = np.abs(cdf - 0.5).min(1) > 1e-5  # no near tie at 1/2
  np.testing.assert_array_equal(got[clear], brute_force_median(p)[clear])
  crm = np.asarray(st.expected_cost_predictions(p.astype(np.float32),
                                                ordinal_costs(10)))
  np.testing.assert_array_equal(got[clear], crm[clear])


def test_posterior_median_equals_crm_on_exact_ties():
  rng = np.random.default_rng(6)
  C = 7
  p = rng.multinomial(8, np.full(C, 1 / C), size=400) / 8.0
  cdf = np.cumsum(p, 1)
  assert (cdf == 0.5).any(1).sum() > 30  # exact ties occur
  med = np.asarray(st.posterior_median(p.astype(np.float32)))
  crm = np.asarray(st.expected_cost_predictions(p.astype(np.float32),
                                                ordinal_costs(C)))
  np.testing.assert_array_equal(med, brute_force_median(p))
  np.testing.assert_array_equal(med, crm)
  np.testing.assert_array_equal(med, brute_force_decisions(
      p, ordinal_costs(C)))


@pytest.mark.parametrize("jitted", [False, True])
def test_nan_rows_are_undecided(jitted):
  p = np.array([[0.2, 0.3, 0.5], [np.nan, 0.5, 0.5], [0.9, 0.1, 0.0]],
               np.float32)
  D = ordinal_costs(3)
  crm = jax.jit(st.expected_cost_predictions) if jitted else \
      st.expected_cost_predictions
  med = jax.jit(st.posterior_median) if jitted else st.posterior_median
  assert crm(p, D).tolist() == [1, -1, 0]
  assert med(p).tolist() == [1, -1, 0]
  assert np.isnan(np.asarray(st.expected_costs(p, D))[1]).all()
  with pytest.raises(ValueError, match="predictions must lie in"):
    st.mistake_severity(crm(p, D), np.array([0, 1, 2]), D)


def test_batch_dimensions_and_low_precision():
  rng = np.random.default_rng(7)
  p = dirichlet(rng, 24, 5).astype(np.float32)
  D = rng.uniform(0, 2, size=(5, 5)).astype(np.float32)
  flat = st.expected_cost_predictions(p, D)
  np.testing.assert_array_equal(
      st.expected_cost_predictions(p.reshape(2, 3, 4, 5), D), flat.reshape(
          2, 3, 4))
  np.testing.assert_array_equal(st.posterior_median(p.reshape(4, 6, 5)),
                                np.asarray(st.posterior_median(p)).reshape(
                                    4, 6))
  assert st.expected_costs(jnp.asarray(p, jnp.bfloat16), D).dtype == \
      jnp.float32


def test_errors_name_the_argument():
  p = np.full((2, 3), 1 / 3, np.float32)
  with pytest.raises(ValueError, match=r"distances must have shape \(3, 3\)"):
    st.expected_cost_predictions(p, np.zeros((4, 4)))
  with pytest.raises(ValueError, match="distances must be finite"):
    st.expected_cost_predictions(p, np.full((3, 3), np.inf))
  with pytest.raises(ValueError, match="probabilities must hold"):
    st.expected_cost_predictions(np.array([[2.0, -1.0, 0.0]]), np.eye(3))
  with pytest.raises(ValueError, match="probabilities rows must sum to 1"):
    st.posterior_median(np.array([[0.2, 0.2, 0.2]]))
  with pytest.raises(ValueError, match="probabilities must have shape"):
    st.posterior_median(np.float32(1.0))
  with pytest.raises(TypeError, match="probabilities must be a numeric"):
    st.posterior_median("p")


def test_lists_and_integer_one_hots_are_probabilities():
  assert st.posterior_median([[0.2, 0.8], [1.0, 0.0]]).tolist() == [1, 0]
  assert st.expected_cost_predictions(np.eye(3, dtype=int),
                                      ordinal_costs(3)).tolist() == [0, 1, 2]


@given(hs.lists(hs.integers(0, 4), min_size=2, max_size=8))
@example([1, 0, 1])   # a three-way tie
@example([0, 0, 0, 5])  # all mass on the last grade
def test_median_is_the_crm_decision_of_absolute_error(counts):
  # Dyadic rows (counts / 2^k) make every sum exact: the two routes must
  # agree exactly, ties included, and the decision is a least-cost grade.
  counts = np.asarray(counts, np.float64)
  total = 2.0 ** np.ceil(np.log2(max(counts.sum(), 1)))
  counts[-1] += total - counts.sum()  # the mass a power of two: dyadic p
  p = (counts / total)[None]
  C = p.shape[1]
  med = int(st.posterior_median(p.astype(np.float32))[0])
  crm = int(st.expected_cost_predictions(p.astype(np.float32),
                                         ordinal_costs(C))[0])
  assert med == crm == int(brute_force_decisions(p, ordinal_costs(C))[0])

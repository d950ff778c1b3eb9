"""The one validation vocabulary (``_validation``): labels, scalar options,
integer options, distributions, shapes, across every function that takes them.

The label rule, once: a label array is an integer array of exactly the batch
shape (never broadcast), with values in [0, C) checked in the labels' own
width before any cast.
"""

import functools

import hypothesis
import hypothesis.strategies as hs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_targets as st
from spectral_targets import _validation as v

N, C, D = 4, 3, 5
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(N, C)).astype(np.float32)
PROBS = np.asarray(jax.nn.softmax(LOGITS), np.float32)
FEATURES = RNG.normal(size=(N, D)).astype(np.float32)
CODES = np.asarray(st.spectral_codebook(st.flat(C), 2))
KERNEL = np.asarray(st.graded(C, 1.0))
DIST = 1 - KERNEL
TREE = st.build_tree([("r", "a"), ("a", "x"), ("a", "y"), ("r", "z")])
GOOD = np.array([0, 1, 2, 1])

# Every public function that takes labels, with everything else valid.
LABEL_TAKERS = {
    "kernel_soft_labels": lambda y: st.kernel_soft_labels(y, KERNEL,
                                                          alpha=0.5),
    "decoupled_distillation_loss": lambda y: st.decoupled_distillation_loss(
        LOGITS, LOGITS[::-1], y),
    "dark_knowledge_mass": lambda y: st.dark_knowledge_mass(PROBS, y),
    "cosine_regression_loss": lambda y: st.cosine_regression_loss(
        FEATURES[:, :2], y, CODES),
    "similarity_regression_loss": lambda y: st.similarity_regression_loss(
        FEATURES[:, :2], y, CODES, KERNEL),
    "hierarchical_cross_entropy": lambda y: st.hierarchical_cross_entropy(
        LOGITS, y, TREE, alpha=0.5),
    "expected_calibration_error": lambda y: st.expected_calibration_error(
        PROBS, y),
    "fit_temperature": lambda y: st.fit_temperature(LOGITS, y),
    "mistake_severity(labels)": lambda y: st.mistake_severity(GOOD, y, DIST),
    "hierarchical_distance_at_k": lambda y: st.hierarchical_distance_at_k(
        LOGITS, y, DIST, k=2),
    "class_covariances": lambda y: st.class_covariances(FEATURES, y, C),
    "ClassStatistics.update": lambda y: st.ClassStatistics.zeros(C, D).update(
        FEATURES, y),
    "collapse_metrics": lambda y: st.collapse_metrics(FEATURES, y, C),
    "OnlineKernel.update": lambda y: st.OnlineKernel.init(C).update(PROBS, y),
    "from_class_means": lambda y: st.from_class_means(FEATURES, y, C),
}
# The one function whose labels define the batch shape themselves.
DEFINES_BATCH = {"kernel_soft_labels"}


def test_every_label_taker_accepts_good_labels():
  for name, call in LABEL_TAKERS.items():
    try:
      call(GOOD)
    except ValueError as e:  # fit_temperature may have no finite optimum
      assert name == "fit_temperature" and "temperature" in str(e), name


def _bad_labels(draw, batch_defined):
  kind = draw(hs.sampled_from(["range", "dtype", "shape"]))
  if kind == "range":
    y = GOOD.astype(np.int64).copy()
    i = draw(hs.integers(0, N - 1))
    y[i] = draw(hs.one_of(hs.integers(-2**63, -1), hs.integers(C, 2**63 - 1),
                          hs.sampled_from([C, -1, 2**32, 2**32 + 1])))
    return y
  if kind == "dtype":
    return draw(hs.sampled_from([GOOD.astype(np.float32),
                                 GOOD.astype(bool),
                                 GOOD.astype(np.float64) + 0.5]))
  shapes = [(N, 1), (1, N, 1)] if batch_defined else [
      (N, 1), (1, N), (N - 1,), (N + 1,), (), (N, N)]
  shape = draw(hs.sampled_from(shapes))
  return np.zeros(shape, np.int32)


@pytest.mark.parametrize("name", sorted(LABEL_TAKERS))
@hypothesis.given(data=hs.data())
def test_any_label_array_not_batch_integers_in_range_raises(name, data):
  y = data.draw(hs.composite(lambda draw: _bad_labels(
      draw, name in DEFINES_BATCH))())
  with pytest.raises((TypeError, ValueError), match="labels"):
    LABEL_TAKERS[name](y)


@pytest.mark.parametrize("name", sorted(LABEL_TAKERS))
def test_int64_labels_beyond_int32_do_not_wrap(name):
  # 2**32 + 1 would be read as class 1 by a cast to int32 (JAX's default).
  y = GOOD.astype(np.int64)
  y[1] = 2**32 + 1
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); found "
                     r"values in \[0, 4294967297\]"):
    LABEL_TAKERS[name](y)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
    LABEL_TAKERS[name](list(y))  # Python ints too


def test_predictions_follow_the_same_rule():
  y = GOOD.astype(np.int64)
  y[0] = 2**32
  with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\)"):
    st.mistake_severity(y, GOOD, DIST)
  with pytest.raises(ValueError, match=r"predictions must have shape \(4,\)"):
    st.mistake_severity(GOOD[:, None], GOOD, DIST)


def test_a_column_of_labels_cannot_broadcast_into_a_wrong_loss():
  # (N, 1) labels would give (N, 1, C) targets and an (N, N) optax loss.
  with pytest.raises(ValueError, match=r"labels must hold one integer class "
                     r"per example, got shape \(4, 1\).*labels\[\.\.\., 0\]"):
    st.kernel_soft_labels(GOOD[:, None], KERNEL, alpha=0.1)
  # Multi-dimensional batches still work: (2, 2) labels, (2, 2, C) targets.
  q = st.kernel_soft_labels(GOOD.reshape(2, 2), KERNEL, alpha=0.1)
  np.testing.assert_allclose(
      q.reshape(N, C), st.kernel_soft_labels(GOOD, KERNEL, alpha=0.1))


def test_label_shape_and_dtype_are_checked_at_trace_time():
  loss = jax.jit(lambda s, y: st.decoupled_distillation_loss(s, s, y))
  with pytest.raises(ValueError, match=r"labels must have the batch shape "
                     r"\(4,\)"):
    loss(LOGITS, GOOD[:, None])
  with pytest.raises(TypeError, match="labels must have an integer dtype"):
    loss(LOGITS, GOOD.astype(np.float32))
  soft = jax.jit(lambda y: st.kernel_soft_labels(y, KERNEL, alpha=0.5))
  with pytest.raises(ValueError, match="one integer class per example"):
    soft(GOOD[:, None])
  # Traced labels in range give the eager values.
  np.testing.assert_allclose(soft(GOOD), st.kernel_soft_labels(
      GOOD, KERNEL, alpha=0.5), rtol=1e-6)


# -- scalar options ------------------------------------------------------------

SCALAR_OPTIONS = {
    "scale (codebook_logits)": ("scale", lambda x: st.codebook_logits(
        FEATURES[:, :2], CODES, scale=x)),
    "scale (nnx head)": ("scale", lambda x: __import__(
        "spectral_targets.nnx").nnx.CodebookHead(CODES, scale=x)),
    "scale (linen head)": ("scale", lambda x: __import__(
        "spectral_targets.linen").linen.CodebookHead(CODES, scale=x)),
    "temperature (distillation_loss)": ("temperature", lambda x:
                                        st.distillation_loss(
                                            LOGITS, LOGITS, temperature=x)),
    "temperature (kernel_soft_labels)": ("temperature", lambda x:
                                         st.kernel_soft_labels(
                                             GOOD, KERNEL, alpha=0.5,
                                             temperature=x)),
    "alpha (kernel_soft_labels)": ("alpha", lambda x: st.kernel_soft_labels(
        GOOD, KERNEL, alpha=x)),
    "alpha (hierarchical_cross_entropy)": (
        "alpha", lambda x: st.hierarchical_cross_entropy(LOGITS, GOOD, TREE,
                                                         alpha=x)),
    "beta (decoupled_distillation_loss)": (
        "beta", lambda x: st.decoupled_distillation_loss(LOGITS, LOGITS,
                                                         GOOD, beta=x)),
    "tol (fit_temperature)": ("tol", lambda x: st.fit_temperature(
        LOGITS, GOOD, tol=x)),
    "tol (top_eigenmodes)": ("tol", lambda x: st.top_eigenmodes(
        KERNEL, 2, tol=x)),
    "branching (random_hierarchy)": ("branching", lambda x:
                                     st.random_hierarchy(10, branching=x)),
}


@pytest.mark.parametrize("option", sorted(SCALAR_OPTIONS))
@pytest.mark.parametrize("bad", [None, "2", b"2", True, 1j, [1.0, 2.0],
                                 object()])
def test_non_numeric_scalar_options_name_the_option(option, bad):
  name, call = SCALAR_OPTIONS[option]
  with pytest.raises((TypeError, ValueError), match=rf"^{name} must be"):
    call(bad)


def test_huge_python_ints_are_read_exactly_as_numbers():
  # A real option may be any Python int; it is used as a float.
  np.testing.assert_allclose(
      st.codebook_logits(FEATURES[:, :2], CODES, scale=2**70),
      st.codebook_logits(FEATURES[:, :2], CODES, scale=float(2**70)))
  np.testing.assert_allclose(
      st.distillation_loss(LOGITS, LOGITS[::-1], temperature=10**3),
      st.distillation_loss(LOGITS, LOGITS[::-1], temperature=1000.0))


@pytest.mark.parametrize("call, name, bound", [
    (lambda: st.fit_temperature(LOGITS, GOOD, max_iter=2**31), "max_iter",
     2**31 - 1),
    (lambda: st.top_eigenmodes(KERNEL, 2, max_iter=2**31), "max_iter",
     2**31 - 1),
    (lambda: st.gram_error(KERNEL, 2, max_iter=2**31), "max_iter", 2**31 - 1),
    (lambda: st.top_eigenmodes(KERNEL, 2, seed=2**70), "seed", 2**32 - 1),
    (lambda: st.spectral_codebook(KERNEL, 2, seed=2**32), "seed", 2**32 - 1),
    (lambda: st.random_hierarchy(10, seed=2**32), "seed", 2**32 - 1),
    (lambda: st.OnlineKernel.init(2**40), "num_classes", 2**31 - 1),
    (lambda: st.ClassStatistics.zeros(2**40, 3), "num_classes", 2**31 - 1),
])
def test_huge_integer_options_name_the_option(call, name, bound):
  with pytest.raises(ValueError, match=rf"^{name} must be <= {bound}, got"):
    call()


def test_an_allocation_xla_cannot_index_raises_instead_of_aborting():
  # XLA aborts the process on a (2^31 - 1)^2 float32 shape.
  with pytest.raises(ValueError, match=r"num_classes is too large: an array "
                     r"of shape \(2147483647, 2147483647\)"):
    st.OnlineKernel.init(2**31 - 1)
  with pytest.raises(ValueError, match="num_classes and dim is too large"):
    st.ClassStatistics.zeros(3, 2**31 - 1)


def test_seeds_up_to_two_to_the_32_are_valid():
  np.testing.assert_array_equal(st.random_hierarchy(10, seed=2**32 - 1),
                                st.random_hierarchy(10, seed=2**32 - 1))
  st.top_eigenmodes(KERNEL, 1, method="randomized", seed=2**32 - 1)


def test_booleans_and_axis_names():
  state = st.OnlineKernel.init(C)
  for bad in ("yes", 1, None, jnp.array([True])):
    with pytest.raises(TypeError, match="correct_only must be a bool"):
      state.update(PROBS, GOOD, correct_only=bad)
  # A traced boolean scalar is accepted.
  jax.jit(lambda s, c: s.update(PROBS, GOOD, correct_only=c))(
      state, jnp.array(False))
  for stats in (state, st.ClassStatistics.zeros(C, D)):
    for bad in (0, (), ("x", 1), None):
      with pytest.raises(TypeError, match="axis_name must be a mesh axis"):
        stats.all_reduce(bad)


def test_one_distribution_check_for_every_probability_input():
  # The same tolerance (1e-2 plus 4 ulps of the input dtype) and message.
  off = PROBS.copy()
  off[1] *= 0.98
  bf16 = np.asarray(jnp.asarray(PROBS, jnp.bfloat16).astype(jnp.float32))
  for call in (lambda p: st.expected_calibration_error(p, GOOD),
               lambda p: st.OnlineKernel.init(C).update(p, GOOD)):
    with pytest.raises(ValueError, match="probs rows must sum to 1.*row 1"):
      call(off)
    with pytest.raises(ValueError, match=r"probs must hold probabilities in "
                       r"\[0, 1\] \(logits\?.*row 0, column 0"):
      call(LOGITS - 10)
    call(bf16)  # a bf16 softmax cast up to float32 is a distribution


# -- the chex engine ------------------------------------------------------------

def test_shape_checks_name_the_argument_under_jit():
  @jax.jit
  def f(x, y):
    v.check_shape(x, (None, 3), "x")
    v.check_rank(y, 1, "y")
    v.check_equal_shape({"x": x, "x2": x})
    v.check_integer_dtype(y, "y")
    return x

  f(jnp.zeros((2, 3)), jnp.zeros(2, int))
  with pytest.raises(ValueError, match=r"^x must have shape \(N, 3\), got "
                     r"\(2, 4\)\."):
    f(jnp.zeros((2, 4)), jnp.zeros(2, int))
  with pytest.raises(ValueError, match=r"^y must have rank 1, got shape "
                     r"\(2, 1\)\."):
    f(jnp.zeros((2, 3)), jnp.zeros((2, 1), int))
  with pytest.raises(TypeError, match="^y must have an integer dtype, got "
                     "float32"):
    f(jnp.zeros((2, 3)), jnp.zeros(2))


@pytest.mark.parametrize("call, match", [
    (lambda: st.alignment(KERNEL, np.eye(2)),
     r"a and b must have the same shape, got \(3, 3\) and \(2, 2\)"),
    (lambda: st.alignment(st.from_hierarchy([("r", "a"), ("r", "b")],
                                            implicit=True),
                          st.low_rank_kernel(np.ones((3, 1)))),
     r"a and b must have the same shape, got \(2, 2\) and \(3, 3\)"),
    (lambda: st.procrustes(np.eye(2), np.eye(3)),
     r"x and y must have the same shape, got \(2, 2\) and \(3, 3\)"),
    (lambda: st.from_class_means(FEATURES, GOOD[:3], C),
     r"labels must have shape \(4,\) to match features \(4, 5\), got \(3,\)"),
])
def test_the_former_bare_chex_checks_name_their_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# -- files and generators -------------------------------------------------------

def test_load_hierarchy_does_not_take_a_file_descriptor(tmp_path):
  path = tmp_path / "tree.txt"
  path.write_text("r a\n")
  with open(path) as f:
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, "
                       "got int"):
      st.load_hierarchy(f.fileno())
    assert f.read() == "r a\n"  # the caller's descriptor is still open
  assert st.load_hierarchy(path) == [("r", "a")]


def test_traced_temperature_is_nan_and_a_python_temperature_is_checked():
  s = jnp.asarray(LOGITS)
  calls = {
      "distillation_loss": lambda t: st.distillation_loss(s, s[::-1],
                                                          temperature=t),
      "decoupled_distillation_loss": lambda t: st.decoupled_distillation_loss(
          s, s[::-1], GOOD, temperature=t),
      "soft_assignment_distillation_loss":
          lambda t: st.soft_assignment_distillation_loss(
              FEATURES[:, :2], FEATURES[::-1, :2], CODES, temperature=t),
      "kernel_soft_labels": lambda t: st.kernel_soft_labels(
          GOOD, KERNEL, alpha=0.5, temperature=t),
  }
  for name, call in calls.items():
    for bad in (0.0, -1.0, np.inf):
      # Traced: it cannot raise; NaN, never a finite (wrong) number.
      assert np.isnan(np.asarray(jax.jit(call)(bad))).all(), (name, bad)
      # A Python number closed over or static is checked under jit.
      with pytest.raises(ValueError, match="temperature must be a positive"):
        jax.jit(functools.partial(lambda t, x: call(t), bad))(0)
    good = jax.jit(call)(2.0)
    np.testing.assert_allclose(good, call(2.0), rtol=1e-6)

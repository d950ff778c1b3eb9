import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import spectral_targets as st
from spectral_targets.linen import CodebookHead as LinenHead
from spectral_targets.nnx import Codebook, CodebookHead

C, D, IN = 5, 4, 6
CODES = st.spectral_codebook(st.double_center(st.graded(C, 1.5)), D)
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(32, IN)), jnp.float32)
Y = jnp.asarray(RNG.integers(0, C, size=32))


class Classifier(nnx.Module):
  def __init__(self, head_factory, rngs):
    self.body = nnx.Linear(IN, D, rngs=rngs)
    self.head = head_factory(rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.body(x)))


def _train(model, steps=5):
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x),
                                                             y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer, X, Y)) for _ in range(steps)]
  return losses


def test_nnx_head_logits_equal_codebook_logits():
  head = CodebookHead(CODES, scale=12.0)
  z = jnp.asarray(RNG.normal(size=(3, D)), jnp.float32)
  np.testing.assert_allclose(head(z), st.codebook_logits(z, CODES, scale=12.0))
  assert head.num_classes == C


@pytest.mark.parametrize("learn_scale", [False, True])
def test_nnx_codebook_fixed_while_encoder_trains(learn_scale):
  # Swapping nnx.Linear(D, C) for the head changes only the factory line.
  dense = Classifier(lambda rngs: nnx.Linear(D, C, rngs=rngs), nnx.Rngs(0))
  _train(dense)
  model = Classifier(lambda rngs: CodebookHead(CODES, scale=8.0,
                                               learn_scale=learn_scale),
                     nnx.Rngs(0))
  before_body = np.asarray(model.body.kernel[...]).copy()
  before_codes = np.asarray(model.head.codebook[...]).copy()
  losses = _train(model)
  np.testing.assert_array_equal(model.head.codebook[...], before_codes)
  assert not np.allclose(model.body.kernel[...], before_body)
  assert losses[-1] < losses[0]
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree_util.tree_leaves(params)
  assert all(l.shape != CODES.shape for l in leaves)
  if learn_scale:
    assert float(model.head.scale[...]) != 8.0


def test_nnx_state_round_trip():
  model = Classifier(lambda rngs: CodebookHead(CODES), nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  codebook_state = nnx.state(model, Codebook)
  assert len(jax.tree_util.tree_leaves(codebook_state)) == 1
  restored = nnx.merge(graphdef, state)
  np.testing.assert_array_equal(restored.head.codebook[...], CODES)
  np.testing.assert_allclose(restored(X), model(X))
  # Restoring into a fresh model with a different codebook brings ours back.
  other = Classifier(lambda rngs: CodebookHead(jnp.zeros_like(CODES) + 1.0),
                     nnx.Rngs(1))
  nnx.update(other, state)
  np.testing.assert_array_equal(other.head.codebook[...], CODES)


def test_nnx_head_errors():
  with pytest.raises(ValueError, match="codebook must have rank 2"):
    CodebookHead(jnp.ones(3))
  with pytest.raises(ValueError, match="scale must be a positive"):
    CodebookHead(CODES, scale=-1.0)
  with pytest.raises(ValueError, match="codebook must be finite"):
    CodebookHead(jnp.full((2, 2), jnp.nan))
  with pytest.raises(ValueError, match=r"features must have shape \(\.\.\., 4\)"):
    CodebookHead(CODES)(jnp.ones((2, 3)))


class LinenClassifier(nn.Module):
  learn_scale: bool = False

  @nn.compact
  def __call__(self, x):
    z = jnp.tanh(nn.Dense(D)(x))
    return LinenHead(CODES, scale=8.0, learn_scale=self.learn_scale)(z)


@pytest.mark.parametrize("learn_scale", [False, True])
def test_linen_codebook_in_constants_and_fixed(learn_scale):
  model = LinenClassifier(learn_scale)
  variables = model.init(jax.random.key(0), X)
  assert set(variables) == {"params", "constants"}
  np.testing.assert_allclose(
      variables["constants"]["CodebookHead_0"]["codebook"], CODES)
  tx = optax.adam(1e-2)
  params, constants = variables["params"], variables["constants"]
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      logits = model.apply({"params": p, "constants": constants}, X)
      return optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean()
    loss, g = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(5):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  head_params = params.get("CodebookHead_0", {})
  assert ("scale" in head_params) == learn_scale


def test_linen_head_matches_function_and_hashes():
  head = LinenHead(CODES, scale=3.0)
  z = jnp.asarray(RNG.normal(size=(2, D)), jnp.float32)
  v = head.init(jax.random.key(0), z)
  np.testing.assert_allclose(head.apply(v, z),
                             st.codebook_logits(z, CODES, scale=3.0))
  assert hash(head) == hash(LinenHead(np.asarray(CODES), scale=3.0))
  with pytest.raises(ValueError, match="codebook must have rank 2"):
    LinenHead(jnp.ones(3))


def test_default_scale_is_the_benchmarks_choice():
  # 8: see CodebookHead's docstring (the benchmark's recorded tunings).
  z = jnp.asarray(RNG.normal(size=(3, D)), jnp.float32)
  expected = st.codebook_logits(z, CODES, scale=8.0)
  np.testing.assert_allclose(CodebookHead(CODES)(z), expected, rtol=1e-6)
  head = LinenHead(CODES)
  np.testing.assert_allclose(head.apply(head.init(jax.random.key(0), z), z),
                             expected, rtol=1e-6)


@pytest.mark.parametrize("learn_scale", [False, True])
def test_linen_apply_with_params_only(learn_scale):
  # The usual Linen call, apply({"params": p}, x), needs no "constants".
  model = LinenClassifier(learn_scale)
  variables = model.init(jax.random.key(0), X)
  full = model.apply(variables, X)
  params_only = jax.jit(model.apply)({"params": variables["params"]}, X)
  np.testing.assert_allclose(params_only, full, rtol=1e-5, atol=1e-6)
  # A "constants" entry that is given wins (a restored, refreshed codebook).
  other = jax.tree.map(lambda w: -w, variables["constants"])
  flipped = model.apply({"params": variables["params"], "constants": other},
                        X)
  np.testing.assert_allclose(flipped, -full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("codebook, match", [
    (np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]),
     r"codebook has a zero row for class\(es\) \[1\]: a head cannot score"),
    (np.zeros((3, 0)), r"codebook must have shape \(C, d\) with C, d >= 1"),
    (np.zeros((0, 2)), r"codebook must have shape \(C, d\) with C, d >= 1"),
])
def test_heads_reject_codebooks_that_cannot_score_a_class(codebook, match):
  with pytest.raises(ValueError, match=match):
    CodebookHead(codebook)
  with pytest.raises(ValueError, match=match):
    LinenHead(codebook)


def test_codebook_logits_names_an_empty_codebook():
  with pytest.raises(ValueError, match=r"codebook must have shape \(C, d\) "
                     r"with C, d >= 1, got \(3, 0\)"):
    st.codebook_logits(np.zeros((2, 0)), np.zeros((3, 0)), scale=1.0)


@pytest.mark.parametrize("bad", [None, "2", True, [1.0]])
def test_heads_name_a_non_numeric_scale(bad):
  with pytest.raises((TypeError, ValueError), match="^scale must be"):
    CodebookHead(np.eye(2), scale=bad)
  with pytest.raises((TypeError, ValueError), match="^scale must be"):
    LinenHead(np.eye(2), scale=bad)


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as hs
from jax.test_util import check_grads

import spectral_targets as st
import reference as ref

RNG = np.random.default_rng(0)
B, C, D = 5, 6, 4
S_LOG = RNG.normal(size=(B, C)).astype(np.float32) * 2
T_LOG = RNG.normal(size=(B, C)).astype(np.float32) * 2
Y = RNG.integers(0, C, size=B)
Z_S = RNG.normal(size=(B, D)).astype(np.float32)
Z_T = RNG.normal(size=(B, D)).astype(np.float32)
CODES = RNG.normal(size=(C, D)).astype(np.float32)
KERNEL = np.asarray(st.graded(C, 1.5))


# -- values against NumPy float64 references of the published formulas -------

def test_codebook_logits_reference():
  got = st.codebook_logits(Z_S, CODES, scale=7.0)
  np.testing.assert_allclose(got, 7.0 * ref.unit(Z_S) @ ref.unit(CODES).T,
                             rtol=1e-5, atol=1e-5)
  # Feeds optax unchanged.
  loss = optax.softmax_cross_entropy_with_integer_labels(got, Y)
  assert loss.shape == (B,)


def test_kernel_soft_labels_reference():
  for tau, alpha in [(0.5, 1.0), (2.0, 0.3)]:
    got = st.kernel_soft_labels(Y, KERNEL, temperature=tau, alpha=alpha)
    want = ((1 - alpha) * np.eye(C)[Y]
            + alpha * ref.softmax(KERNEL[Y] / tau))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_kernel_soft_labels_generalises_smooth_labels():
  got = st.kernel_soft_labels(Y, np.zeros((C, C)), alpha=0.1)
  want = optax.smooth_labels(jax.nn.one_hot(Y, C), 0.1)
  np.testing.assert_allclose(got, want, atol=1e-7)


def test_kernel_soft_labels_expresses_bertinetto():
  # softmax(-beta * h(lca) / h(root)) with the LCA-height kernel.
  edges, classes = st.cifar100_hierarchy("wordnet")
  S = np.asarray(st.from_hierarchy(edges, classes=classes), np.float64)
  beta = 10.0
  y = np.array([0, 57, 99])
  heights = 1 - S  # h(lca)/h(root)
  want = ref.softmax(-beta * heights[y])
  got = st.kernel_soft_labels(y, S, alpha=1.0, temperature=1 / beta)
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_kernel_soft_labels_expresses_sord():
  # Diaz & Marathe (2019): q_i = exp(-phi(i, y)) / sum_j exp(-phi(j, y)),
  # written out by a loop over the ranks.
  C = 7
  i = np.arange(C)
  for phi in (np.abs(i[:, None] - i[None, :]).astype(float),
              2.0 * (i[:, None] - i[None, :]) ** 2.0):
    want = np.zeros((C, C))
    for y in range(C):
      w = np.array([np.exp(-phi[r, y]) for r in range(C)])
      want[y] = w / w.sum()
    got = jax.jit(lambda y, k: st.kernel_soft_labels(y, k, alpha=1.0))(
        i, -phi)
    np.testing.assert_allclose(got, want, atol=1e-6)
  # Hand case: phi = |i - y|, C = 3, y = 0: (1, e^-1, e^-2) / sum.
  q = st.kernel_soft_labels(np.array([0]), -np.abs(i[:3, None] - i[None, :3]),
                            alpha=1.0)
  e = np.exp(-1.0)
  np.testing.assert_allclose(q[0], np.array([1, e, e * e]) / (1 + e + e * e),
                             rtol=1e-6)


def test_distillation_loss_reference_and_optax_at_tau_1():
  for tau in (1.0, 4.0):
    np.testing.assert_allclose(
        st.distillation_loss(S_LOG, T_LOG, temperature=tau),
        ref.hinton_kd(S_LOG, T_LOG, tau), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      st.distillation_loss(S_LOG, T_LOG),
      optax.kl_divergence(jax.nn.log_softmax(S_LOG), jax.nn.softmax(T_LOG)),
      rtol=1e-5, atol=1e-6)


def test_decoupled_distillation_reference():
  for tau, a, b in [(4.0, 1.0, 8.0), (1.0, 0.5, 2.0)]:
    np.testing.assert_allclose(
        st.decoupled_distillation_loss(S_LOG, T_LOG, Y, temperature=tau,
                                       alpha=a, beta=b),
        ref.dkd(S_LOG, T_LOG, Y, tau, a, b), rtol=1e-4, atol=1e-6)


def test_decoupled_distillation_confident_teacher_is_accurate():
  # p_y -> 1: 1 - p_y would round to 0 in float32; the sum does not.
  s = np.array([[30.0, 0.0, -2.0]], np.float32)
  t = np.array([[25.0, 1.0, 0.0]], np.float32)
  got = st.decoupled_distillation_loss(s, t, np.array([0]), temperature=1.0)
  np.testing.assert_allclose(got, ref.dkd(s, t, [0], 1.0, 1.0, 8.0),
                             rtol=1e-4)


def test_soft_assignment_and_its_distillation_reference():
  tau = 0.7
  a = st.soft_assignment(Z_S, CODES, temperature=tau)
  np.testing.assert_allclose(a, ref.softmax(Z_S @ CODES.T / tau), atol=1e-6)
  got = st.soft_assignment_distillation_loss(Z_S, Z_T, CODES, temperature=tau)
  want = tau**2 * ref.kl(ref.softmax(Z_T @ CODES.T / tau),
                         ref.softmax(Z_S @ CODES.T / tau))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_regression_losses_reference():
  cos = ref.unit(Z_S) @ ref.unit(CODES).T
  np.testing.assert_allclose(st.cosine_regression_loss(Z_S, Y, CODES),
                             1 - cos[np.arange(B), Y], atol=1e-6)
  np.testing.assert_allclose(
      st.similarity_regression_loss(Z_S, Y, CODES, KERNEL),
      ((cos - KERNEL[Y]) ** 2).sum(-1), rtol=1e-5, atol=1e-6)


def test_dark_knowledge_and_entropy_reference():
  p = ref.softmax(S_LOG)
  np.testing.assert_allclose(st.dark_knowledge_mass(p.astype(np.float32), Y),
                             1 - p[np.arange(B), Y], atol=1e-6)
  np.testing.assert_allclose(st.entropy(p.astype(np.float32)),
                             -(p * np.log(p)).sum(-1), atol=1e-5)
  assert float(st.entropy(jnp.array([1.0, 0.0]))) == 0


# -- where, axis, jit, vmap, grad ---------------------------------------------

WHERE = RNG.random((B, C)) > 0.3
WHERE[np.arange(B), Y] = True  # DKD needs the label's class
LOGIT_LOSSES = {
    "kd": lambda s, t, **kw: st.distillation_loss(s, t, temperature=2.0, **kw),
    "dkd": lambda s, t, **kw: st.decoupled_distillation_loss(
        s, t, Y, temperature=2.0, **kw),
}


@pytest.mark.parametrize("name", list(LOGIT_LOSSES))
def test_where_equals_slicing(name):
  loss = LOGIT_LOSSES[name]
  got = loss(S_LOG, T_LOG, where=WHERE)
  for i in range(B):
    keep = WHERE[i]
    if name == "dkd":
      yi = int(np.flatnonzero(np.flatnonzero(keep) == Y[i])[0])
      want = st.decoupled_distillation_loss(
          S_LOG[i:i + 1, keep], T_LOG[i:i + 1, keep], np.array([yi]),
          temperature=2.0)
    else:
      want = loss(S_LOG[i:i + 1, keep], T_LOG[i:i + 1, keep])
    np.testing.assert_allclose(got[i], want[0], rtol=1e-5, atol=1e-6)


def test_where_equals_slicing_for_targets_assignments_regression():
  keep = WHERE[0]
  q = st.kernel_soft_labels(Y[:1], KERNEL, alpha=1.0, temperature=0.8,
                            where=WHERE[:1])
  sub = KERNEL[np.ix_(keep, keep)]
  yi = int(np.flatnonzero(np.flatnonzero(keep) == Y[0])[0])
  np.testing.assert_allclose(
      q[0, keep], st.kernel_soft_labels(np.array([yi]), sub, alpha=1.0,
                                        temperature=0.8)[0], atol=1e-6)
  assert np.all(np.asarray(q)[0, ~keep] == 0)
  got = st.soft_assignment_distillation_loss(Z_S[:1], Z_T[:1], CODES,
                                             where=WHERE[:1])
  want = st.soft_assignment_distillation_loss(Z_S[:1], Z_T[:1], CODES[keep])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  got = st.similarity_regression_loss(Z_S[:1], Y[:1], CODES, KERNEL,
                                      where=keep)
  cos = ref.unit(Z_S[:1]) @ ref.unit(CODES).T
  np.testing.assert_allclose(
      got, ((cos - KERNEL[Y[:1]]) ** 2)[:, keep].sum(-1), rtol=1e-5)
  np.testing.assert_allclose(
      st.entropy(ref.softmax(S_LOG[:1]).astype(np.float32), where=WHERE[:1]),
      st.entropy(ref.softmax(S_LOG[:1]).astype(np.float32)[:, keep]),
      atol=1e-6)


def test_fully_masked_row_is_zero_with_finite_grads():
  # (DKD is left out: its where must include the label's class.)
  where = WHERE.copy()
  where[0] = False
  loss = LOGIT_LOSSES["kd"]
  out = loss(S_LOG, T_LOG, where=where)
  assert float(out[0]) == 0 and np.all(np.isfinite(out))
  g = jax.grad(lambda s: loss(s, T_LOG, where=where).sum())(S_LOG)
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[0] == 0)
  q = st.kernel_soft_labels(Y, KERNEL, alpha=0.5, where=where)
  assert np.all(np.asarray(q)[0] == 0)


@pytest.mark.parametrize("name", list(LOGIT_LOSSES))
def test_axis_equals_moveaxis(name):
  loss = LOGIT_LOSSES[name]
  got = loss(S_LOG.T, T_LOG.T, axis=0)
  np.testing.assert_allclose(got, loss(S_LOG, T_LOG), rtol=1e-6)
  got = loss(S_LOG.T, T_LOG.T, axis=0, where=WHERE.T)
  np.testing.assert_allclose(got, loss(S_LOG, T_LOG, where=WHERE), rtol=1e-6)
  q = st.kernel_soft_labels(Y, KERNEL, alpha=0.3, axis=0)
  np.testing.assert_allclose(q, st.kernel_soft_labels(Y, KERNEL, alpha=0.3).T)
  p = ref.softmax(S_LOG).astype(np.float32)
  np.testing.assert_allclose(st.entropy(p.T, axis=0), st.entropy(p))
  np.testing.assert_allclose(st.dark_knowledge_mass(p.T, Y, axis=0),
                             st.dark_knowledge_mass(p, Y))


# Each loss as f(x, partner, labels): x is differentiated; partner is the
# teacher (logits or features) where there is one.
ALL = {
    "codebook_logits": lambda z, t, y: st.codebook_logits(z, CODES, scale=5.0),
    "kd": lambda s, t, y: st.distillation_loss(s, t, temperature=3.0),
    "dkd": lambda s, t, y: st.decoupled_distillation_loss(s, t, y),
    "sakd": lambda z, t, y: st.soft_assignment_distillation_loss(
        z, t, CODES, temperature=0.5),
    "cos": lambda z, t, y: st.cosine_regression_loss(z, y, CODES),
    "simreg": lambda z, t, y: st.similarity_regression_loss(z, y, CODES,
                                                            KERNEL),
    "assign": lambda z, t, y: st.soft_assignment(z, CODES, temperature=0.5),
}
FEATURES = ("codebook_logits", "sakd", "cos", "simreg", "assign")


@pytest.mark.parametrize("name", list(ALL))
def test_jit_vmap_grad(name):
  f = ALL[name]
  x, t = (Z_S, Z_T) if name in FEATURES else (S_LOG, T_LOG)
  x, t, y = jnp.asarray(x), jnp.asarray(t), jnp.asarray(Y)
  want = f(x, t, y)
  np.testing.assert_allclose(jax.jit(f)(x, t, y), want, rtol=1e-5, atol=1e-6)
  one = lambda a, b, c: f(a[None], b[None], c[None])[0]
  np.testing.assert_allclose(jax.vmap(one)(x, t, y), want, rtol=1e-5,
                             atol=1e-6)
  check_grads(lambda x: f(x, t, y).sum(), (x,), order=1, modes=("rev",),
              atol=5e-2, rtol=5e-2)


def test_no_gradient_into_teacher():
  for f in (lambda t: st.distillation_loss(S_LOG, t, temperature=2.0),
            lambda t: st.decoupled_distillation_loss(S_LOG, t, Y)):
    g = jax.grad(lambda t: f(t).sum())(jnp.asarray(T_LOG))
    assert np.all(np.asarray(g) == 0)
  g = jax.grad(lambda z: st.soft_assignment_distillation_loss(
      Z_S, z, CODES).sum())(jnp.asarray(Z_T))
  assert np.all(np.asarray(g) == 0)


def test_tau_squared_keeps_gradient_scale():
  # Small logit gaps: the gradient of KL at temperature tau is
  # (softmax(s/tau) - softmax(t/tau)) / tau ~ (s - t)/(C tau^2); times tau^2
  # it tends to a tau-independent limit.
  s, t = S_LOG * 0.3, T_LOG * 0.3
  norms = [float(jnp.linalg.norm(jax.grad(
      lambda x: st.distillation_loss(x, t, temperature=tau).sum())(s)))
           for tau in (2.0, 8.0, 32.0, 128.0)]
  assert max(norms) / min(norms) < 1.3
  limit = np.linalg.norm(((s - s.mean(1, keepdims=True))
                          - (t - t.mean(1, keepdims=True))) / C)
  assert norms[-1] == pytest.approx(limit, rel=0.02)


def test_low_precision_inputs_are_finite():
  for dtype in (jnp.bfloat16, jnp.float16):
    z = jnp.asarray(Z_S * 1e3, dtype)
    logits = st.codebook_logits(z, CODES.astype(dtype), scale=1e4)
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
    big = jnp.asarray(S_LOG * 1e3, dtype)
    for out in (st.distillation_loss(big, big[::-1], temperature=1e-3),
                st.decoupled_distillation_loss(big, big[::-1], Y,
                                               temperature=1e-2),
                st.soft_assignment(z, CODES.astype(dtype), temperature=1e-3),
                st.kernel_soft_labels(Y, KERNEL.astype(dtype), alpha=1.0,
                                      temperature=1e-4)):
      assert out.dtype == jnp.float32 and np.all(np.isfinite(out))


# -- errors ------------------------------------------------------------------

def test_errors():
  with pytest.raises(ValueError, match="same shape"):
    st.distillation_loss(S_LOG, T_LOG[:, :3])
  with pytest.raises(TypeError, match="student_logits must have a floating"):
    st.distillation_loss(S_LOG.astype(int), T_LOG)
  with pytest.raises(ValueError, match="temperature must be a positive"):
    st.distillation_loss(S_LOG, T_LOG, temperature=0.0)
  with pytest.raises(ValueError, match="temperature must be a positive"):
    st.soft_assignment(Z_S, CODES, temperature=-1.0)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
    st.decoupled_distillation_loss(S_LOG, T_LOG, Y + 6)
  with pytest.raises(ValueError, match="labels must have the batch shape"):
    st.decoupled_distillation_loss(S_LOG, T_LOG, Y[:2])
  with pytest.raises(ValueError, match=r"features must have shape \(\.\.\., 4\)"):
    st.codebook_logits(Z_S[:, :3], CODES, scale=1.0)
  with pytest.raises(ValueError, match="scale must be a positive"):
    st.codebook_logits(Z_S, CODES, scale=0.0)
  with pytest.raises(ValueError, match="prototypes must have shape"):
    st.soft_assignment(Z_S, CODES[0])
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
    st.kernel_soft_labels(np.array([0, -1]), KERNEL, alpha=0.1)
  with pytest.raises(TypeError, match="labels must have an integer dtype"):
    st.kernel_soft_labels(Y.astype(float), KERNEL, alpha=0.1)
  with pytest.raises(ValueError, match=r"alpha must be a scalar in \[0, 1\]"):
    st.kernel_soft_labels(Y, KERNEL, alpha=1.5)
  with pytest.raises(ValueError, match="kernel must have shape"):
    st.similarity_regression_loss(Z_S, Y, CODES, KERNEL[:3, :3])
  with pytest.raises(ValueError, match="labels must have the batch shape"):
    st.cosine_regression_loss(Z_S, Y[:3], CODES)
  with pytest.raises(TypeError, match="where must be a boolean"):
    st.distillation_loss(S_LOG, T_LOG, where=np.ones((B, C)))
  with pytest.raises(ValueError, match="does not broadcast"):
    st.distillation_loss(S_LOG, T_LOG, where=np.ones((3, 2), bool))


# -- properties --------------------------------------------------------------

logits = hs.lists(hs.floats(-20, 20), min_size=2, max_size=12)


@given(row=logits, other=logits, shift=hs.floats(-50, 50),
       tau=hs.floats(0.1, 20))
def test_kd_nonnegative_and_zero_iff_equal_up_to_constant(row, other, shift,
                                                          tau):
  s = np.asarray(row, np.float32)
  same = float(st.distillation_loss(s, s + np.float32(shift), temperature=tau))
  assert 0 <= same <= 1e-4 * max(1, tau**2)
  t = np.resize(np.asarray(other, np.float32), s.shape)
  got = float(st.distillation_loss(s, t, temperature=tau))
  want = float(ref.hinton_kd(s[None], t[None], tau)[0])
  assert got >= 0
  assert got == pytest.approx(want, rel=1e-3, abs=1e-5 * max(1, tau**2))
  if want > 1e-3:  # distributions that differ give a positive loss
    assert got > 0


@given(y=hs.lists(hs.integers(0, 6), min_size=1, max_size=8),
       tau=hs.floats(0.05, 50), alpha=hs.floats(0, 1))
def test_soft_labels_are_distributions(y, tau, alpha):
  # Labels 0..6: a kernel of 7 classes (the module's KERNEL has C = 6).
  q = np.asarray(st.kernel_soft_labels(np.array(y),
                                       np.asarray(st.graded(7, 2.0)),
                                       temperature=tau, alpha=alpha))
  assert np.all(q >= 0)
  np.testing.assert_allclose(q.sum(-1), 1, atol=1e-5)


@given(z=hs.lists(hs.floats(-3, 3), min_size=D, max_size=D))
def test_soft_assignment_limits(z):
  z = np.asarray(z, np.float32)
  scores = CODES @ z
  top = np.sort(scores)
  if top[-1] - top[-2] < 1e-2:
    return  # a near tie has no one-hot limit
  cold = st.soft_assignment(z, CODES, temperature=1e-4)
  np.testing.assert_allclose(cold, np.eye(C)[np.argmax(scores)], atol=1e-4)
  hot = st.soft_assignment(z, CODES, temperature=1e5)
  np.testing.assert_allclose(hot, np.full(C, 1 / C), atol=1e-4)


@given(z=hs.lists(hs.floats(-3, 3), min_size=D, max_size=D))
def test_dark_knowledge_of_top_class_grows_with_temperature(z):
  z = np.asarray(z, np.float32)
  top = int(np.argmax(CODES @ z))
  taus = np.geomspace(0.01, 100, 12)
  mass = [float(st.dark_knowledge_mass(
      st.soft_assignment(z, CODES, temperature=t), np.array(top)))
          for t in taus]
  assert np.all(np.diff(mass) >= -1e-6)


# -- kernels checked wherever they are taken ------------------------------------

@pytest.mark.parametrize("fn", [
    lambda K: st.kernel_soft_labels(np.array([0, 1]), K, alpha=0.5),
    lambda K: st.similarity_regression_loss(np.ones((2, 2), np.float32),
                                            np.array([0, 1]), np.eye(2), K)])
def test_losses_check_their_kernel(fn):
  with pytest.raises(ValueError, match="kernel must be finite"):
    fn(np.array([[1.0, np.nan], [np.nan, 1.0]]))
  with pytest.raises(ValueError, match="kernel must be symmetric"):
    fn(np.array([[1.0, 0.5], [0.0, 1.0]]))
  with pytest.raises(ValueError, match="kernel must be a square"):
    fn(np.ones((2, 3)))
  with pytest.raises(TypeError, match="kernel must be an array"):
    fn(None)

"""The numbers behind each animation frame, computed with the library.

No plotting here: each function returns plain arrays, so tests check the
numbers and ``_gif`` only draws them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets import _validation as v
from spectral_targets._jit import jit


@dataclasses.dataclass(frozen=True)
class MorphFrame:
  dial: float              # 0 = flat, 1 = graded
  codes: np.ndarray        # (C, 2) unit codes, aligned to the previous frame
  spectrum: np.ndarray     # (C,) eigenvalues / sum |eigenvalues|


def codebook_morph_frames(frames: int = 40, *, num_classes: int = 9,
                          width: float = 2.0) -> list[MorphFrame]:
  """``spectral_codebook(S, 2)`` as S moves from flat to graded.

  S(t) = (1 - t) flat(C) + t double_center(graded(C, width)) (scaled to the
  flat kernel's norm), t in [0, 1]; each frame's codes are rotated onto the
  previous frame's by ``procrustes`` (the codebook is defined up to
  rotation). At t = 0 every regular C-gon is an optimal codebook; the frame
  shows the one whose order matches the t > 0 neighbour.

  Examples:
    >>> from spectral_targets import render
    >>> frames = render.codebook_morph_frames(3)
    >>> [f.dial for f in frames], frames[0].codes.shape
    ([0.0, 0.5, 1.0], (9, 2))
  """
  v.check_int(frames, "frames", minimum=2)
  C = v.check_int(num_classes, "num_classes", minimum=3)
  flat = st.flat(C)
  graded = st.double_center(st.graded(C, width))
  graded = graded / jnp.linalg.norm(graded) * jnp.linalg.norm(flat)
  dials = np.linspace(0.0, 1.0, frames)
  kernels = [(1 - t) * flat + t * graded for t in dials]
  codes = [np.asarray(st.spectral_codebook(S, 2)) for S in kernels]
  # At the flat end every regular C-gon is an equally good codebook (the
  # repeated eigenvalue's rule ties between all orderings of the ring);
  # spectral_codebook returns one of them. Show the one ordered like the
  # next frame, so the morph is continuous.
  after = codes[1]
  order = np.argsort(np.arctan2(after[:, 1], after[:, 0]))
  angles = np.empty(C)
  angles[order] = 2 * np.pi * np.arange(C) / C
  ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  codes[0] = ring @ np.asarray(st.procrustes(ring, after))
  out: list[MorphFrame] = []
  for t, S, x in zip(dials, kernels, codes):
    if out:
      x = x @ np.asarray(st.procrustes(x, out[-1].codes))
    lam = np.asarray(st.spectrum(S))
    out.append(MorphFrame(float(t), np.asarray(x, np.float32),
                          lam / np.abs(lam).sum()))
  return out


@dataclasses.dataclass(frozen=True)
class RankFrame:
  d: int
  target: np.ndarray       # (C, C) the kernel
  gram: np.ndarray         # (C, C) rank-d Gram, X Xᵀ of the MDS codes
  alignment: np.ndarray    # (d,) alignment(S, gram_k) for k = 1..d
  gram_error: np.ndarray   # (d,) gram_error(S, k) for k = 1..d


def rank_reconstruction_frames(*, num_classes: int = 12,
                               width: float = 3.0) -> list[RankFrame]:
  """The rank-d Gram matrix of ``graded(C, width)`` for d = 1 … C, with
  ``alignment`` and ``gram_error`` against the kernel up to each d.

  Examples:
    >>> from spectral_targets import render
    >>> frames = render.rank_reconstruction_frames(num_classes=4)
    >>> [f.d for f in frames], round(float(frames[-1].gram_error[-1]), 4)
    ([1, 2, 3, 4], 0.0)
  """
  v.check_int(num_classes, "num_classes", minimum=2)
  S = st.graded(num_classes, width)
  align: list[float] = []
  error: list[float] = []
  out: list[RankFrame] = []
  for d in range(1, num_classes + 1):
    X = st.spectral_codebook(S, d, normalize=False)
    gram = np.asarray(X @ X.T)
    align.append(float(st.alignment(S, gram)))
    error.append(float(st.gram_error(S, d)))
    out.append(RankFrame(d, np.asarray(S), gram, np.array(align),
                         np.array(error)))
  return out


@dataclasses.dataclass(frozen=True)
class CollapseFrame:
  step: int
  between: np.ndarray      # eigenvalues of Σ_B, descending
  within: np.ndarray       # eigenvalues of Σ_W, descending
  nc1_steps: np.ndarray    # steps so far
  nc1: np.ndarray          # NC1 at those steps


def collapse_frames(frames: int = 40, *, steps: int = 1200,
                    num_classes: int = 4, width: int = 16,
                    seed: int = 0) -> list[CollapseFrame]:
  r"""Σ_B and Σ_W of a small encoder's features while it trains.

  An MLP (64 → 64 → ``width``, tanh) with a Dense head is trained with
  cross-entropy and Adam on the first ``num_classes`` digits of
  scikit-learn's bundled 8 × 8 digits; at ``frames`` evenly spaced steps
  the penultimate features' spectra and NC1 are recorded with
  ``collapse_metrics`` (NC1 = tr(Σ_W Σ_B⁺) / C, Papyan et al. 2020).

  Reproducible to the bit: XLA's CPU sums run in an order that follows
  the number of threads, which moved a float32 run by ~1e-5 over 1,200
  steps (and the GIF's pixels with it). Training runs in float64 instead,
  where that order moves the results by ~1e-15, far below the float32 the
  frames are returned in: the same frames (and, with the same matplotlib
  and Pillow, GIF bytes) with any number of threads, and on another CPU
  barring a rounding tie (~1e-8 a value).
  Eigenvalues within rounding of zero,

  .. math::
    |\lambda_i| \le D\,\varepsilon_{64} \max_j |\lambda_j|,

  (``numpy.linalg.matrix_rank``'s tolerance) are reported as 0, so Σ_B's
  null space (rank ≤ C − 1) is exactly zero rather than rounding noise.

  Args:
    frames: number of frames (>= 2).
    steps: training steps in all (>= 1).
    num_classes: C, the digits 0 … C − 1 (2 to 10).
    width: D, the feature dimension (>= 1).
    seed: seed of the initial weights.

  Returns:
    One ``CollapseFrame`` per distinct step, float32 arrays.

  Examples:
    >>> from spectral_targets import render
    >>> frames = render.collapse_frames(2, steps=10)
    >>> [f.step for f in frames], frames[-1].between.shape
    ([0, 10], (16,))
    >>> float(frames[-1].between[3:].max())   # rank C - 1 = 3
    0.0

  References:
    Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal
    phase of deep learning training", PNAS 2020.
  """
  v.check_int(frames, "frames", minimum=2)
  v.check_int(steps, "steps", minimum=1)
  v.check_int(num_classes, "num_classes", minimum=2, maximum=10)
  v.check_int(width, "width", minimum=1)
  v.check_int(seed, "seed", minimum=0)
  from sklearn.datasets import load_digits
  x, y = load_digits(return_X_y=True)
  keep = y < num_classes
  rng = np.random.default_rng(seed)
  sizes = [(64, 64), (64, width), (width, num_classes)]
  weights = [rng.normal(size=s) / np.sqrt(s[0]) for s in sizes]
  marks = np.unique(np.linspace(0, steps, frames).round().astype(int))
  with jax.enable_x64(True):
    spectra = _collapse_run(x[keep] / 16.0, y[keep], weights, marks,
                            num_classes)
  out: list[CollapseFrame] = []
  curve: list[float] = []
  for mark, (between, within, nc1) in zip(marks, spectra):
    curve.append(nc1)
    out.append(CollapseFrame(int(mark), _zero_rounding(between),
                             _zero_rounding(within), marks[:len(curve)].copy(),
                             np.array(curve, np.float32)))
  return out


_Params = list[tuple[jax.Array, jax.Array]]


def _collapse_run(x: np.ndarray, y: np.ndarray, weights: list[np.ndarray],
                  marks: np.ndarray, num_classes: int
                  ) -> list[tuple[np.ndarray, np.ndarray, float]]:
  """(Σ_B spectrum, Σ_W spectrum, NC1) in float64 after each mark's step."""
  xs = jnp.asarray(x, jnp.float64)
  ys = jnp.asarray(y)
  params: _Params = [(jnp.asarray(W, jnp.float64),
                      jnp.zeros(W.shape[1], jnp.float64)) for W in weights]

  def features(params: _Params, x: jax.Array) -> jax.Array:
    for W, b in params[:-1]:
      x = jnp.tanh(x @ W + b)
    return x

  def loss(params: _Params, x: jax.Array, y: jax.Array) -> jax.Array:
    W, b = params[-1]
    logits = features(params, x) @ W + b
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  tx = optax.adam(3e-3)
  state = tx.init(params)

  Carry = tuple[_Params, Any]  # (parameters, Adam's state)

  @jit
  def train(params: _Params, state: Any, n: int) -> Carry:
    def step(_: jax.Array, carry: Carry) -> Carry:
      params, state = carry
      g = jax.grad(loss)(params, xs, ys)
      updates, state = tx.update(g, state, params)
      # apply_updates keeps the tree's structure; optax types any tree.
      return cast(_Params, optax.apply_updates(params, updates)), state
    carry: Carry = jax.lax.fori_loop(0, n, step, (params, state))
    return carry

  @jit
  def measure(params: _Params) -> tuple[jax.Array, jax.Array, jax.Array]:
    m = st.collapse_metrics(features(params, xs), ys, num_classes)
    return m.between_spectrum, m.within_spectrum, m.nc1

  out: list[tuple[np.ndarray, np.ndarray, float]] = []
  done = 0
  for mark in marks:
    params, state = train(params, state, int(mark - done))
    done = int(mark)
    between, within, nc1 = jax.device_get(measure(params))
    out.append((between, within, float(nc1)))
  return out


def _zero_rounding(eigenvalues: np.ndarray) -> np.ndarray:
  """float32 eigenvalues, those within float64 rounding of 0 set to 0."""
  lam = np.asarray(eigenvalues, np.float64)
  tol = lam.size * np.finfo(np.float64).eps * np.abs(lam).max()
  return np.where(np.abs(lam) <= tol, 0.0, lam).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class DarkKnowledgeFrame:
  temperature: float
  codes: np.ndarray          # (C, 2) horseshoe codes
  feature: np.ndarray        # (2,)
  assignment: np.ndarray     # (C,) soft_assignment at this temperature
  temperatures: np.ndarray   # so far
  mass: np.ndarray           # dark_knowledge_mass so far
  entropy: np.ndarray        # entropy so far


def dark_knowledge_frames(frames: int = 40, *, num_classes: int = 9,
                          label: int = 3, t_max: float = 2.0,
                          t_min: float = 0.02) -> list[DarkKnowledgeFrame]:
  """Soft assignment of a feature near one class of a horseshoe codebook
  as the temperature falls geometrically from ``t_max`` to ``t_min``.

  The feature is unit(0.8 c_label + 0.2 c_{label+1}): between its class and
  the next, nearer its own.

  Examples:
    >>> from spectral_targets import render
    >>> frames = render.dark_knowledge_frames(3)
    >>> [round(f.temperature, 2) for f in frames]
    [2.0, 0.2, 0.02]
    >>> int(frames[-1].assignment.argmax())
    3
  """
  v.check_int(frames, "frames", minimum=2)
  C = v.check_int(num_classes, "num_classes", minimum=3)
  v.check_int(label, "label", minimum=0, maximum=C - 2)
  v.check_positive(t_min, "t_min")
  if not t_max > t_min:
    raise ValueError(f"t_max must exceed t_min, got {t_max} <= {t_min}.")
  codes = st.spectral_codebook(st.double_center(st.graded(num_classes, 2.0)),
                               2)
  feature = 0.8 * codes[label] + 0.2 * codes[label + 1]
  feature = feature / jnp.linalg.norm(feature)
  temps: list[float] = []
  mass: list[float] = []
  ent: list[float] = []
  out: list[DarkKnowledgeFrame] = []
  for t in np.geomspace(t_max, t_min, frames):
    a = st.soft_assignment(feature, codes, temperature=float(t))
    temps.append(float(t))
    mass.append(float(st.dark_knowledge_mass(a, jnp.asarray(label))))
    ent.append(float(st.entropy(a)))
    out.append(DarkKnowledgeFrame(float(t), np.asarray(codes),
                                  np.asarray(feature), np.asarray(a),
                                  np.array(temps), np.array(mass),
                                  np.array(ent)))
  return out

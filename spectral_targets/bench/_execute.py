"""Running many models at once: vmapped programs, one epoch per call.

A ``Run`` is one model: a method at one hyperparameter setting on one seed.
``Executor.train(runs)`` trains a list of runs of one task together, as a
stack along a leading axis of one compiled, vmapped one-epoch program
(``_training.epoch_program``) called once per epoch; between epochs the host
refreshes what needs the library's eager code (the online label kernel's
targets, and the codebook of the online-codebook method). The program
computes only the heads and loss terms its runs use (``terms``), so the
runner (``_pipeline.TaskRunner``) batches runs of the same terms together.
``score`` computes every metric of every run in one compiled program per
chunk of runs; ``validate`` only what tuning ranks by.

Every program's shapes are known before training starts, so the task
submits them to a ``Compiler`` (``_compile``) first; they compile on worker
threads while earlier work trains.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

import spectral_targets as st
from spectral_targets.bench import _bodies, _config, _training
from spectral_targets.bench._compile import Compiler
from spectral_targets.bench._tasks import Split

if TYPE_CHECKING:
  from spectral_targets.bench._methods import Method

#: Runs scored per call of the scoring program.
SCORE_CHUNK = 16
#: Number of bins of the expected calibration error.
ECE_BINS = 15


@dataclasses.dataclass(frozen=True)
class Run:
  """One model: ``method`` (a ``_methods.Method``) at ``hp`` on ``seed``."""
  method: Method
  hp: dict
  seed: int
  cfg: _config.MethodConfig


@dataclasses.dataclass
class SeedData(Split):
  """Per-seed splits stacked on a leading axis (every seed has the same
  split sizes, so each of ``Split``'s arrays gains a leading seed axis S),
  with each seed's class distances and teacher outputs; for mixup
  training (``_training.batch``) each epoch's partner and λ of every
  training example and the teachers' outputs on those mixed inputs,
  epoch-major (E, S, n, ·): an epoch's slice is contiguous."""
  seeds: list
  distances: np.ndarray  # (S, C, C)
  teacher_logits: np.ndarray | None = None  # (S, n, C)
  teacher_features: np.ndarray | None = None  # (S, n, F)
  mix_partner: np.ndarray | None = None  # (E, S, n) int32
  mix_lambda: np.ndarray | None = None  # (E, S, n) float32
  mixed_logits: np.ndarray | None = None  # (E, S, n, C)
  mixed_features: np.ndarray | None = None  # (E, S, n, F)

  @classmethod
  def stack(cls, seeds, splits, distances):
    arrays = {f.name: np.stack([getattr(s, f.name) for s in splits])
              for f in dataclasses.fields(Split)}
    return cls(**arrays, seeds=list(seeds),
               distances=np.asarray(distances, np.float32))

  def index(self, seed: int) -> int:
    return self.seeds.index(seed)


class Executor:
  """Trains and scores the runs of one task (one body, one feature width).

  ``fast_compile`` compiles at XLA's backend optimisation level 0 (for
  ``--quick``: less compile time for slower code). ``specialise``: each
  batch of runs trains in a program of only the parts of the model its
  runs use (``_training.active_terms``; the runner batches runs of the same
  terms together), else in the one program of every part (one compile per
  batch size: ``--quick``, where compiling costs more than training).
  """

  def __init__(self, task, data: SeedData, *, body: str, features: int,
               batch_size: int, programs: Compiler,
               fast_compile: bool = False, specialise: bool = True,
               on_epoch: Callable[[], None] = lambda: None, tree=None):
    self.task, self.data = task, data
    self.C = task.num_classes
    self.F = features
    self.body_name = body
    self.body = _bodies.make_body(body, features)
    self.n = data.y_train.shape[1]
    self.batch = min(batch_size, self.n)
    self.programs = programs
    self.options = {"xla_backend_optimization_level": 0} if fast_compile \
        else None
    self.on_epoch = on_epoch
    self.specialise = specialise
    self.tree = tree
    self.distilled = data.teacher_logits is not None
    self.mixed = data.mix_partner is not None
    self.sample_shape = data.x_train.shape[2:]
    #: Online-codebook refreshes that kept the old codes (see
    #: ``_between_epochs``).
    self.refresh_failures = 0

  def with_body(self, body: str) -> Executor:
    """An executor of the same task, data and settings on ``body`` (no
    tree: the methods of a second body read none)."""
    return Executor(self.task, self.data, body=body, features=self.F,
                    batch_size=self.batch, programs=self.programs,
                    fast_compile=self.options is not None,
                    specialise=self.specialise, on_epoch=self.on_epoch)

  # -- programs ----------------------------------------------------------------

  def _key(self, *parts):
    """Programs are shared by every executor with the same body, shapes and
    loss terms (e.g. the hierarchy task and its shifted variants)."""
    d = self.data
    shapes = tuple(getattr(d, k).shape for k in (
        "x_train", "x_val", "x_test", "distances"))
    return ("bench", self.body_name, self.F, self.C, self.batch, shapes,
            self.tree is not None, self.distilled, *parts)

  def terms(self, runs: list[Run]) -> frozenset:
    """The parts of the model a program training ``runs`` computes: the
    union of their ``_training.active_terms`` (every part unless
    ``specialise``)."""
    if not self.specialise:
      return _training.ALL_TERMS
    return frozenset().union(*(
        _training.active_terms(r.cfg, tracks_kernel=r.method.codes == "online")
        for r in runs))

  def _program(self, terms):
    return _training.epoch_program(self.body, self.batch, self.n,
                                   self.tree is not None, self.distilled,
                                   self.mixed, terms)

  def _state_spec(self, M):
    state = _training.initial_state(self.body, self.C, self.F,
                                    list(range(M)), self.sample_shape)
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)

  def _cfg_spec(self, M):
    cfg = _config.method_config(self.C, self.F, lr=1.0, total_steps=1)
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct((M,) + a.shape, a.dtype), cfg)

  def _teacher_args(self):
    d = self.data
    if self.distilled:
      return d.teacher_logits, d.teacher_features
    S = len(d.seeds)
    return (np.zeros((S, 1, 1), np.float32), np.zeros((S, 1, 1), np.float32))

  def _mix_args(self, epoch: int):
    """The mixed program's ``mix`` argument at ``epoch`` (``_training.batch``);
    a placeholder for every other program."""
    d = self.data
    partner, lam = d.mix_partner, d.mix_lambda
    logits, features = d.mixed_logits, d.mixed_features
    if partner is None or lam is None or logits is None or features is None:
      return np.zeros((1,), np.float32)
    if epoch >= partner.shape[0]:
      raise ValueError(f"epoch {epoch} has no mixup draw: the data carry "
                       f"{partner.shape[0]} epochs of them.")
    return partner[epoch], lam[epoch], logits[epoch], features[epoch]

  def _train_key(self, M, terms):
    return self._key("epoch", self.mixed, M, tuple(sorted(terms)))

  def submit_train(self, M: int, terms: frozenset = _training.ALL_TERMS):
    """Queues the compilation of the one-epoch program for M models that
    computes ``terms`` (``terms(runs)``)."""
    key = self._train_key(M, terms)
    if key in self.programs:
      return
    d = self.data
    i32 = jax.ShapeDtypeStruct((M,), np.int32)
    self.programs.submit(
        key, self._program(terms), self._state_spec(M), self._cfg_spec(M),
        i32, i32, jax.ShapeDtypeStruct((), np.int32), d.x_train, d.y_train,
        *self._teacher_args(), self.tree,
        jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                               self._mix_args(0)), options=self.options)

  def submit_score(self):
    key = self._key("score", SCORE_CHUNK)
    if key in self.programs:
      return
    d = self.data
    params = self._state_spec(SCORE_CHUNK)[0]
    self.programs.submit(
        key, _scorer(self.body, self.C, self.task.ks,
                     self.task.ordinal), params,
        self._cfg_spec(SCORE_CHUNK),
        jax.ShapeDtypeStruct((SCORE_CHUNK,), np.int32), d.x_train,
        d.y_train, d.x_val, d.y_val, d.x_test, d.y_test, d.distances,
        options=self.options)

  def submit_validate(self):
    key = self._key("validate", SCORE_CHUNK)
    if key in self.programs:
      return
    d = self.data
    self.programs.submit(
        key, _validator(self.body), self._state_spec(SCORE_CHUNK)[0],
        self._cfg_spec(SCORE_CHUNK),
        jax.ShapeDtypeStruct((SCORE_CHUNK,), np.int32), d.x_val, d.y_val,
        d.distances, options=self.options)

  # -- training ----------------------------------------------------------------

  def train(self, runs: list[Run], epochs: int, *, padding: int = 0):
    """Trains ``runs`` together for ``epochs``; returns the stacked final
    parameters (leading axis in the order of ``runs``) and configs. The
    last ``padding`` runs only fill the program's fixed size: their results
    are discarded, and nothing is refreshed for them between epochs."""
    state, cfgs = self.advance(runs, self.initial(runs), start=0,
                               epochs=epochs, padding=padding)
    return state[0], cfgs

  def initial(self, runs: list[Run]):
    """The untrained ``((params, opt_state, online), cfgs)`` of ``runs``,
    stacked: what ``advance`` starts from at epoch 0."""
    state = _training.initial_state(self.body, self.C, self.F,
                                    [r.seed for r in runs],
                                    self.sample_shape)
    return state, _config.stack([r.cfg for r in runs])

  def advance(self, runs: list[Run], state, *, start: int, epochs: int,
              padding: int = 0):
    """Trains ``runs`` on from ``state`` = ``(state, cfgs)`` (stacked, as
    ``initial`` or an earlier ``advance`` returns them, after ``start``
    epochs) for ``epochs`` more epochs; returns the new ``(state, cfgs)``. Resuming is exact: epoch e of a model draws its minibatches
    from (seed, e) and its schedule counts the optimiser's own steps, so
    training in two calls equals training in one."""
    (params, opt_state, online), cfgs = state
    M = len(runs)
    terms = self.terms(runs)
    self.submit_train(M, terms)
    program = self.programs[self._train_key(M, terms)]
    seeds = np.asarray([r.seed for r in runs], np.int32)
    index = np.asarray([self.data.index(r.seed) for r in runs], np.int32)
    online_codes = [i for i, r in enumerate(runs[:M - padding])
                    if r.method.codes == "online"]
    device_cfgs = jax.device_put(cfgs)
    teacher = self._teacher_args()
    for epoch in range(start, start + epochs):
      params, opt_state, online = program(
          (params, opt_state, online), device_cfgs, index, seeds,
          np.int32(epoch), self.data.x_train, self.data.y_train, *teacher,
          self.tree, self._mix_args(epoch))
      # One epoch at a time: the host work below (and the progress bar)
      # follows the epoch it belongs to, and no eager computation overlaps
      # a running program.
      jax.block_until_ready(params)
      online, refreshed = self._between_epochs(online, cfgs, online_codes)
      if refreshed:
        device_cfgs = jax.device_put(cfgs)
      self.on_epoch()
    return (params, opt_state, online), cfgs

  def _between_epochs(self, online, cfgs, online_codes):
    """The next epoch's online soft targets (each model's ``OnlineKernel``
    distributions, OLS's soft labels) and the refreshed codebooks of the
    online-codebook runs (``refresh_codebook`` of the double-centred online
    kernel, written into ``cfgs``); the online kernels start over."""
    kernel = online["kernel"]
    targets = _distributions(kernel)
    for i in online_codes:
      state = jax.tree_util.tree_map(lambda a, i=i: a[i], kernel)
      F = int(cfgs.mask[i].sum())
      old = cfgs.codebook[i][:, :F]
      try:
        new = st.refresh_codebook(old, st.double_center(state.kernel()))
      except ValueError:
        # A kernel whose top modes cannot give every class its own code
        # (early in training): keep the codes in use, and count it.
        self.refresh_failures += 1
        continue
      cfgs.codebook[i][:, :F] = np.asarray(new)
    reset = jax.tree_util.tree_map(np.zeros_like, kernel)
    return dict(online, targets=targets, kernel=reset), bool(online_codes)

  def features(self, params, cfgs, runs: list[Run], *, split: str
               ) -> np.ndarray:
    """(M, n, F) body features of every run on its seed's ``split``."""
    return self._forward(params, cfgs, runs, split)[0]

  def logits(self, params, cfgs, runs: list[Run], *, split: str
             ) -> np.ndarray:
    """(M, n, C) logits of every run on its seed's ``split``."""
    return self._forward(params, cfgs, runs, split)[1]

  def outputs_on(self, params, cfgs, runs: list[Run], x: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(M, m, F) body features and (M, m, C) logits of every run on its
    seed's inputs ``x[seed index]`` (``x``: (S, m, ...), stacked per seed
    as the splits are: a transfer pool, a mixed training set)."""
    index = np.asarray([self.data.index(r.seed) for r in runs], np.int32)
    z, logits = _forward(self.body)(params, cfgs, index, x)
    return np.asarray(z), np.asarray(logits)

  def _forward(self, params, cfgs, runs, split):
    x = getattr(self.data, f"x_{split}")
    index = np.asarray([self.data.index(r.seed) for r in runs], np.int32)
    z, logits = _forward(self.body)(params, cfgs, index, x)
    return np.asarray(z), np.asarray(logits)

  # -- scoring -----------------------------------------------------------------

  def score(self, params, cfgs, runs: list[Run]) -> list[dict]:
    """Every metric of every run (one dict per run, in order)."""
    self.submit_score()
    return self._chunked(self.programs[self._key("score", SCORE_CHUNK)],
                         params, cfgs, runs, "train", "val", "test")

  def validate(self, params, cfgs, runs: list[Run]) -> list[dict]:
    """What tuning ranks by: every run's validation accuracy, NLL and
    mistake severity (``VALIDATION_METRICS``, as ``score`` gives them), at a
    fraction of ``score``'s cost (no test split, no calibration or
    collapse)."""
    self.submit_validate()
    return self._chunked(self.programs[self._key("validate", SCORE_CHUNK)],
                         params, cfgs, runs, "val")

  def _chunked(self, program, params, cfgs, runs, *splits) -> list[dict]:
    """``program``'s metrics of every run, ``SCORE_CHUNK`` runs per call
    (the last chunk padded by repeating its last run), on each seed's
    ``splits`` and class distances."""
    M = len(runs)
    index = np.asarray([self.data.index(r.seed) for r in runs], np.int32)
    d = self.data
    data = [getattr(d, f"{xy}_{split}") for split in splits
            for xy in ("x", "y")]
    out = []
    for start in range(0, M, SCORE_CHUNK):
      take = np.minimum(np.arange(start, start + SCORE_CHUNK), M - 1)
      chunk = jax.tree_util.tree_map(lambda a, t=take: a[t], (params, cfgs))
      metrics = program(*chunk, index[take], *data, d.distances)
      metrics = {k: np.asarray(v) for k, v in metrics.items()}
      for j in range(min(SCORE_CHUNK, M - start)):
        out.append({k: float(v[j]) for k, v in metrics.items()})
    return out


#: What ``Executor.validate`` gives (and tuning ranks by).
VALIDATION_METRICS = ("val_accuracy", "val_nll", "val_severity")


def _applicable(cfg, out: dict) -> dict:
  """``out`` with the metrics that read probabilities NaN (not applicable)
  for a model whose head has none (``cfg.probabilistic`` 0)."""
  nan = jnp.float32(jnp.nan)
  return {k: jnp.where(cfg.probabilistic > 0, v, nan)
          if _config.needs_probabilities(k) else v for k, v in out.items()}


def _validation(body, params, cfg, index, xv, yv, distances):
  """(validation logits, ``VALIDATION_METRICS``) of one model: the part of
  the scoring that tuning reads, shared by ``_scorer`` and ``_validator``."""
  D = distances[index]
  _, logits, _ = _training.forward(body, params, cfg, xv[index])
  y = yv[index]
  return logits, {
      "val_accuracy": (logits.argmax(-1) == y).mean(),
      "val_nll": optax.softmax_cross_entropy_with_integer_labels(
          logits, y).mean(),
      "val_severity": st.mistake_severity(logits.argmax(-1), y, D),
  }


@functools.cache
def _validator(body):
  """The jitted ``VALIDATION_METRICS`` of a chunk of runs."""
  def one(params, cfg, index, xv, yv, distances):
    return _applicable(cfg, _validation(body, params, cfg, index, xv, yv,
                                        distances)[1])
  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None, None, None)))


@jax.jit
def _distributions(kernels):
  return jax.vmap(lambda k: k.distributions())(kernels)


@functools.cache
def _forward(body):
  return jax.jit(jax.vmap(
      lambda p, c, i, x: _training.forward(body, p, c, x[i])[:2],
      in_axes=(0, 0, 0, None)))


@functools.cache
def _scorer(body, num_classes, ks, ordinal=False):
  """The jitted scoring of a chunk of runs: validation accuracy, NLL and
  severity (tuning), test accuracy, mistake severity, hdist@k (and the
  three again under CRM's expected-cost decision, ``crm_*``), NLL, ECE
  raw and after temperature scaling on validation, NC1 of the training
  features the head sees and the condition number of their Σ_B; on an
  ordinal task also the MAE in grades and quadratic weighted kappa of the
  argmax, and the MAE of the posterior median (``median_mae``). For a model
  whose head has no probabilities (``cfg.probabilistic`` 0: regression on
  the grade index) the metrics that read them
  (``_config.needs_probabilities``) are NaN: not applicable."""

  def one(params, cfg, index, xtr, ytr, xv, yv, xte, yte, distances):
    D = distances[index]

    def logits_of(x):
      return _training.forward(body, params, cfg, x)

    val_logits, out = _validation(body, params, cfg, index, xv, yv,
                                  distances)
    _, test_logits, _ = logits_of(xte[index])
    _, _, seen = logits_of(xtr[index])
    y_val, y_test, y_train = yv[index], yte[index], ytr[index]
    pred = test_logits.argmax(-1)
    tau = st.fit_temperature(val_logits, y_val)
    collapse = st.collapse_metrics(seen, y_train, num_classes)
    between = collapse.between_spectrum[:num_classes - 1]
    out = {
        **out,
        "accuracy": (pred == y_test).mean(),
        "severity": st.mistake_severity(pred, y_test, D),
        "nll": optax.softmax_cross_entropy_with_integer_labels(
            test_logits, y_test).mean(),
        "ece": st.expected_calibration_error(
            jax.nn.softmax(test_logits), y_test, num_bins=ECE_BINS),
        # Temperature scaling fitted on validation (NaN where no finite
        # temperature exists, e.g. every validation example right).
        "temperature": tau,
        "ece_calibrated": st.expected_calibration_error(
            jax.nn.softmax(test_logits / tau), y_test, num_bins=ECE_BINS),
        "nc1": collapse.nc1,
        # Modes at or below rounding (eps · λ₁) count as eps · λ₁: κ at
        # most 1/eps, never negative.
        "between_condition": between[0] / jnp.maximum(
            between[-1], jnp.finfo(between.dtype).eps * between[0]),
    }
    # CRM (Karthik et al. 2021): the same probabilities re-ranked by
    # expected cost, argmin_k Σ_j p_j D_jk, at no training cost: "crm_*"
    # are the method's metrics under that decision.
    probs = jax.nn.softmax(test_logits)
    crm = st.expected_cost_predictions(probs, D)
    out["crm_accuracy"] = (crm == y_test).mean()
    out["crm_severity"] = st.mistake_severity(crm, y_test, D)
    for k in ks:
      out[f"hdist@{k}"] = st.hierarchical_distance_at_k(
          test_logits, y_test, D, k=k)
      out[f"crm_hdist@{k}"] = st.hierarchical_distance_at_k(
          -st.expected_costs(probs, D), y_test, D, k=k)
    if ordinal:
      out["mae"] = st.mean_absolute_error(pred, y_test)
      out["qwk"] = st.quadratic_weighted_kappa(pred, y_test)
      out["median_mae"] = st.mean_absolute_error(
          st.posterior_median(probs), y_test)
    return _applicable(cfg, out)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0) + (None,) * 7))

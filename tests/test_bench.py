"""The main job, `spectral-targets bench`: its protocol, statistics and data,
and the quick run end to end."""

import dataclasses
import json
import math
import subprocess
import sys
import zlib

import numpy as np
import pytest

from spectral_targets import _cli, bench

pytestmark = pytest.mark.skipif(bool(bench.missing_requirements()),
                                reason="bench extra not installed")


# -- paired statistics ---------------------------------------------------------


def test_paired_interval_matches_scipy():
  from scipy import stats

  from spectral_targets.bench import _stats
  rng = np.random.default_rng(0)
  for n in (2, 3, 5, 12):
    a = rng.normal(size=n)
    b = a + rng.normal(0.3, 0.5, size=n)
    d = _stats.paired_difference(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d["mean"] == pytest.approx(np.mean(a - b))
    assert d["low"] == pytest.approx(ref.low)
    assert d["high"] == pytest.approx(ref.high)
    assert d["n"] == n


def test_paired_verdicts():
  from spectral_targets.bench import _stats
  higher = _stats.paired_difference([1.0, 1.1, 1.2, 1.3], [0.0, 0.1, 0.1,
                                                          0.2])
  assert higher["verdict"] == "higher" and higher["low"] > 0
  lower = _stats.paired_difference([0.0, 0.1, 0.1], [1.0, 1.1, 1.3])
  assert lower["verdict"] == "lower" and lower["high"] < 0
  tie = _stats.paired_difference([0.0, 1.0, -1.0], [0.1, 0.0, 0.0])
  assert tie["verdict"] == "tie" and tie["low"] < 0 < tie["high"]
  one = _stats.paired_difference([1.0], [0.0])
  assert one["mean"] == 1.0 and one["low"] is None and one["verdict"] == "n/a"
  nan = _stats.paired_difference([1.0, float("nan")], [0.0, 0.0])
  assert nan["mean"] is None and nan["verdict"] == "n/a"
  with pytest.raises(ValueError, match="equal 1-D shapes"):
    _stats.paired_difference([1.0, 2.0], [1.0])


def test_summary_uses_the_sample_std_and_none_for_one_seed():
  from spectral_targets.bench import _stats
  s = _stats.summary([1.0, 2.0, 4.0])
  assert s["std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
  assert _stats.summary([3.0]) == {"mean": 3.0, "std": None, "n": 1}
  assert _stats.summary([1.0, float("nan")])["mean"] is None


# -- the tuning protocol ---------------------------------------------------------


def _tune_on(objective, method):
  """The three-stage protocol driven by a known validation objective."""
  from spectral_targets.bench import _tuning
  trials = []

  def evaluate(settings):
    for hp in settings:
      acc = objective(hp)
      trials.append({"hp": hp, "val_accuracy": [acc, acc],
                     "val_nll": [1 - acc, 1 - acc]})

  evaluate(_tuning.stage_one(method))
  lr = _tuning.choose(method, trials).chosen["lr"]
  evaluate(_tuning.stage_two(method, lr))
  evaluate(_tuning.stage_three(method, _tuning.choose(method,
                                                      trials).chosen))
  return _tuning.choose(method, trials), trials


def test_selection_finds_a_known_optimum_inside_the_grid():
  from spectral_targets.bench._methods import METHODS
  method = METHODS["cosine"]

  def objective(hp):  # best at lr 1e-2, scale 16, with an interaction
    return 1 - (np.log(hp["lr"] / 1e-2) ** 2
                + np.log(hp["scale"] / 16) ** 2
                + 0.2 * np.log(hp["lr"] / 1e-2) * np.log(hp["scale"] / 16))

  selection, trials = _tune_on(objective, method)
  assert selection.chosen == {"lr": 1e-2, "scale": 16.0}
  assert selection.at_edge == []
  # Stage 1: six learning rates; stage 2: four more scales; stage 3: the
  # two learning rates next to the chosen one, at the chosen scale.
  assert len(trials) == 6 + 4 + 2


def test_selection_flags_a_choice_at_the_edge():
  from spectral_targets.bench._methods import METHODS
  method = METHODS["smooth-labels"]
  selection, trials = _tune_on(lambda hp: hp["lr"] - hp["alpha"], method)
  # The learning rate is unbounded: stage 3 stepped beyond 5e-2, and the
  # step won, so the choice is still at the end of what was tried.
  assert {"lr": 0.1, "alpha": 0.05} in [t["hp"] for t in trials]
  assert selection.chosen["lr"] == 0.1 and selection.chosen["alpha"] == 0.05
  assert set(selection.at_edge) == {"lr", "alpha"}


@pytest.mark.parametrize("peak, chosen, flagged", [(1.5, 2.0, False),
                                                   (0.9, 1.0, True)])
def test_selection_steps_beyond_an_end_of_the_scale_grid(peak, chosen,
                                                         flagged):
  from spectral_targets.bench._methods import METHODS, SCALES
  method = METHODS["simplex"]

  def objective(hp):  # best at lr 1e-2 and at a scale below the grid's 2
    return 1 - np.log(hp["lr"] / 1e-2) ** 2 - np.log(hp["scale"] / peak) ** 2

  selection, trials = _tune_on(objective, method)
  tried = sorted({t["hp"]["scale"] for t in trials})
  assert tried == [min(SCALES) / 2, *SCALES]
  assert selection.chosen == {"lr": 1e-2, "scale": chosen}
  assert ("scale" in selection.at_edge) == flagged


def test_the_full_grid_finds_an_optimum_the_cross_misses():
  # A ridge: along lr at the default scale 8 the best lr is 5e-2, along
  # scale at 5e-2 the best is 8, yet (1e-2, 4) beats both (as cosine's
  # validation did on mnist1d).
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS, SCALES
  method = METHODS["cosine"]

  def objective(hp):
    ridge = np.log(hp["lr"] / 5e-2) - 2.3 * np.log(hp["scale"] / 8)
    return 1 - ridge ** 2 - 0.01 * np.log(hp["scale"] / 4) ** 2

  cross, _ = _tune_on(objective, method)
  assert cross.chosen == {"lr": 5e-2, "scale": 8.0}
  trials = []
  for hp in _tuning.full_grid(method):
    acc = objective(hp)
    trials.append({"hp": hp, "val_accuracy": [acc, acc],
                   "val_nll": [1 - acc, 1 - acc]})
  assert len(trials) == len(_tuning.LEARNING_RATES) * len(SCALES)
  grid = _tuning.choose(method, trials)
  assert grid.chosen == {"lr": 1e-2, "scale": 4.0}
  assert objective(grid.chosen) > objective(cross.chosen)
  assert _tuning.edge_steps(method, grid.chosen) == []


def test_selection_breaks_accuracy_ties_by_nll_and_averages_seeds():
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS
  trials = [{"hp": {"lr": 1e-2}, "val_accuracy": [0.9, 0.7],
             "val_nll": [0.3, 0.3]},
            {"hp": {"lr": 2e-2}, "val_accuracy": [0.8, 0.8],
             "val_nll": [0.2, 0.2]},
            {"hp": {"lr": 5e-3}, "val_accuracy": [1.0, 0.5],
             "val_nll": [0.1, 0.1]}]
  chosen = _tuning.choose(METHODS["one-hot"], trials).chosen
  assert chosen == {"lr": 2e-2}


# -- successive halving ------------------------------------------------------------


class _CurveTrainer:
  """A trainer whose validation accuracy after t of E epochs is a quadratic
  in (log lr, log scale), peaked at ``best``, times a learning curve
  (t / E)^0.5, plus noise drawn per (cell, t); it checks that resumed cells
  continue from where they stopped and counts the cells and cell-epochs
  trained per call (the compute)."""

  def __init__(self, epochs, best, noise=0.01):
    self.epochs, self.best, self.noise = epochs, best, noise
    self.at = {}  # cell -> epochs trained so far
    self.calls = []  # (stage, cells, epochs trained per cell)
    self.asked = []  # the settings of every call, in order

  def quality(self, hp):  # knobs not in best peak at 0.1
    return 1 - 0.1 * sum(np.log(v / self.best.get(k, 0.1)) ** 2
                         for k, v in hp.items())

  def train_to(self, settings, until, stage):
    from spectral_targets.bench import _tuning
    if not any(settings.values()):
      return {}  # as the real trainer: nothing to train, no call
    self.asked.append((settings, until))
    out, at, self.at = {}, self.at, {}
    cells = 0
    for name, hps in settings.items():
      rows = []
      for hp in hps:
        cell = (name, _tuning.key(hp))
        start = at.get(cell, 0)
        assert start < until  # resumed, never retrained
        self.at[cell] = until
        cells += 1
        rng = np.random.default_rng(zlib.crc32(repr((cell, until)).encode()))
        acc = (self.quality(hp) * (until / self.epochs) ** 0.5
               + self.noise * rng.normal(size=2))
        rows.append({"hp": hp, "val_accuracy": list(acc),
                     "val_nll": list(1 - acc)})
      out[name] = rows
    self.calls.append((stage, cells, until - max(
        [at.get((n, _tuning.key(hp)), 0) for n, hps in settings.items()
         for hp in hps] or [0])))
    return out


def test_halving_keeps_the_best_cell_of_a_noisy_quadratic():
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS, SCALES
  method = METHODS["cosine"]
  best = {"lr": 1e-2, "scale": 8.0}
  trainer = _CurveTrainer(25, best)
  selection = _tuning.tune([method], trainer, search="halving", eta=3)[
      "cosine"]
  assert selection.chosen == best and selection.at_edge == []
  cells = len(_tuning.LEARNING_RATES) * len(SCALES)
  rungs = selection.halving["rungs"]
  assert selection.halving["eta"] == 3
  # E/9, E/3, E: three rungs that add up to the budget.
  assert [r["until"] for r in rungs] == [3, 8, 25]
  assert sum(r["epochs"] for r in rungs) == 25
  # The batch shrinks: every cell, then the best third, twice; nothing
  # after the last rung (the choice is inside the grid: no edge steps).
  assert [n for _, n, _ in trainer.calls] == [cells, 10, 4]
  assert [len(r["cells"]) for r in rungs] == [cells, 10, 4]
  assert [len(r["survivors"]) for r in rungs] == [10, 4, 4]
  for before, after in zip(rungs, rungs[1:]):
    assert [c["hp"] for c in after["cells"]] == before["survivors"]
  assert best in rungs[-1]["survivors"]
  # Survivors resume: each call trains only the epochs since the last
  # rung, a third of the grid's cell-epochs in all.
  assert [e for _, _, e in trainer.calls] == [3, 5, 17]
  spent = sum(n * e for _, n, e in trainer.calls)
  assert spent == cells * 3 + 10 * 5 + 4 * 17 < cells * 25 / 3
  # The choice is made among cells trained to the full budget only.
  assert len(selection.trials) == 4


def test_halving_follows_a_choice_at_the_edge_one_step_beyond():
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS
  trainer = _CurveTrainer(25, {"lr": 0.1, "scale": 8.0}, noise=0.0)
  selection = _tuning.tune([METHODS["cosine"]], trainer, search="halving")[
      "cosine"]
  assert selection.chosen == {"lr": 0.1, "scale": 8.0}
  assert selection.at_edge == ["lr"]
  settings, until = trainer.asked[-1]
  assert settings == {"cosine": [{"lr": 0.1, "scale": 8.0}]}
  assert until == 25 and trainer.calls[-1] == (4, 1, 25)


@pytest.mark.parametrize("search", ["halving", "grid", "cross"])
def test_no_edge_steps_leaves_a_choice_at_the_edge_flagged(search):
  # edges=False (--quick): the same search up to its steps beyond an end,
  # which it leaves out; the choice at the end stays flagged.
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS
  asked = {}
  for edges in (True, False):
    trainer = _CurveTrainer(25, {"lr": 0.1, "scale": 8.0}, noise=0.0)
    selection = _tuning.tune([METHODS["cosine"]], trainer, search=search,
                             edges=edges)["cosine"]
    asked[edges] = [hp for settings, _ in trainer.asked
                    for hp in settings.get("cosine", [])]
  steps = [{"lr": 0.1, "scale": 8.0}]
  assert set(map(_tuning.key, asked[True])) - set(
      map(_tuning.key, asked[False])) == set(map(_tuning.key, steps))
  assert all(hp["lr"] in _tuning.LEARNING_RATES for hp in asked[False])
  assert selection.chosen == {"lr": 5e-2, "scale": 8.0}
  assert selection.at_edge == ["lr"]


def test_halving_with_eta_one_is_the_grid():
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS
  methods = [METHODS["cosine"], METHODS["smooth-labels"]]
  best = {"lr": 2e-2, "scale": 16.0}
  selections = {}
  for search, eta in (("grid", 3), ("halving", 1)):
    trainer = _CurveTrainer(25, best)
    selections[search] = (
        _tuning.tune(methods, trainer, search=search, eta=eta),
        trainer.asked)
  (grid, grid_asked), (halving, halving_asked) = selections.values()
  assert halving_asked == grid_asked
  for m in methods:
    g, h = grid[m.name], halving[m.name]
    assert (h.chosen, h.trials, h.at_edge) == (g.chosen, g.trials, g.at_edge)
    assert g.halving is None
    assert [r["until"] for r in h.halving["rungs"]] == [25]


def test_survivors_keep_a_third_but_never_fewer_than_eta():
  from spectral_targets.bench import _tuning
  assert [_tuning.survivors(n) for n in (30, 10, 6, 4, 3, 2, 1, 0)] == [
      10, 4, 3, 3, 3, 2, 1, 0]
  assert [_tuning.survivors(n, 2) for n in (9, 3, 2)] == [5, 2, 2]
  assert _tuning.survivors(7, 1) == 7
  with pytest.raises(ValueError, match="cells must be >= 0"):
    _tuning.survivors(-1)


def test_halving_carries_a_small_grid_whole_to_the_budget():
  # One-hot's six learning rates on mnist1d: thinned to η = 3 at the first
  # rung and never below, so a near-tie at epoch 3 cannot drop the cell
  # that is best at the end (here the curves cross after the first rung).
  from spectral_targets.bench import _tuning
  from spectral_targets.bench._methods import METHODS

  class Crossing(_CurveTrainer):
    def train_to(self, settings, until, stage):
      out = super().train_to(settings, until, stage)
      for rows in out.values():
        for r in rows:  # lr 2e-2: third early, first at the end
          lead = (0.01 if until == self.epochs else -0.001) * (
              r["hp"]["lr"] == 2e-2)
          r["val_accuracy"] = [a + lead for a in r["val_accuracy"]]
      return out

  trainer = Crossing(25, {"lr": 1e-2}, noise=0.0)
  trainer.quality = lambda hp: 1 - 0.01 * np.log(hp["lr"] / 1e-2) ** 2
  selection = _tuning.tune([METHODS["one-hot"], METHODS["cosine"]], trainer,
                           search="halving")["one-hot"]
  rungs = selection.halving["rungs"]
  assert [len(r["cells"]) for r in rungs] == [6, 3, 3]
  assert {hp["lr"] for hp in rungs[0]["survivors"]} == {5e-3, 1e-2, 2e-2}
  assert selection.chosen == {"lr": 2e-2}


def test_rungs():
  from spectral_targets.bench import _tuning
  assert _tuning.rungs(25, 30, 3) == [3, 8, 25]
  assert _tuning.rungs(30, 30, 3) == [1, 3, 10, 30]  # capped: ⌊log₃ 30⌋
  # At least η survivors: 6 -> 3, and a grid of η cells is not thinned.
  assert _tuning.rungs(25, 6, 3) == [8, 25]
  assert _tuning.rungs(25, 3, 3) == [25]
  assert _tuning.rungs(25, 1, 3) == [25]
  assert _tuning.rungs(2, 2, 2) == [2]
  assert _tuning.rungs(2, 3, 2) == [1, 2]
  assert _tuning.rungs(25, 30, 1) == [25]
  # The first rung ends after the warm-up (epoch 1): 30 / 27 would not.
  assert _tuning.rungs(30, 30, 3, after=1) == [3, 10, 30]
  assert _tuning.rungs(25, 30, 3, after=1) == [3, 8, 25]
  assert _tuning.rungs(5, 30, 3, after=1) == [2, 5]
  assert _tuning.rungs(2, 30, 3, after=1) == [2]  # no rung after warm-up
  with pytest.raises(ValueError, match="eta must be >= 1"):
    _tuning.rungs(25, 30, 0)


# -- data that vary with the seed ------------------------------------------------


def test_mnist1d_validation_adds_fresh_generator_inputs_to_the_held_out_500():
  from spectral_targets.bench import _tasks
  split = _tasks.mnist1d_split(3)
  raw = _tasks._mnist1d_raw(3)
  # The first 500 are the generator's held-out training samples, in order.
  np.testing.assert_array_equal(split.y_val[:500], raw["y"][3500:])
  # Standardised with the training part's statistics, as every split is.
  mean, std = raw["x"][:3500].mean(0), raw["x"][:3500].std(0)
  np.testing.assert_allclose(split.x_val[:500], (raw["x"][3500:] - mean) / std,
                             rtol=1e-5, atol=1e-5)
  # The 1,500 fresh inputs come from a stream of their own: none repeats a
  # training, test or transfer-pool input, every class occurs.
  fresh = split.x_val[500:]
  others = np.concatenate([split.x_train, split.x_test,
                           _tasks.mnist1d_pool(3, 500)])
  # Squared distances as |a|² + |b|² − 2ab (float64), never (1500, 5000, 40).
  fresh64, others64 = fresh.astype(np.float64), others.astype(np.float64)
  gaps = ((fresh64 ** 2).sum(1)[:, None] + (others64 ** 2).sum(1)[None, :]
          - 2 * fresh64 @ others64.T)
  assert gaps.min() > 1e-3
  assert np.bincount(split.y_val[500:], minlength=10).min() > 50


def test_seeds_vary_the_data():
  from spectral_targets.bench import _tasks
  mnist = _tasks.mnist1d_task()
  a, b, a2 = mnist.draw(0), mnist.draw(1), mnist.draw(0)
  assert not np.allclose(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.x_train, a2.x_train)
  assert a.x_train.shape == (3500, 40) and a.x_test.shape == (1000, 40)
  assert a.x_val.shape == (2000, 40) and a.y_val.shape == (2000,)
  digits = _tasks.digits_task()
  d0, d1 = digits.draw(0), digits.draw(1)
  assert d0.y_test.shape == d1.y_test.shape
  assert not np.array_equal(d0.x_test, d1.x_test)
  # Stratified: every class keeps its share in every split.
  assert np.bincount(d0.y_val).min() >= 20
  h0, h1 = (_tasks.hierarchy_split(_tasks.hierarchy_task().tree, s)
            for s in (0, 1))
  assert not np.allclose(h0.x_train, h1.x_train)
  # The data-size axis: ten times the training samples a class, the same
  # validation and test sizes.
  big = _tasks.hierarchy_task(train_per_class=400, name="hierarchy-400")
  b0 = big.draw(0)
  assert np.array_equal(np.bincount(b0.y_train), np.full(100, 400))
  assert b0.y_val.shape == h0.y_val.shape
  assert b0.y_test.shape == h0.y_test.shape


def test_standardisation_keeps_constant_features_finite():
  from spectral_targets.bench._tasks import _standardise
  x_train = np.array([[0.0, 1.0], [0.0, 3.0]])
  x_test = np.array([[5.0, 2.0]])
  tr, te = _standardise(x_train, x_test)
  np.testing.assert_allclose(te, [[5.0, 0.0]])
  np.testing.assert_allclose(tr, [[0.0, -1.0], [0.0, 1.0]])


def test_lca_heights_and_the_shifted_tree():
  import spectral_targets as st
  from spectral_targets.bench import _tasks
  edges = [("r", "a"), ("r", "b"), ("a", "x"), ("a", "y"), ("b", "z"),
           ("b", "w")]
  tree = st.build_tree(edges, classes=["x", "y", "z", "w"])
  np.testing.assert_array_equal(_tasks.lca_heights(tree),
                                [[0, 1, 2, 2], [1, 0, 2, 2], [2, 2, 0, 1],
                                 [2, 2, 1, 0]])
  edges, classes = st.cifar100_hierarchy("wordnet")
  tree = st.build_tree(edges, classes=classes)
  parent = _tasks.shifted_tree(tree, 0.25, seed=3)
  moved = np.flatnonzero(parent[tree.class_nodes]
                         != np.asarray(tree.parent)[tree.class_nodes])
  assert len(moved) == 25
  homes = set(np.asarray(tree.parent)[tree.class_nodes])
  assert set(parent[tree.class_nodes]) <= homes


# -- the training program ---------------------------------------------------------


def test_models_trained_together_equal_models_trained_alone():
  """The vmapped one-epoch program: a model's result does not depend on
  what else is in the stack (learning rate and head are data)."""
  from spectral_targets.bench import _methods, _pipeline, _run, _tasks
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.digits_task()
  opts = _run.Options(seeds=1, quick=True)
  data = _run._draw(task, [0], True)
  budget = _pipeline.Budget(seeds=1, epochs=2, batch_size=32)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=9, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    one_hot, cosine = (_methods.METHODS[n] for n in ("one-hot", "cosine"))
    runs = (runner.runs(one_hot, [{"lr": 1e-2}], [0], 2)
            + runner.runs(cosine, [{"lr": 2e-2, "scale": 8.0}], [0], 2))
    both, _ = ex.train(runs, 2)
    alone = [ex.train([r], 2)[0] for r in runs]
  del opts
  import jax
  for i, params in enumerate(alone):
    for a, b in zip(jax.tree_util.tree_leaves(both),
                    jax.tree_util.tree_leaves(params)):
      # Batched and single matmuls sum in other orders: float32 rounding
      # over two epochs, nowhere near the effect of a model leaking into
      # another.
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0],
                                 rtol=1e-3, atol=1e-4)


def test_a_program_of_only_the_used_terms_trains_every_method_as_the_universal_one():
  """Specialisation (``_training.active_terms``) is a speed-up only: every
  method, including the hierarchical, distillation, mixup and online ones,
  trains in the program of its own terms to the parameters (and online
  state) the universal program of every term gives it; and a program's
  terms are exactly what its runs use."""
  import dataclasses

  import jax

  import spectral_targets as st
  from spectral_targets.bench import (
    _methods,
    _pipeline,
    _run,
    _tasks,
    _training,
  )
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.digits_task()
  data = _run._draw(task, [0], True)
  n, C, F, E = data.y_train.shape[1], 10, 9, 2
  rng = np.random.default_rng(0)
  data = dataclasses.replace(
      data, teacher_logits=rng.normal(size=(1, n, C)).astype(np.float32),
      teacher_features=rng.normal(size=(1, n, F)).astype(np.float32),
      mix_partner=rng.integers(0, n, size=(E, 1, n)).astype(np.int32),
      mix_lambda=rng.uniform(size=(E, 1, n)).astype(np.float32),
      mixed_logits=rng.normal(size=(E, 1, n, C)).astype(np.float32),
      mixed_features=rng.normal(size=(E, 1, n, F)).astype(np.float32))
  edges = [("r", "low"), ("r", "high")] + [
      ("low" if c < 5 else "high", str(c)) for c in range(C)]
  tree = st.build_tree(edges, classes=[str(c) for c in range(C)])
  budget = _pipeline.Budget(seeds=1, epochs=E, batch_size=32)
  kernel = np.asarray(st.from_hierarchy(edges, classes=[str(c) for c in
                                                        range(C)]))
  codes = np.asarray(st.spectral_codebook(st.double_center(kernel), F))
  with Compiler() as programs:
    exs = {flag: Executor(task, data, body="mlp", features=F, batch_size=32,
                          programs=programs, fast_compile=True,
                          specialise=flag, tree=tree)
           for flag in (False, True)}
    runner = _pipeline.TaskRunner(task, budget, [], data, exs[True])
    runner.kernels = {0: kernel}
    runner.codebooks = {0: {c: codes for c in ("simplex", "spectral",
                                               "random", "online")}}
    for name, method in _methods.METHODS.items():
      if method.codes == "spectral-small":
        continue
      hp = {"lr": 1e-2, **method.defaults}
      runs = runner.runs(method, [hp], [0], E)
      terms = exs[True].terms(runs)
      assert exs[False].terms(runs) == _training.ALL_TERMS
      assert method.head in terms and len(terms) < len(_training.ALL_TERMS)
      got = exs[True].advance(runs, exs[True].initial(runs), start=0,
                              epochs=E)
      want = exs[False].advance(runs, exs[False].initial(runs), start=0,
                                epochs=E)
      # Parameters, optimiser state and configs (an online codebook's
      # refreshed codes); the online state where the runs read it (a
      # program without ``track`` leaves it as it came in: unread).
      (params, opt, online), cfgs = got
      compared = [(params, want[0][0]), (opt, want[0][1]), (cfgs, want[1])]
      if "track" in terms:
        compared.append((online, want[0][2]))
      for a, b in compared:
        for u, v in zip(jax.tree_util.tree_leaves(a),
                        jax.tree_util.tree_leaves(b)):
          np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                     rtol=1e-5, atol=1e-6, err_msg=name)
  one_hot = runner.runs(_methods.METHODS["one-hot"], [{"lr": 1e-2}], [0], E)
  assert exs[True].terms(one_hot) == {"dense", "ce", "soft"}
  online = runner.runs(_methods.METHODS["online-codebook"],
                       [{"lr": 1e-2, "scale": 8.0}], [0], E)
  assert exs[True].terms(online) == {"codebook", "cosine", "ce", "soft",
                                     "track"}


def test_runs_batch_by_terms_and_come_back_in_order():
  """The runner trains runs of the same terms together (one program each)
  and returns every run's result in the order it was given."""
  import jax

  from spectral_targets.bench import _methods, _pipeline, _run, _tasks
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.digits_task()
  data = _run._draw(task, [0], True)
  budget = _pipeline.Budget(seeds=1, epochs=1, batch_size=32, chunk=2)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=9, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    one_hot, cosine = (_methods.METHODS[k] for k in ("one-hot", "cosine"))
    runs = [r for lr in (1e-2, 2e-2, 5e-2) for r in
            runner.runs(one_hot, [{"lr": lr}], [0], 1)
            + runner.runs(cosine, [{"lr": lr, "scale": 8.0}], [0], 1)]
    batches = runner._batches(runs)
    assert [rows for rows, _ in batches] == [[0, 2], [4], [1, 3], [5]]
    assert [pad for _, pad in batches] == [0, 0, 0, 0]
    params, _ = runner.train(runs, 1)
    alone = [ex.train([r], 1)[0] for r in runs]
  for i, p in enumerate(alone):
    for a, b in zip(jax.tree_util.tree_leaves(params),
                    jax.tree_util.tree_leaves(p)):
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0],
                                 rtol=1e-3, atol=1e-4)


def test_training_resumed_equals_training_through():
  """Survivors of a rung continue from their state: one epoch, then two
  more from the kept parameters, optimiser and online state (the online
  codebook's codes too) equals three epochs in one go."""
  import jax

  from spectral_targets.bench import _methods, _pipeline, _run, _tasks
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.digits_task()
  data = _run._draw(task, [0], True)
  budget = _pipeline.Budget(seeds=1, epochs=3, batch_size=32)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=9, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    runner.codebooks = {0: {"online": np.eye(10, 9)}}
    runs = (runner.runs(_methods.METHODS["online-soft-labels"],
                        [{"lr": 1e-2, "w_online": 0.5}], [0], 3)
            + runner.runs(_methods.METHODS["online-codebook"],
                          [{"lr": 2e-2, "scale": 8.0}], [0], 3))
    through = ex.advance(runs, ex.initial(runs), start=0, epochs=3)
    first = ex.advance(runs, ex.initial(runs), start=0, epochs=1)
    resumed = ex.advance(runs, first, start=1, epochs=2)
  for a, b in zip(jax.tree_util.tree_leaves(through),
                  jax.tree_util.tree_leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_every_method_trains_on_one_warmup_cosine_schedule():
  """One recipe: every method's config carries one epoch of warm-up, and
  the optimiser's schedule is optax.warmup_cosine_decay_schedule's."""
  import jax
  import optax

  from spectral_targets.bench import _methods, _training
  from spectral_targets.bench._methods import Context
  ctx = Context(10, 9, epochs=5, total_steps=5 * 12, kernel=np.eye(10),
                codebooks={c: np.eye(10, 9) for c in
                           ("simplex", "spectral", "spectral-small",
                            "random", "online")})
  for method in _methods.METHODS.values():
    hp = {"lr": 0.03, **method.defaults}
    cfg = method.config(ctx, hp)
    assert float(cfg.warmup_steps) == 12, method.name
    assert float(cfg.total_steps) == 60, method.name
  reference = optax.warmup_cosine_decay_schedule(0.0, 0.03, 12, 60)
  values = jax.jit(jax.vmap(_training.schedule(cfg)))(np.arange(70.0))
  np.testing.assert_allclose(values, [reference(t) for t in range(70)],
                             rtol=1e-5, atol=1e-9)
  assert float(values[0]) == 0.0 and float(values[12]) == pytest.approx(0.03)
  assert _training.RECIPE["warmup_epochs"] == _training.WARMUP_EPOCHS == 1


def test_halving_trains_fewer_models_each_rung_and_the_winner_as_untuned():
  """On a real task: the batch of models shrinks between rungs, the rungs
  add up to the budget, and the winner's validation scores are those of
  the same cell trained from scratch for the full budget."""
  from spectral_targets.bench import (
    _methods,
    _pipeline,
    _run,
    _tasks,
    _tuning,
  )
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.digits_task()
  data = _run._draw(task, [0], True)
  budget = _pipeline.Budget(seeds=1, epochs=3, batch_size=32,
                            tuning_seeds=(0,), learning_rates=(1e-2, 2e-2),
                            chunk=2, search="halving", eta=3)
  cosine = dataclasses.replace(_methods.METHODS["cosine"],
                               knobs={"scale": (4.0, 8.0, 16.0)})
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=9, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [cosine], data, ex)
    trials = _pipeline.Trials(runner, runner.methods, budget.epochs)
    selection = _tuning.tune(runner.methods, trials, search="halving",
                             learning_rates=budget.learning_rates, eta=3)[
                                 "cosine"]
    rungs = selection.halving["rungs"]
    assert [r["until"] for r in rungs] == [1, 3]
    assert sum(r["epochs"] for r in rungs) == budget.epochs
    # Six cells train one epoch; the best three (η: never fewer) train on
    # for two more, resumed (not retrained); then at most the steps beyond
    # an end.
    assert trials.trained[:2] == [(1, 6, 1), (2, 3, 2)]
    assert all(e == 3 for _, _, e in trials.trained[2:])
    chosen = selection.chosen
    # The choice is a survivor or a step beyond the grid's end (trained
    # from scratch at the full budget).
    assert (chosen in rungs[-1]["survivors"]
            or chosen["lr"] not in budget.learning_rates), chosen
    survivors = rungs[-1]["survivors"]
    best = [next(t for t in selection.trials if t["hp"] == hp)
            for hp in survivors]
    alone = runner.runs(cosine, survivors, [0], budget.epochs)
    scores = ex.score(*runner.train(alone, budget.epochs), alone)
  # Resumed rung to rung or trained from scratch, chunked with another
  # model or alone: float32 rounding, at most one validation example apart.
  for trial, score in zip(best, scores):
    np.testing.assert_allclose(trial["val_accuracy"], [score["val_accuracy"]],
                               atol=1.0 / data.y_val.shape[1] + 1e-6)
    np.testing.assert_allclose(trial["val_nll"], [score["val_nll"]],
                               rtol=1e-3)


def test_scored_crm_decisions_match_a_brute_force_argmin():
  """The scorer's CRM metrics: each test example's class argmin_k
  Σ_j p_j D_jk in float64 NumPy from the same logits, its accuracy,
  mistake severity and hdist@1 (ordinal task: D = |i − j|)."""
  from spectral_targets.bench import _methods, _pipeline, _run, _tasks
  from spectral_targets.bench._compile import Compiler
  from spectral_targets.bench._execute import Executor
  task = _tasks.ordinal_task()
  data = _run._draw(task, [0], True)
  budget = _pipeline.Budget(seeds=1, epochs=2, batch_size=32)
  with Compiler() as programs:
    ex = Executor(task, data, body="mlp", features=6, batch_size=32,
                  programs=programs, fast_compile=True)
    runner = _pipeline.TaskRunner(task, budget, [], data, ex)
    runs = runner.runs(_methods.METHODS["one-hot"], [{"lr": 3e-2}], [0], 2)
    params, cfgs = ex.train(runs, 2)
    score = ex.score(params, cfgs, runs)[0]
    logits = ex.logits(params, cfgs, runs, split="test")[0]
  z = logits.astype(np.float64)
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  D = task.distances
  risk = p @ D
  pred = risk.argmin(1)
  y = data.y_test[0]
  wrong = pred != y
  assert score["crm_accuracy"] == pytest.approx(np.mean(pred == y))
  assert score["crm_severity"] == pytest.approx(D[y, pred][wrong].mean(),
                                                rel=1e-5)
  assert score["crm_hdist@1"] == pytest.approx(D[y, pred].mean(), rel=1e-5)
  # The plain metrics stay those of the argmax; an ordinal task adds MAE,
  # QWK (scikit-learn's) and the posterior median's MAE.
  from sklearn.metrics import cohen_kappa_score
  argmax = z.argmax(1)
  assert score["accuracy"] == pytest.approx(np.mean(argmax == y))
  assert score["mae"] == pytest.approx(np.abs(argmax - y).mean(), rel=1e-5)
  assert score["qwk"] == pytest.approx(
      cohen_kappa_score(y, argmax, weights="quadratic"), abs=1e-5)
  median = (np.cumsum(p, 1) >= 0.5).argmax(1)
  assert score["median_mae"] == pytest.approx(np.abs(median - y).mean(),
                                              rel=1e-5)


def test_cnn_windows_equal_flax_conv():
  """The vmap-friendly CNN (Dense layers on windows) is nn.Conv with the
  kernel reshaped: same outputs for the same weights."""
  import jax

  from spectral_targets.bench import _bodies as m
  x = np.random.default_rng(0).normal(size=(3, 40)).astype(np.float32)
  conv = m.make_body("cnn", 9, single=True)
  windows = m.make_body("cnn", 9)
  p_conv = conv.init(jax.random.key(1), x)
  P = p_conv["params"]
  convs = sorted(n for n in P if n.startswith("Conv_"))
  assert len(convs) == 3 and set(P) == {*convs, "Dense_0"}
  p_win = {"params": {f"Dense_{i}": {
      "kernel": P[n]["kernel"].reshape(-1, P[n]["kernel"].shape[-1]),
      "bias": P[n]["bias"]} for i, n in enumerate(convs)}}
  p_win["params"]["Dense_3"] = P["Dense_0"]
  np.testing.assert_allclose(windows.apply(p_win, x), conv.apply(p_conv, x),
                             rtol=1e-5, atol=1e-5)


def test_compiler_compiles_once_per_key():
  import jax

  from spectral_targets.bench._compile import Compiler
  with Compiler(workers=2) as programs:
    programs.submit(("t", "double"), jax.jit(lambda x: 2 * x),
                    jax.ShapeDtypeStruct((3,), np.float32))
    programs.submit("square", jax.jit(lambda x: x * x),
                    np.ones(2, np.float32), options={
                        "xla_backend_optimization_level": 0})
    with pytest.raises(ValueError, match="already submitted"):
      programs.submit("square", jax.jit(lambda x: x), np.ones(2))
    np.testing.assert_array_equal(
        programs[("t", "double")](np.arange(3, dtype=np.float32)), [0, 2, 4])
    np.testing.assert_array_equal(programs["square"](np.full(2, 3.0,
                                                             np.float32)),
                                  [9, 9])
    programs.submit("ahead", jax.jit(lambda x: x + 1), np.ones(2))
    programs.wait()
    # Released: what was handed out; kept: what was compiled ahead.
    programs.release_used()
    assert ("t", "double") not in programs and "square" not in programs
    assert "ahead" in programs


# -- the command, end to end -------------------------------------------------------


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
  """One ``spectral-targets bench --quick`` over every task: the tests of
  this file read its outputs (no other file runs the pipeline end to end
  on the built-in tasks; under ``--dist loadfile`` a module fixture runs
  once)."""
  out = tmp_path_factory.mktemp("bench")
  proc = subprocess.run(
      [sys.executable, "-m", "spectral_targets", "bench", "--quick", "--out",
       str(out)], capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout, proc.stderr


def test_a_run_stopped_part_way_keeps_the_tasks_it_finished(tmp_path,
                                                            monkeypatch):
  from spectral_targets.bench import _report, _run, _suite

  def stop(session, task):
    raise RuntimeError("stopped")

  monkeypatch.setitem(_suite.TASKS, "hierarchy", dataclasses.replace(
      _suite.TASKS["hierarchy"], run=stop))
  with pytest.raises(RuntimeError, match="stopped"):
    _run.run_benchmark(tasks=["digits", "hierarchy"], quick=True, seeds=2,
                       methods=["one-hot"], out=tmp_path, echo=lambda s: None)
  partial = json.loads((tmp_path / _report.PARTIAL).read_text())
  assert list(partial["tasks"]) == ["digits"]
  assert partial["meta"]["wall_time"].endswith("(so far)")
  assert not (tmp_path / "results.json").exists()
  # A finished run replaces it by the full results.
  _report.write(tmp_path, partial)
  assert not (tmp_path / _report.PARTIAL).exists()
  assert (tmp_path / "results.json").exists()


def _method_blocks(report):
  if "students" in report:
    return [b["methods"] for b in (*report["students"].values(),
                                   *report["settings"].values())]
  if "shift" in report:
    return [b["methods"] for b in report["shift"].values()]
  return [report["methods"]]


def test_quick_bench_reports_every_method_metric_and_choice(quick_results):
  from spectral_targets.bench import TASK_ORDER
  out, stdout, stderr = quick_results
  results = json.loads((out / "results.json").read_text())
  # Every task but those reading data the user brings (cifar100).
  assert list(results["tasks"]) == [t for t in TASK_ORDER
                                    if not bench.TASK_NEEDS[t]]
  assert "cifar100" in TASK_ORDER and bench.TASK_NEEDS["cifar100"]
  assert results["meta"]["quick"] is True
  assert not (out / "results.partial.json").exists()
  assert results["meta"]["recipe"]["warmup_epochs"] == 1
  for task, report in results["tasks"].items():
    for methods in _method_blocks(report):
      assert "one-hot" in methods
      for name, r in methods.items():
        assert r["chosen"]["lr"] > 0, (task, name)
        assert isinstance(r["at_edge"], list)
        for metric in ("accuracy", "severity", "nll", "ece"):
          values = r["per_seed"][metric]
          assert len(values) == results["meta"]["seeds"] == 2
          if metric in ("nll", "ece") and r.get("probabilistic") is False:
            # Regression on the grade index has no probabilities.
            assert values == [None, None], (task, name, metric)
            assert metric not in r.get("vs one-hot", {}), (task, name)
            continue
          assert all(v is not None and math.isfinite(v) for v in values), (
              task, name, metric)
        if name != "one-hot":
          d = r["vs one-hot"]["accuracy"]
          assert d["low"] <= d["mean"] <= d["high"]
        if r["control"] != "one-hot" and r["control"] in methods:
          assert f"vs {r['control']}" in r
  # The default search: successive halving, its rungs recorded per method
  # and adding up to the budget.
  assert results["meta"]["search"] == "halving"
  for task in ("mnist1d", "digits", "hierarchy", "ordinal",
               "diamonds-colour"):
    report = results["tasks"][task]
    for name, r in report["methods"].items():
      rungs = r["halving"]["rungs"]
      assert sum(rung["epochs"] for rung in rungs) == report["epochs"], name
      assert len(rungs[-1]["cells"]) <= len(rungs[0]["cells"])
  # The diamonds tasks: the ordinal methods and metrics, diabetes kept.
  for task in ("diamonds-colour", "diamonds-price-decile", "ordinal"):
    methods = results["tasks"][task]["methods"]
    assert {"one-hot", "sord", "coral", "regression", "cosine", "simplex",
            "spectral"} <= set(methods), task
    assert methods["regression"]["probabilistic"] is False
    for name, r in methods.items():
      for metric in ("mae", "qwk", "median_mae"):
        if metric == "median_mae" and name == "regression":
          assert r["per_seed"][metric] == [None, None]
          continue
        assert all(math.isfinite(v) for v in r["per_seed"][metric]), (
            task, name, metric)
      if name != "one-hot":
        assert "mae" in r["vs one-hot"]
  assert results["tasks"]["diamonds-price-decile"]["num_classes"] == 10
  (reference,) = results["tasks"]["diamonds-colour"]["references"].values()
  # The references fit the methods' own training rows.
  sizes = results["tasks"]["diamonds-colour"]["sizes"]
  assert reference["training_rows"] == int(sizes.split(" / ")[0])
  for metric in ("accuracy", "mae", "median_mae", "qwk"):
    assert len(reference["per_seed"]["logistic regression"][metric]) == 2
  assert "mae" in reference["vs one-hot"]["logistic regression"]
  # CRM on every method of the hierarchy task, against one-hot + CRM.
  hierarchy = results["tasks"]["hierarchy"]
  assert hierarchy["crm"] is True
  for name, r in hierarchy["methods"].items():
    for metric in ("crm_accuracy", "crm_severity", "crm_hdist@1"):
      assert all(math.isfinite(v) for v in r["per_seed"][metric]), name
    control = r["vs one-hot + CRM"]
    for metric in ("accuracy", "severity", "hdist@5"):
      assert control[metric]["low"] <= control[metric]["high"], name
  assert "crm_severity" in hierarchy["methods"]["cosine"]["vs one-hot"]
  # The data-size axis: the same protocol at 400 training samples a class.
  larger = results["tasks"]["hierarchy-400"]
  assert "400 training samples a class" in larger["description"]
  assert larger["crm"] is True and "hxe" in larger["methods"]
  assert (out / "mnist1d.png").stat().st_size > 10_000
  assert (out / "mnist1d-budget.png").stat().st_size > 10_000
  assert (out / "hierarchy-shift.png").stat().st_size > 10_000
  md = (out / "results.md").read_text()
  # A smoke run says so at the top of both outputs; legends and directions.
  assert md.splitlines()[2].startswith("**SMOKE RUN")
  assert stdout.startswith("**SMOKE RUN")
  assert "↑ higher is better" in md and "↑ higher is better" in stdout
  assert "Δ severity vs one-hot + CRM" in md
  assert "| regression |" in md and "| coral |" in md
  # Task order: the same in stdout and in results.md.
  order = [f"### {t}" for t in TASK_ORDER if not bench.TASK_NEEDS[t]]
  for text in (stdout, md):
    positions = [text.index(h) for h in order]
    assert positions == sorted(positions)
  # Not a terminal: plain progress lines, no carriage returns.
  assert "\r" not in stderr and "mnist1d: tuning stage 1" in stderr


def _section(md, task):
  """The markdown of ``task``'s section: from its heading to the next."""
  start = md.index(f"### {task}")
  end = md.find("\n### ", start + 1)
  return md[start:] if end < 0 else md[start:end]


def test_quick_bench_ordinal_baselines_and_their_n_a(quick_results):
  """The ordinal task of the quick run: CORAL and regression tuned,
  evaluated, paired and written; regression's probabilistic metrics absent
  (n/a: None in the JSON, unpaired), CORAL's present; no NaN anywhere."""
  out, _, _ = quick_results
  text = (out / "results.json").read_text()

  def no_nan(name):
    raise AssertionError(f"results.json holds {name}")

  results = json.loads(text, parse_constant=no_nan)
  assert '"probabilistic": false' in text
  methods = results["tasks"]["ordinal"]["methods"]
  coral, regression = methods["coral"], methods["regression"]
  assert coral["probabilistic"] is True
  for metric in ("accuracy", "mae", "qwk", "severity", "nc1"):
    for r in (coral, regression):
      assert all(v is not None and math.isfinite(v)
                 for v in r["per_seed"][metric]), metric
  for metric in ("accuracy", "mae", "qwk", "severity"):
    assert regression["vs one-hot"][metric]["low"] is not None, metric
  for metric in ("nll", "ece", "median_mae", "crm_accuracy"):
    assert all(v is not None and math.isfinite(v)
               for v in coral["per_seed"][metric]), metric
    assert regression["per_seed"][metric] == [None, None], metric
    assert regression["summary"][metric]["mean"] is None, metric
    assert metric not in regression["vs one-hot"], metric
    assert coral["vs one-hot"][metric]["low"] is not None, metric
  md = _section((out / "results.md").read_text(), "ordinal")
  assert "| regression |" in md and "| coral |" in md and "n/a" in md


def test_quick_bench_distill_settings_and_their_controls(quick_results):
  """The distill task's two settings in the quick run: every method of
  each block, paired against its controls; the labelled-only control as
  many optimiser steps as the transfer-set students; both in results.md
  with their controls and what is left out."""
  from spectral_targets.bench import _distill, _run, _tasks
  out, _, _ = quick_results
  report = json.loads((out / "results.json").read_text())["tasks"]["distill"]
  seeds = report["seeds"]
  fm = report["settings"]["function matching"]
  methods = fm["methods"]
  assert set(methods) == set(_distill.FM_METHODS)
  assert fm["setting"]["temperature"] == 1.0
  assert fm["epochs"] == fm["setting"]["epochs"]
  assert "dkd" in fm["left_out"] and "Beyer" in fm["description"]
  fmr = methods["function-matching"]
  assert fmr["control"] == "mixup"
  for ref in ("vs mixup", "vs one-hot", "vs kd"):
    d = fmr[ref]["accuracy"]
    assert d["low"] <= d["mean"] <= d["high"], ref
  assert methods["spectral-mixup"]["control"] == "mixup"
  transfer = report["settings"]["transfer set"]
  tm = transfer["methods"]
  assert set(tm) == set(_distill.TRANSFER_METHODS)
  for name in ("kd", "dkd"):
    assert tm[name]["control"] == "pseudo-labels"
    assert "vs pseudo-labels" in tm[name] and "vs one-hot" in tm[name]
  assert tm["sa-kd"]["control"] == "spectral" and "vs spectral" in tm["sa-kd"]
  # The labelled-only control: as many optimiser steps as the students on
  # labelled ∪ pool (whole batches an epoch, at the quick batch size).
  labelled, pool = (int(w) for w in transfer["sizes"].split()[:4:3])
  assert transfer["setting"]["pool_size"] == pool == (
      _distill.POOL_FACTOR * labelled)
  batch = _run.Options(quick=True).budget(_tasks.mnist1d_task()).batch_size
  steps = (labelled + pool) // batch * transfer["epochs"]
  assert transfer["setting"]["labelled_only_epochs"] == max(
      1, round(steps / (labelled // batch)))
  for block in (methods, tm):
    for r in block.values():
      assert len(r["per_seed"]["accuracy"]) == seeds == 2
  md = _section((out / "results.md").read_text(), "distill")
  assert "function matching" in md and "transfer set" in md
  assert "Controls:" in md and "dkd: left out" in md


def test_the_command_line_lists_every_task_and_method(capsys):
  # One list of each: the suite's rows and the methods' rows, which the
  # command line offers as its choices.
  from spectral_targets.bench import _methods, _suite
  assert bench.TASK_ORDER == tuple(_suite.TASKS)
  assert bench.METHOD_NAMES == tuple(_methods.METHODS)
  assert _cli.main(["bench", "--tasks", "imagenet"]) == 2
  assert f"choose from {', '.join(_suite.TASKS)}\n" in capsys.readouterr().err
  assert _cli.main(["bench", "--methods", "magic"]) == 2
  assert (f"choose from {', '.join(_methods.METHODS)}\n"
          in capsys.readouterr().err)


def test_one_seed_shows_no_spread():
  from spectral_targets.bench import _report
  assert _report._cell({"mean": 0.5, "std": None, "n": 1}, "{:.3f}") == "0.500"
  assert _report._cell({"mean": 0.5, "std": 0.01, "n": 2},
                       "{:.3f}") == "0.500 ± 0.010"


def test_missing_extra_names_the_install(monkeypatch, capsys):
  monkeypatch.setattr(bench, "missing_requirements", lambda: ["mnist1d"])
  assert _cli.main(["bench", "--quick"]) == 2
  err = capsys.readouterr().err
  assert "mnist1d" in err and ".[bench]" in err


def test_bad_arguments(capsys):
  assert _cli.main(["bench", "--tasks", "imagenet"]) == 2
  assert "imagenet" in capsys.readouterr().err
  assert _cli.main(["bench", "--seeds", "0"]) == 2
  assert _cli.main(["bench", "--methods", "magic"]) == 2
  assert "magic" in capsys.readouterr().err
  assert _cli.main(["bench", "--epochs", "0"]) == 2


def test_a_released_compiler_frees_the_programs_it_handed_out():
  """``Compiler.release_used`` drops the programs already retrieved (a
  later request compiles them again) and keeps the ones compiled ahead;
  on Linux their memory maps go too (a whole default run's programs
  exceeded ``vm.max_map_count`` and LLVM aborted it)."""
  import gc
  import pathlib

  import jax
  import jax.numpy as jnp

  from spectral_targets.bench._compile import Compiler

  def maps():
    with open("/proc/self/maps") as f:
      return sum(1 for _ in f)

  linux = pathlib.Path("/proc/self/maps").exists()
  fns = [jax.jit(lambda x, k=k: jnp.tanh(x @ x.T + k).sum(0)) for k in
         range(12)]
  x = jax.ShapeDtypeStruct((48, 16), jnp.float32)
  with Compiler(workers=1) as programs:
    jax.clear_caches()
    gc.collect()
    before = maps() if linux else 0
    for k, fn in enumerate(fns):
      programs.submit(("t", k), fn, x)
    programs.wait()
    used = [programs[("t", k)] for k in range(10)]
    np.testing.assert_allclose(used[3](jnp.ones((48, 16))),
                               fns[3](jnp.ones((48, 16))))
    grown = (maps() - before) if linux else 0
    del used
    programs.release_used()
    gc.collect()
    assert all(("t", k) not in programs for k in range(10))
    assert ("t", 10) in programs and ("t", 11) in programs
    if linux:
      # Ten of twelve programs released: most of what compiling added.
      assert maps() - before < 0.5 * grown, (before, grown, maps())
    programs.submit(("t", 0), fns[0], x)
    np.testing.assert_allclose(programs[("t", 0)](jnp.ones((48, 16))),
                               fns[0](jnp.ones((48, 16))))

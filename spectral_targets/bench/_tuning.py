"""How a method is tuned: the same protocol and grids for every method.

Every method tunes the learning rate on ``LEARNING_RATES`` and each of its
own knobs on its grid (``_methods.Method.knobs``) over the full product of
those grids, on the validation split only, averaging the validation
accuracy of the tuning seeds (which are not the evaluation seeds: the test
figures come from models whose seeds took no part in the choice).

``search="halving"`` (the default) searches the full product by successive
halving (Jamieson & Talwalkar 2016; the inner loop of Li et al.'s 2018
Hyperband): every cell starts; after each rung (a fraction of the budget)
the cells ranked by mean validation accuracy (then NLL) keep their best
1/η (η = ``ETA``), but never fewer than η of them (``survivors``), which
train on from where they stopped (their
parameters, optimiser and online state are kept, so a survivor is trained
exactly as an untuned run of the full budget would be: its schedule spans
the full budget from the start). The rungs end at E/η^s, ..., E/η, E
epochs, with s the halvings that thin the largest grid to one cell, at most
those that leave the first rung a whole epoch and end it after the recipe's
warm-up (no cell is ranked while its learning rate is still rising: on the
hierarchy task a first rung at the end of the warm-up kept the larger
learning rates and missed the grid's best cells). The floor of η
survivors is for small grids: thinning the six learning rates of one-hot
to two at an early rung let a rounding-level tie (0.741 vs 0.738 on
mnist1d at epoch 3) decide which learning rate reached the end, and the
loser was the better one at the full budget (one-hot's 0.931 vs 0.954). A
grid of at most η cells is therefore trained whole to the budget. η = 1
is the grid.

``search="grid"`` (``spectral-targets bench --search grid``, the reference)
trains every cell of the product to the full budget.

``search="cross"`` (the earlier default, kept for comparison) is a
coordinate search in three stages: the learning rate at the knobs'
defaults; every combination of the knobs at that learning rate; if the
knobs moved, the learning rates next to the chosen one. It can miss a cell
that is better along neither axis from the cross's centre (learning rate
and head scale interact).

Under every search, wherever the choice sits at an end of an unbounded grid
(the learning rate, a head's scale), one step beyond it (÷2 or ×2) is
trained too, so that the grid extends on both sides of what is chosen.

The configuration with the best mean validation accuracy over everything
evaluated at the full budget is chosen (ties: the lower mean validation
NLL). A choice at the end of what was tried is flagged: the optimum may lie
outside the grid (for the learning rate and the scale: even one step beyond
did better).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

#: The learning-rate grid every method searches.
LEARNING_RATES = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)
#: Successive halving keeps the best 1/ETA of the cells after each rung.
ETA = 3
#: Grids with no natural end (positive, searched geometrically): a choice at
#: an end is followed one step (a factor of 2) beyond it in stage 3.
UNBOUNDED = ("lr", "scale")


def key(hp: dict) -> tuple:
  """A hashable, order-independent id of a hyperparameter setting."""
  return tuple(sorted(hp.items()))


def stage_one(method, learning_rates=LEARNING_RATES) -> list[dict]:
  return [dict(method.defaults, lr=lr) for lr in learning_rates]


def stage_two(method, lr: float) -> list[dict]:
  names = list(method.knobs)
  combos = itertools.product(*(method.knobs[n] for n in names))
  grid = [dict(zip(names, values), lr=lr) for values in combos]
  seen = key(dict(method.defaults, lr=lr))
  return [hp for hp in grid if key(hp) != seen]


def stage_three(method, best: dict,
                learning_rates=LEARNING_RATES) -> list[dict]:
  settings = []
  if any(best[n] != method.defaults[n] for n in method.knobs):
    i = learning_rates.index(best["lr"])
    settings += [dict(best, lr=learning_rates[j]) for j in (i - 1, i + 1)
                 if 0 <= j < len(learning_rates)]
  return settings + edge_steps(method, best, learning_rates)


def full_grid(method, learning_rates=LEARNING_RATES) -> list[dict]:
  """Every combination of the learning rates and the method's knob grids
  (``search="grid"``)."""
  grids = dict(method.knobs, lr=tuple(learning_rates))
  names = list(grids)
  return [dict(zip(names, values))
          for values in itertools.product(*(grids[n] for n in names))]


def edge_steps(method, best: dict,
               learning_rates=LEARNING_RATES) -> list[dict]:
  """One step (÷2 or ×2) beyond each unbounded grid whose end ``best``
  sits at, the other hyperparameters as chosen."""
  settings = []
  grids = dict(method.knobs, lr=tuple(learning_rates))
  for name in UNBOUNDED:
    grid = grids.get(name, ())
    if len(grid) > 1 and best[name] == min(grid):
      settings.append(dict(best, **{name: min(grid) / 2}))
    elif len(grid) > 1 and best[name] == max(grid):
      settings.append(dict(best, **{name: max(grid) * 2}))
  return settings


def cross(methods, evaluate, best, learning_rates, *, eta: int,
          epochs: int, edges: bool = True, after: int = 0) -> dict:
  """The three stages above, every method's stage in one call of
  ``evaluate`` (``eta``, ``epochs``, ``after``: unused, as for the grid;
  ``edges=False`` leaves the steps beyond a grid's end out of stage 3)."""
  evaluate({m.name: stage_one(m, learning_rates) for m in methods}, 1)
  chosen = best()
  evaluate({m.name: stage_two(m, chosen[m.name]["lr"]) for m in methods}, 2)
  chosen = best()
  third = {m.name: stage_three(m, chosen[m.name], learning_rates)
           for m in methods}
  if not edges:
    third = {m.name: [hp for hp in third[m.name] if hp not in edge_steps(
        m, chosen[m.name], learning_rates)] for m in methods}
  evaluate(third, 3)
  return {}


def grid(methods, evaluate, best, learning_rates, *, eta: int,
         epochs: int, edges: bool = True, after: int = 0) -> dict:
  """``search="grid"``: the full product, then (unless ``edges=False``)
  the steps beyond an unbounded grid's end (``eta``, ``after``: unused)."""
  evaluate({m.name: full_grid(m, learning_rates) for m in methods}, 1)
  if edges:
    chosen = best()
    evaluate({m.name: edge_steps(m, chosen[m.name], learning_rates)
              for m in methods}, 2)
  return {}


def survivors(cells: int, eta: int = ETA) -> int:
  """How many of ``cells`` ranked cells a rung keeps: the best ⌈n/η⌉, but
  at least min(n, η) (a small grid is not thinned to one or two cells on
  an early, noisy ranking).

  Example: ``survivors(30) == 10``, ``survivors(6) == 3``,
  ``survivors(2) == 2``.
  """
  if eta < 1:
    raise ValueError(f"eta must be >= 1, got {eta}")
  if cells < 0:
    raise ValueError(f"cells must be >= 0, got {cells}")
  return max(math.ceil(cells / eta), min(cells, eta))


def rungs(epochs: int, cells: int, eta: int = ETA, *, after: int = 0
          ) -> list[int]:
  """The epochs at which successive halving's rungs end: E/η^s, ..., E/η,
  E (rounded, at least 1), with s the halvings that still drop a cell of
  ``cells`` (keeping ``survivors(n, η)`` of n each time), at most
  ⌊log_η E⌋, and at most those
  whose first rung ends after epoch ``after`` (the recipe's warm-up: a
  cell is never ranked while its learning rate is still rising, where a
  larger learning rate leads early and may not lead at the end)."""
  if eta < 1:
    raise ValueError(f"eta must be >= 1, got {eta}")
  s = 0
  if eta > 1:
    n = cells
    while (survivors(n, eta) < n and eta ** (s + 1) <= epochs
           and round(epochs / eta ** (s + 1)) > after):
      n, s = survivors(n, eta), s + 1
  ends = [max(1, round(epochs / eta ** (s - k))) for k in range(s + 1)]
  return sorted(set(ends))


def _rank(trial) -> tuple:
  """Best first: higher mean validation accuracy, then lower NLL."""
  return (-float(np.mean(trial["val_accuracy"])),
          _finite(float(np.mean(trial["val_nll"]))))


def halving(methods, evaluate, best, learning_rates, *, eta: int,
            epochs: int, edges: bool = True, after: int = 0) -> dict:
  """``search="halving"``: successive halving over the full product (the
  rungs of ``rungs``), then (unless ``edges=False``) the steps beyond an
  unbounded grid's end.
  ``evaluate(settings, stage, until)`` trains the settings to epoch
  ``until``, resuming those trained before. Returns each method's record:
  η and, per rung, its epochs, the cells that trained in it with their
  mean validation accuracy there, and the survivors."""
  alive = {m.name: full_grid(m, learning_rates) for m in methods}
  ends = rungs(epochs, max(len(v) for v in alive.values()), eta,
               after=after)
  record: dict = {m.name: {"eta": eta, "rungs": []} for m in methods}
  done = 0
  for stage, until in enumerate(ends, 1):
    trials = evaluate(dict(alive), stage, until)
    for name, rows in trials.items():
      ranked = sorted(rows, key=_rank)
      keep = len(rows) if until == epochs else survivors(len(rows), eta)
      alive[name] = [t["hp"] for t in ranked[:keep]]
      record[name]["rungs"].append(dict(
          epochs=until - done, until=until,
          cells=[{"hp": t["hp"],
                  "mean_val_accuracy": float(np.mean(t["val_accuracy"]))}
                 for t in rows],
          survivors=alive[name]))
    done = until
  if edges:
    chosen = best()
    evaluate({m.name: edge_steps(m, chosen[m.name], learning_rates)
              for m in methods}, len(ends) + 1)
  return record


#: The searches by name (``--search``); the first is the default.
SEARCHES = {"halving": halving, "grid": grid, "cross": cross}


def tune(methods, trainer, *, search: str = "halving",
         learning_rates=LEARNING_RATES, eta: int = ETA,
         edges: bool = True, after: int = 0) -> dict:
  """Every method's ``Selection`` by the search ``search``.

  ``trainer.epochs`` is the full budget; ``trainer.train_to(settings,
  until, stage)`` trains the settings ``{method name: [hp, ...]}`` to epoch
  ``until`` (resuming a setting trained before, starting the others) and
  returns ``{method name: [trial, ...]}`` (trials as ``choose`` reads
  them); settings it is not given again are dropped. A method's best is
  chosen over everything evaluated at the full budget. ``edges=False``
  (``--quick``) skips the steps beyond an unbounded grid's end: a choice
  there stays flagged ``at_edge`` and is not followed.
  """
  trials: dict[str, list] = {m.name: [] for m in methods}

  def evaluate(settings_by_method, stage, until=None):
    until = trainer.epochs if until is None else until
    out = trainer.train_to(settings_by_method, until, stage)
    if until == trainer.epochs:
      for name, rows in out.items():
        trials[name] += rows
    return out

  def best():
    return {m.name: choose(m, trials[m.name], learning_rates).chosen
            for m in methods}

  records = SEARCHES[search](methods, evaluate, best, learning_rates,
                             eta=eta, epochs=trainer.epochs, edges=edges,
                             after=after)
  return {m.name: dataclasses.replace(
      choose(m, trials[m.name], learning_rates), halving=records.get(m.name))
          for m in methods}


@dataclasses.dataclass
class Selection:
  """The record of one method's tuning.

  Attributes:
    chosen: the chosen hyperparameters.
    trials: one row per evaluated setting: the hyperparameters, the
      validation accuracy of each tuning seed and their mean.
    at_edge: the names of the chosen values that sit at an end of their
      grid.
    halving: successive halving's record (η, the rungs and their
      survivors), or None for another search.
  """
  chosen: dict
  trials: list[dict]
  at_edge: list[str]
  halving: dict | None = None

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def choose(method, trials: list[dict],
           learning_rates=LEARNING_RATES) -> Selection:
  """The best of ``trials`` (dicts with ``hp``, ``val_accuracy`` per tuning
  seed and ``val_nll`` per tuning seed), with edge flags."""
  if not trials:
    raise ValueError(f"no trials for {method.name}")
  for t in trials:
    t["mean_val_accuracy"] = float(np.mean(t["val_accuracy"]))
    t["mean_val_nll"] = float(np.mean(t["val_nll"]))
  best = max(trials, key=lambda t: (t["mean_val_accuracy"],
                                    -_finite(t["mean_val_nll"])))
  chosen = dict(best["hp"])
  # The grids as searched: stage 3 may have stepped beyond an end.
  grids = {name: set(grid) | {t["hp"][name] for t in trials}
           for name, grid in dict(method.knobs,
                                  lr=tuple(learning_rates)).items()}
  at_edge = [name for name, grid in grids.items()
             if len(grid) > 1 and chosen[name] in (min(grid), max(grid))]
  return Selection(chosen=chosen, trials=trials, at_edge=at_edge)


def _finite(x: float) -> float:
  return x if np.isfinite(x) else np.inf

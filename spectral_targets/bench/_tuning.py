"""How a method is tuned: the same protocol and grids for every method.

Every method tunes the learning rate on ``LEARNING_RATES`` and each of its
own knobs on its grid (``_methods.Method.knobs``), on the validation split
only, averaging the validation accuracy of the tuning seeds (which are not
the evaluation seeds: the test figures come from models whose seeds took
no part in the choice). A coordinate search in three stages:

1. the learning rate grid, the knobs at their defaults;
2. every combination of the knobs' grids, at the stage-1 learning rate;
3. if the knobs moved off their defaults, the learning rates next to the
   chosen one, at the chosen knobs (learning rate and head scale interact);
   and wherever the choice so far sits at an end of an unbounded grid (the
   learning rate, a head's scale), one step beyond it (÷2 or ×2), so that
   the grid extends on both sides of what is chosen.

``search="grid"`` (``spectral-targets bench --search grid``) replaces the
three stages by the full product of the learning-rate and knob grids, then
the steps beyond an unbounded grid's end: about 2.4x the cells for a head
with a scale, and no blind spot where two hyperparameters interact (the
cross can miss a cell that is better along neither axis from the cross's
centre).

The configuration with the best mean validation accuracy over everything
evaluated is chosen (ties: the lower mean validation NLL). A choice at the
end of what was tried is flagged: the optimum may lie outside the grid
(for the learning rate and the scale: even one step beyond did better).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

#: The learning-rate grid every method searches.
LEARNING_RATES = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)
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


def cross(methods, evaluate, best, learning_rates) -> None:
  """The default search: the three stages above, every method's stage in
  one call of ``evaluate``."""
  evaluate({m.name: stage_one(m, learning_rates) for m in methods}, 1)
  chosen = best()
  evaluate({m.name: stage_two(m, chosen[m.name]["lr"]) for m in methods}, 2)
  chosen = best()
  evaluate({m.name: stage_three(m, chosen[m.name], learning_rates)
            for m in methods}, 3)


def grid(methods, evaluate, best, learning_rates) -> None:
  """``search="grid"``: the full product, then the steps beyond an
  unbounded grid's end."""
  evaluate({m.name: full_grid(m, learning_rates) for m in methods}, 1)
  chosen = best()
  evaluate({m.name: edge_steps(m, chosen[m.name], learning_rates)
            for m in methods}, 2)


#: The searches by name (``--search``).
SEARCHES = {"cross": cross, "grid": grid}


def tune(methods, evaluate, *, search: str = "cross",
         learning_rates=LEARNING_RATES) -> dict:
  """Every method's ``Selection`` by the search ``search``.

  ``evaluate(settings_by_method, stage)`` trains and scores the settings
  ``{method name: [hp, ...]}`` and returns ``{method name: [trial, ...]}``
  (trials as ``choose`` reads them); a method's best so far is chosen over
  everything evaluated.
  """
  trials: dict[str, list] = {m.name: [] for m in methods}

  def run(settings_by_method, stage):
    for name, rows in evaluate(settings_by_method, stage).items():
      trials[name] += rows

  def best():
    return {m.name: choose(m, trials[m.name], learning_rates).chosen
            for m in methods}

  SEARCHES[search](methods, run, best, learning_rates)
  return {m.name: choose(m, trials[m.name], learning_rates) for m in methods}


@dataclasses.dataclass
class Selection:
  """The record of one method's tuning.

  Attributes:
    chosen: the chosen hyperparameters.
    trials: one row per evaluated setting: the hyperparameters, the
      validation accuracy of each tuning seed and their mean.
    at_edge: the names of the chosen values that sit at an end of their
      grid.
  """
  chosen: dict
  trials: list[dict]
  at_edge: list[str]

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

"""The ``diamonds`` ordinal task's data: ggplot2's table of 53,940 diamonds,
shipped with the package (``data/diamonds.csv.gz``; source, licence and
extraction in ``data/README.md``).

Two ordinal targets, each predicted from the other attributes:

- **colour grade**: 7 ordered grades, J < I < H < G < F < E < D (worst to
  best), encoded 0..6 in that order; features carat, cut, clarity, depth,
  table, price, x, y, z;
- **price decile**: 10 ordered, equal-frequency price bins whose edges are
  the deciles of the *training* split's prices (the validation and test
  prices are binned with those edges and never move them); features carat,
  cut, colour, clarity, depth, table, x, y, z.

The ordered categoricals (cut, colour, clarity) enter as their rank (0 =
worst level), the order ggplot2 gives them, so a linear model sees their
order. Every seed draws its own random split of the rows (the same rows for
both targets): 60 / 15 / 25 into training, validation and test parts, of
whose training part the first ``TRAIN_ROWS`` (10,000, in the split's random
order) train, the rest unused. Every method and the scikit-learn references
fit the same 10,000 rows: a gradient-boosted classifier on all ~32,000 took
80-150 s a seed on the 2-core machine, and the full part made each
diamonds task ~12 of the default run's minutes. The splits are
standardised with the training rows' mean and spread, as the other tasks'
are.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from importlib import resources

import numpy as np

import spectral_targets as st
from spectral_targets.bench._tasks import ORDINAL_WIDTH, Split, Task, _standardise

#: ggplot2's level orders, worst to best; a level's code is its position.
CUTS = ("Fair", "Good", "Very Good", "Premium", "Ideal")
COLOURS = ("J", "I", "H", "G", "F", "E", "D")
CLARITIES = ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF")
ORDERED = {"cut": CUTS, "color": COLOURS, "clarity": CLARITIES}

NUM_ROWS = 53_940
NUM_PRICE_BINS = 10
#: Train / validation / test fractions of the rows, per seed.
FRACTIONS = (0.6, 0.15, 0.25)
#: Rows of the training part that train (every method and reference).
TRAIN_ROWS = 10_000

#: Features of each target, in column order (the target's own column and,
#: for the price deciles, price itself are left out).
FEATURES = {
    "colour": ("carat", "cut", "clarity", "depth", "table", "price", "x",
               "y", "z"),
    "price-decile": ("carat", "cut", "color", "clarity", "depth", "table",
                     "x", "y", "z"),
}
NUM_CLASSES = {"colour": len(COLOURS), "price-decile": NUM_PRICE_BINS}


@functools.lru_cache(maxsize=1)
def load_table() -> dict[str, np.ndarray]:
  """The whole table, one read-only array per column: the ordered
  categoricals as int8 ranks (``ORDERED``), the rest float64."""
  raw = (resources.files("spectral_targets.bench") / "data" /
         "diamonds.csv.gz").read_bytes()
  reader = csv.reader(io.StringIO(gzip.decompress(raw).decode("ascii")))
  header = next(reader)
  columns = list(zip(*reader))
  table = {}
  for name, values in zip(header, columns):
    if name in ORDERED:
      index = {level: i for i, level in enumerate(ORDERED[name])}
      unknown = set(values) - set(index)
      if unknown:
        raise ValueError(f"diamonds.csv.gz: unknown {name} levels "
                         f"{sorted(unknown)}")
      column = np.array([index[s] for s in values], np.int8)
    else:
      column = np.array(values, np.float64)
    column.flags.writeable = False
    table[name] = column
  if len(table["price"]) != NUM_ROWS:
    raise ValueError(f"diamonds.csv.gz holds {len(table['price'])} rows, "
                     f"expected {NUM_ROWS}")
  return table


def split_rows(seed: int, num_rows: int = NUM_ROWS, fractions=FRACTIONS, *,
               train_rows: int | None = None) -> tuple[np.ndarray, ...]:
  """(train, validation, test) row indices, a random partition drawn from
  ``seed`` (each sorted); ``train_rows``: keep only the first that many of
  the training part, in the permutation's order (a random subset; the
  validation and test parts do not change).

  Example: ``train, val, test = split_rows(0, train_rows=10_000)``.
  """
  order = np.random.default_rng(seed).permutation(num_rows)
  cuts = np.round(np.cumsum(fractions)[:-1] * num_rows).astype(int)
  parts = np.split(order, cuts)
  if train_rows is not None:
    if not 1 <= train_rows <= len(parts[0]):
      raise ValueError(f"train_rows must be in [1, {len(parts[0])}], got "
                       f"{train_rows}")
    parts[0] = parts[0][:train_rows]
  return tuple(np.sort(part) for part in parts)


def decile_edges(train_prices: np.ndarray,
                 num_bins: int = NUM_PRICE_BINS) -> np.ndarray:
  """(num_bins - 1,) inner edges of equal-frequency bins of the training
  prices: their 1/num_bins, ..., (num_bins - 1)/num_bins quantiles."""
  return np.quantile(np.asarray(train_prices, np.float64),
                     np.arange(1, num_bins) / num_bins)


def price_bins(prices: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Bin of each price, 0 .. len(edges): a price equal to an edge goes to
  the bin above it."""
  return np.searchsorted(edges, prices, side="right").astype(np.int32)


def features(table: dict[str, np.ndarray], target: str) -> np.ndarray:
  """(N, 9) float64 inputs of ``target`` ("colour" or "price-decile")."""
  return np.stack([table[c].astype(np.float64) for c in FEATURES[target]], 1)


def diamonds_split(seed: int, target: str, *, fractions=FRACTIONS,
                   train_rows: int | None = TRAIN_ROWS,
                   table: dict[str, np.ndarray] | None = None) -> Split:
  """One seed's ``Split`` of the ``target`` task ("colour": 7 grades J..D
  as 0..6; "price-decile": 10 training-split price deciles, fitted on the
  ``train_rows`` training rows; None: the whole training part). ``table``
  replaces the shipped table (for tests)."""
  if target not in FEATURES:
    raise ValueError(f"target must be one of {sorted(FEATURES)}, got "
                     f"{target!r}")
  table = load_table() if table is None else table
  x = features(table, target)
  parts = split_rows(seed, len(x), fractions, train_rows=train_rows)
  if target == "colour":
    y = table["color"].astype(np.int32)
  else:
    y = price_bins(table["price"], decile_edges(table["price"][parts[0]]))
  x_tr, x_val, x_te = _standardise(*(x[p] for p in parts))
  tr, val, te = parts
  return Split(x_tr, y[tr], x_val, y[val], x_te, y[te])


#: Epochs of the diamonds tasks (10,000 training rows a seed, batches of
#: 128: 1,560 optimiser steps).
EPOCHS = 20
TITLES = {"colour": "colour grade (7 grades J < … < D)",
          "price-decile": "price decile (10 training-split deciles)"}


def diamonds_task(target: str, epochs: int = EPOCHS) -> Task:
  """The ``diamonds-<target>`` task: ggplot2's diamonds, ``target``
  predicted from the other attributes (``diamonds_split``), an MLP body,
  the graded kernel of the ordinal task (its spectral codebook is the
  horseshoe) and class-step distances |i − j|."""
  C = NUM_CLASSES[target]
  i = np.arange(C)
  return Task(
      f"diamonds-{target}", f"ggplot2 diamonds, {TITLES[target]}, MLP body",
      "ggplot2's 53,940 diamonds (shipped; MIT), re-split per seed (random "
      f"60 / 15 / 25; {TRAIN_ROWS:,} of the training part train), the "
      f"{TITLES[target]} from the other attributes "
      "(ordered categoricals as ranks); kernel: graded, width "
      f"{ORDINAL_WIDTH:g} class steps (not fitted)",
      C, "mlp", epochs, lambda seed: diamonds_split(seed, target),
      kernel=np.asarray(st.graded(C, ORDINAL_WIDTH), np.float64),
      distances=np.abs(i[:, None] - i[None, :]).astype(np.float64),
      distance_unit="grades |i − j|", small_d=2, ordinal=True,
      batch_size=128)

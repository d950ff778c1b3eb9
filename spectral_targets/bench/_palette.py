"""One colour and one marker per method, the same in every figure.

A method's style is a function of its name alone, never of its position in
a figure, so ``cosine`` looks the same in every task's plot, the budget
curve and the shift curve of a run (and of every run).
"""

from __future__ import annotations

import zlib

# Okabe–Ito, then greys: distinguishable with the common colour-vision
# deficiencies.
COLOURS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2",
           "#D55E00", "#CC79A7", "#777777", "#BBBBBB", "#444444", "#999933")
MARKERS = "osD^v<>pPX*h"

#: The benchmark's methods, each a fixed (colour, marker) slot. Pairs are
#: distinct: the 13th and later take the next marker round.
KNOWN = ("one-hot", "smooth-labels", "kernel-soft-labels", "cosine",
         "random-codebook", "simplex", "spectral", "spectral-small", "hxe",
         "online-soft-labels", "online-codebook", "kd", "dkd", "sa-kd",
         "sord", "coral", "regression")


def _slot(i: int) -> tuple[str, str]:
  n = len(COLOURS)
  return COLOURS[i % n], MARKERS[(i + i // n) % len(MARKERS)]


def style(method: str) -> tuple[str, str]:
  """(colour, marker) of ``method``; a name not in ``KNOWN`` gets a slot
  from a checksum of its name (stable across runs and machines)."""
  if method in KNOWN:
    return _slot(KNOWN.index(method))
  return _slot(len(KNOWN) + zlib.crc32(method.encode()) % 128)

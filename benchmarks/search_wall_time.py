"""The default run's tasks under two searches, for the wall-time and
agreement figures of successive halving against the exhaustive grid.

    python benchmarks/search_wall_time.py --out runs/halving --tasks mnist1d hierarchy
    python benchmarks/search_wall_time.py --out runs/grid --search grid --tasks mnist1d hierarchy

Every argument is passed to ``spectral-targets bench``; the one difference
from that command is that mnist1d runs its main block only (the budget
curve, which tunes four methods again at 5 and 100 epochs, and the paper's
baselines are dropped): under the exhaustive grid the 100-epoch budget
curve alone is ~19,000 model-epochs, longer than this machine's session.
Run the two searches side by side, one core each (``taskset -c 0`` /
``taskset -c 1``), so they share the same machine state; then compare them
with ``benchmarks/compare_searches.py``.
"""

import dataclasses
import sys

from spectral_targets import _cli
from spectral_targets.bench import _suite

if __name__ == "__main__":
  row = _suite.TASKS["mnist1d"]
  _suite.TASKS["mnist1d"] = dataclasses.replace(
      row, run=dataclasses.replace(row.run, extras=(), references=()))
  sys.exit(_cli.main(["bench", *sys.argv[1:]]))

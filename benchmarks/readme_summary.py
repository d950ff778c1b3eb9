"""Prints the README's benchmark summary table from a recorded run.

    python benchmarks/readme_summary.py benchmarks/results/default.json
"""

import json
import sys

from spectral_targets.bench._report import summary_table

if __name__ == "__main__":
  path = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/default.json"
  with open(path) as f:
    print(summary_table(json.load(f)))

"""The first call of ``spectral_codebook`` in a fresh process (issue 15).

Every measurement is its own Python process: ``import spectral_targets``
(timed), the kernel built (not timed), then ``spectral_codebook`` called
twice, timed each (the first call pays what a user building a codebook pays:
no warm caches, no compiled programs). Each case runs ``--repeats`` times,
the cases interleaved; the table gives medians, and the load average seen
around the runs (the machine may be shared).

Cases, for C in {10, 100, 256, 1000}: ``flat(C)`` at d = C - 1 (the simplex:
the cut in a gap), at d = 2 (inside the (C-1)-fold eigenvalue: the regular
C-gon, a provably optimal harmonic frame) and at d = 8 (d = 4 for C = 10;
inside it, optimised); ``blocks`` of 5 classes (4 at C = 256) at d = 2
(inside the superclass eigenvalue; ``allow_merged=True``, the classes of a
block being identical); ``double_center(graded(C, C / 10))`` at d = 8 (no
tie); and the CIFAR-100 tree, raw at d = 10 (inside the 20 superclass
modes) and double-centred at ``separating_dimension`` = 99.

    python benchmarks/first_call.py               # about 5 minutes
    python benchmarks/first_call.py --repeats 3 --sizes 10 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def kernel(name: str, C: int):
  """(kernel, keyword arguments) of a case, built in the child."""
  import numpy as np
  import spectral_targets as st
  if name == "flat":
    return st.flat(C), {}
  if name == "blocks":  # equal blocks (of 5, or 4 when 5 does not divide C)
    return st.blocks(np.arange(C) // (5 if C % 5 == 0 else 4)), dict(
        allow_merged=True)
  if name == "graded":
    return st.double_center(st.graded(C, C / 10)), {}
  edges, classes = st.cifar100_hierarchy()
  S = st.from_hierarchy(edges, classes=classes)
  if name == "cifar100-tree":
    return S, dict(allow_merged=True)
  return st.double_center(S), {}  # "cifar100-tree-centred"


def child(name: str, C: int, d: int) -> None:
  start = time.perf_counter()
  import jax
  import spectral_targets as st
  imported = time.perf_counter()
  S, kwargs = kernel(name, C)
  S = jax.block_until_ready(S)
  times = []
  for _ in range(2):
    t = time.perf_counter()
    jax.block_until_ready(st.spectral_codebook(S, d, **kwargs))
    times.append(time.perf_counter() - t)
  print(json.dumps(dict(import_s=imported - start, first_s=times[0],
                        second_s=times[1])))


def cases(sizes):
  out = []
  for C in sizes:
    out += [("flat", C, C - 1, "gap (simplex)"),
            ("flat", C, 2, "tie: ring, closed form"),
            ("flat", C, 4 if C <= 10 else 8, "tie: optimised"),
            ("blocks", C, 2, "tie among superclass modes"),
            ("graded", C, 8, "no tie")]
  if 100 in sizes:
    out += [("cifar100-tree", 100, 10, "tie among superclass modes"),
            ("cifar100-tree-centred", 100, 99, "gap (separating d)")]
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--sizes", type=int, nargs="+",
                      default=[10, 100, 256, 1000])
  parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.child[0], int(args.child[1]), int(args.child[2]))
    return
  import jax
  import numpy as np
  from spectral_targets.bench import cpu_name
  print(f"# {cpu_name()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, jax {jax.__version__}, numpy "
        f"{np.__version__}", flush=True)
  todo = cases(args.sizes)
  runs = {case: [] for case in todo}
  loads = []
  for _ in range(args.repeats):
    for case in todo:
      name, C, d, _ = case
      loads.append(os.getloadavg()[0])
      out = subprocess.run(
          [sys.executable, __file__, "--child", name, str(C), str(d)],
          capture_output=True, text=True, check=True)
      runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(f"# {args.repeats} fresh processes per case; 1-minute load average "
        f"{min(loads):.2f} to {max(loads):.2f} (median "
        f"{statistics.median(loads):.2f})")
  print("| kernel | C | d | cut | import | first call | second call |")
  print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
  rows = []
  for case, results in runs.items():
    name, C, d, note = case
    med = {key: statistics.median(r[key] for r in results)
           for key in ("import_s", "first_s", "second_s")}
    rows.append(dict(kernel=name, C=C, d=d, cut=note, **med,
                     first_max_s=max(r["first_s"] for r in results)))
    print(f"| {name} | {C:,} | {d} | {note} | {med['import_s']:.2f} s | "
          f"{med['first_s'] * 1e3:.0f} ms | {med['second_s'] * 1e3:.0f} ms |",
          flush=True)
  print(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()

"""Codebooks at many classes (issue: matrix-free spectra).

1. Dense ``eigh`` against randomized subspace iteration on the same dense
   kernel (a generated taxonomy's LCA kernel) at C in {1000, 4096, 16384},
   d in {64, 256}: wall time, their ratio, and gram_error of each.
2. C = 100,000 leaves of a generated taxonomy: the d = 128 codebook through
   the implicit tree operator (solved by ``method="tree"``, "auto"'s choice
   for it), timed from the edge list, in a fresh process whose peak RSS is
   reported; ``--huge 1000000`` runs that alone at 1,000,000 leaves.
3. The real ImageNet (1,000) and iNaturalist-19 (1,010) trees, when
   ../shared/data/hierarchies is present: iterative through the operator
   against dense, at d = 128.

    python benchmarks/many_classes.py           # all (about 15 minutes)
    python benchmarks/many_classes.py --quick   # C <= 4096, no 100k run

Iterative times are the second call (the first compiles); the dense eigh
(``eigenmodes``, all C modes: what a dense codebook needs) is timed once at
C = 16384 (its compile is a fraction of a second of minutes).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import jax
import numpy as np

import spectral_targets as st
from spectral_targets import _sibling_deflation
from spectral_targets._eigensolvers import resolve_method
from spectral_targets.bench import cpu_name

HIERARCHIES = (pathlib.Path(__file__).resolve().parents[1].parent / "shared"
               / "data" / "hierarchies")


def _timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return out, time.perf_counter() - start


def dense_vs_iterative(sizes, dims):
  rows = []
  for C in sizes:
    S = st.from_hierarchy(st.random_hierarchy(C, seed=0),
                          implicit=True).to_dense()
    S = jax.block_until_ready(S)
    if C < 16384:
      st.eigenmodes(S)  # compile
    (lam, _), t_dense = _timed(lambda: st.eigenmodes(S))
    lam = np.asarray(lam, np.float64)
    for d in dims:
      # The dense error from the full spectrum: the lost eigenvalues' energy.
      lost = np.sum(lam[d:] ** 2) + np.sum(np.minimum(lam[:d], 0) ** 2)
      e_dense = float(np.sqrt(lost / np.sum(lam**2)))
      it = lambda: st.top_eigenmodes(S, d, method="randomized")
      _, t_first = _timed(it)
      top, t_iter = _timed(it)
      e_iter = float(st.gram_error(S, d, method="randomized"))
      rows.append(dict(C=C, d=d, auto=resolve_method("auto", C, d),
                       dense_s=t_dense, iterative_s=t_iter,
                       iterative_first_call_s=t_first,
                       speedup=t_dense / t_iter, iterations=top.iterations,
                       converged=top.converged,
                       gram_error_dense=e_dense, gram_error_iterative=e_iter))
      print(json.dumps(rows[-1]), flush=True)
  return rows


def huge(num_classes, d):
  """Run in a fresh process: time and peak RSS of the whole path.

  edges_s, operator_s and codebook_s are cumulative from the start (the
  codebook's first solve compiles); then, each on its own: gram_error_s,
  and where a codebook's time goes, from warm repeats: deflate_s (the
  sibling groups and the reduced kernel, "tree" only) and solve_s (the
  whole top_eigenmodes call of the codebook's d + 4 modes)."""
  start = time.perf_counter()
  edges = st.random_hierarchy(num_classes, seed=0)
  t_edges = time.perf_counter() - start
  K = st.from_hierarchy(edges, implicit=True)
  t_operator = time.perf_counter() - start
  codes = jax.block_until_ready(st.spectral_codebook(K, d, normalize=False))
  t_codebook = time.perf_counter() - start
  error, t_error = _timed(lambda: st.gram_error(K, d))
  top, t_solve = _timed(lambda: st.top_eigenmodes(K, d + 4))
  row = dict(C=num_classes, d=d, nodes=sum(s.shape[0] for s in K.sources),
             depth=len(K.sources) - 1, solver=top.method,
             iterations=top.iterations,
             residual=float(np.max(top.residuals)),
             edges_s=t_edges, operator_s=t_operator, codebook_s=t_codebook,
             gram_error_s=t_error, solve_s=t_solve)
  if top.method == "tree":
    parts, t_deflate = _timed(lambda: _sibling_deflation.deflate(K))
    row.update(groups=int(parts.sizes.size), deflate_s=t_deflate)
  return row | dict(gram_error=float(error), codes_shape=list(codes.shape),
                    peak_rss_gb=_peak_rss_gb())


def _peak_rss_gb():
  # VmHWM, not getrusage's ru_maxrss: the latter survives execve, so a
  # child started by the full run would report its parent's peak.
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 2**20
  return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 2**20


def real_trees(d):
  rows = []
  for name in ("imagenet.isa.txt", "inaturalist19.isa.txt"):
    path = HIERARCHIES / name
    if not path.exists():
      continue
    edges = st.load_hierarchy(path)
    S = st.from_hierarchy(edges)
    K = st.from_hierarchy(edges, implicit=True)
    dense = lambda: st.top_eigenmodes(S, d, method="dense")
    it = lambda: st.top_eigenmodes(K, d, method="randomized")
    dense(), it()
    _, t_dense = _timed(dense)
    top, t_iter = _timed(it)
    rows.append(dict(tree=name, C=S.shape[0], d=d, dense_s=t_dense,
                     iterative_operator_s=t_iter, iterations=top.iterations,
                     gram_error_dense=float(st.gram_error(S, d)),
                     gram_error_operator=float(st.gram_error(
                         K, d, method="randomized"))))
    print(json.dumps(rows[-1]), flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--huge", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.huge:
    print(json.dumps(huge(args.huge, 128)))
    return
  print(f"# {cpu_name()}, jax {jax.__version__}, {jax.device_count()} "
        "CPU device(s)", flush=True)
  sizes = (1000, 4096) if args.quick else (1000, 4096, 16384)
  results = dict(dense_vs_iterative=dense_vs_iterative(sizes, (64, 256)),
                 real_trees=real_trees(128))
  if not args.quick:
    out = subprocess.run([sys.executable, __file__, "--huge", "100000"],
                         capture_output=True, text=True, check=True)
    results["huge"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results["huge"]), flush=True)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()

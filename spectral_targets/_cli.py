"""The ``spectral-targets`` command."""

from __future__ import annotations

import argparse
import shlex
import sys


def _parser():
  parser = argparse.ArgumentParser(
      prog="spectral-targets",
      description="Spectral codebooks, fixed-target heads and distillation "
                  "for JAX.")
  sub = parser.add_subparsers(dest="command", required=True)
  bench = sub.add_parser(
      "bench", help="benchmark codebook heads and distillation against "
                    "one-hot on offline data sets")
  bench.add_argument("--quick", action="store_true",
                     help="a smoke test of the whole pipeline: few epochs "
                          "on at most 500 samples per task, no MNIST-1D "
                          "reference models")
  bench.add_argument("--tasks", nargs="+", metavar="TASK",
                     help="mnist1d digits hierarchy ordinal (default: all)")
  bench.add_argument("--seeds", type=int, default=None,
                     help="seeds per method (default 5; 2 with --quick)")
  bench.add_argument("--out", default="bench-results",
                     help="output folder (default ./bench-results)")
  names = ["codebook-morph", "rank-reconstruction", "collapse",
           "dark-knowledge"]
  render = sub.add_parser(
      "render", help="write the four animations (GIFs) of codebooks, rank, "
                     "neural collapse and dark knowledge")
  render.add_argument("which", nargs="*", metavar="WHICH",
                      help=f"any of {' '.join(names)} (default: all)")
  render.add_argument("--out", default="figures",
                      help="output folder (default ./figures)")
  render.add_argument("--frames", type=int, default=40,
                      help="frames per animation (default 40)")
  render.add_argument("--fps", type=int, default=8,
                      help="frames per second (default 8)")
  return parser


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = _parser().parse_args(argv)
  if args.command == "bench":
    from spectral_targets import bench
    missing = bench.missing_requirements()
    if missing:
      print(f"spectral-targets bench needs {', '.join(missing)}, which the "
            f"'bench' extra installs:\n  {bench.INSTALL_HINT}",
            file=sys.stderr)
      return 2
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    if seeds < 1:
      print("--seeds must be >= 1", file=sys.stderr)
      return 2
    try:
      bench.run_benchmark(tasks=args.tasks, seeds=seeds, quick=args.quick,
                          out=args.out, command=shlex.join(
                              ["spectral-targets", *argv]))
    except ValueError as e:
      print(f"spectral-targets bench: {e}", file=sys.stderr)
      return 2
  if args.command == "render":
    return _render(args)
  return 0


def _render(args) -> int:
  from spectral_targets import render
  missing = render.missing_requirements()
  if missing:
    print(f"spectral-targets render needs {', '.join(missing)}, which the "
          f"'viz' extra installs:\n  {render.INSTALL_HINT}", file=sys.stderr)
    return 2
  for which in args.which or list(render.RENDERERS):
    try:
      path = render.render(which, args.out, frames=args.frames, fps=args.fps)
    except ValueError as e:
      print(f"spectral-targets render: {e}", file=sys.stderr)
      return 2
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")
  return 0

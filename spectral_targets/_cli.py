"""The ``spectral-targets`` command.

Every error, whether a bad argument or a missing extra, is reported the
way argparse reports its own: the usage line, then
``spectral-targets <command>: error: <message>`` on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
from collections.abc import Callable, Sequence

import spectral_targets
from spectral_targets import bench, render


def _int_at_least(minimum: int) -> Callable[[str], int]:
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(
          f"must be >= {minimum}, got {value}")
    return value
  return parse


def _one_of(kind: str, names: Sequence[str]) -> Callable[[str], str]:
  def parse(text: str) -> str:
    if text not in names:
      raise argparse.ArgumentTypeError(
          f"unknown {kind} {text!r}; choose from {', '.join(names)}")
    return text
  return parse


def _folder(text: str) -> pathlib.Path:
  """An output folder that exists or can be created: checked while the
  arguments are parsed, before any work (a benchmark that trains for hours
  must not fail when it writes its results)."""
  path = pathlib.Path(text)
  if path.exists() and not path.is_dir():
    raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
  existing = path.absolute()
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise argparse.ArgumentTypeError(
        f"{text!r} cannot be created: {str(existing)!r} is a file, not a "
        "folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise argparse.ArgumentTypeError(
        f"{text!r} cannot be written: {str(existing)!r} is not writable")
  return path


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             name: str, summary: str) -> argparse.ArgumentParser:
  """A subcommand whose --help opens with its one-line summary."""
  return sub.add_parser(name, help=summary,
                        description=summary[0].upper() + summary[1:] + ".")


def _parser() -> tuple[argparse.ArgumentParser,
                       dict[str, argparse.ArgumentParser]]:
  parser = argparse.ArgumentParser(
      prog="spectral-targets",
      description="Spectral codebooks, fixed-target heads and distillation "
                  "for JAX.")
  parser.add_argument("--version", action="version",
                      version=f"%(prog)s {spectral_targets.__version__}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                              required=True)
  bench_parser = _command(sub, "bench",
                          "benchmark codebook heads and distillation against "
                          "one-hot on offline data sets")
  bench_parser.add_argument(
      "--quick", action="store_true",
      help="a smoke test of the whole pipeline, not evidence: two epochs on "
           f"about {bench.QUICK_TRAIN_LIMIT} samples per task, two learning "
           "rates, no knob grids, no steps beyond a grid's end, no step "
           "timing")
  tasks = list(bench.TASK_ORDER)
  bench_parser.add_argument(
      "--tasks", nargs="+", metavar="TASK", type=_one_of("task", tasks),
      help=f"any of {' '.join(tasks)} (default: all but "
           f"{' '.join(t for t in tasks if not bench.TASK_DEFAULTS[t])}; "
           "--quick runs all but "
           f"{' '.join(t for t in tasks if bench.TASK_NEEDS[t])}; with "
           "--data, only the file's task unless --tasks names others too)")
  methods = list(bench.METHOD_NAMES)
  bench_parser.add_argument(
      "--methods", nargs="+", metavar="METHOD",
      type=_one_of("method", methods),
      help=f"any of {' '.join(methods)} (default: all; one-hot and the "
           "controls the others are compared with always run)")
  bench_parser.add_argument(
      "--seeds", type=_int_at_least(1), metavar="N",
      help="evaluation seeds per method (default 5; 2 with --quick)")
  bench_parser.add_argument(
      "--epochs", type=_int_at_least(1), metavar="N",
      help="training epochs of every task (default: each task's own "
           "budget; 2 with --quick)")
  bench_parser.add_argument(
      "--search", choices=bench.SEARCHES, default=bench.SEARCHES[0],
      help="how each method's hyperparameters are chosen on validation: "
           "halving (the default: successive halving over every "
           "combination of the grids, keeping the best third after each "
           "rung), grid (every combination trained to the full budget) or "
           "cross (learning rate, then the method's knobs)")
  bench_parser.add_argument(
      "--out", type=_folder, default="bench-results", metavar="DIR",
      help="output folder (default ./bench-results)")
  yours = bench_parser.add_argument_group(
      "your own data",
      "the same protocol (every method tuned the same way, evaluation "
      "seeds, paired intervals, the same report) on data you bring")
  yours.add_argument(
      "--data", metavar="FILE.npz",
      help="adds the task 'user': a NumPy .npz of x (N, ...) and y (N,) "
           "integer labels, re-split per seed (stratified 60/15/25), or of "
           "x_train, y_train, x_test, y_test (optional x_val, y_val; the "
           "test split stays fixed); optional class_names (C,), kernel "
           "(C, C), distances (C, C). Without a kernel or --hierarchy the "
           "kernel is estimated per seed from a one-hot model")
  yours.add_argument(
      "--hierarchy", metavar="FILE",
      help="a PARENT CHILD text file whose leaves are the --data file's "
           "class names: the methods get its LCA kernel, hierarchical "
           "cross-entropy its tree, severity and the CRM control its LCA "
           "heights")
  yours.add_argument(
      "--body", type=_one_of("body", bench.USER_BODIES), metavar="BODY",
      help="the model on the --data inputs (flattened): linear (the "
           "default: a linear probe, the common case for embeddings of a "
           "frozen model) or mlp (2 x 256 ReLU)")
  yours.add_argument(
      "--data-dir", metavar="DIR",
      help="a folder holding the official CIFAR-100 python archive "
           "cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/"
           "cifar.html; nothing is downloaded), for --tasks cifar100: raw "
           "pixels and an MLP, a demonstration of the protocol, not a "
           "competitive CIFAR-100 number (for a real probe, pass "
           "embeddings with --data)")
  names = list(render.RENDERERS)
  render_parser = _command(sub, "render",
                           "write the four animations (GIFs) of codebooks, "
                           "rank, neural collapse and dark knowledge")
  render_parser.add_argument(
      "which", nargs="*", metavar="WHICH", type=_one_of("animation", names),
      help=f"any of {' '.join(names)} (default: all)")
  render_parser.add_argument(
      "--out", type=_folder, default="figures", metavar="DIR",
      help="output folder (default ./figures)")
  render_parser.add_argument(
      "--frames", type=_int_at_least(2), default=render.DEFAULT_FRAMES,
      metavar="N",
      help=f"frames per animation (default {render.DEFAULT_FRAMES}; "
           "rank-reconstruction uses at most 40)")
  render_parser.add_argument(
      "--fps", type=_int_at_least(1), default=render.DEFAULT_FPS,
      metavar="N", help=f"frames per second (default {render.DEFAULT_FPS})")
  return parser, {"bench": bench_parser, "render": render_parser}


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``spectral-targets`` on ``argv`` (default: ``sys.argv[1:]``).

  Returns the exit status instead of exiting: 0 on success (also for
  ``--help`` and ``--version``), 2 on a usage error or a missing extra,
  with argparse's message on stderr.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    return _main(argv)
  except SystemExit as e:  # argparse's --help, --version and errors
    if e.code is None or isinstance(e.code, int):
      return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def _main(argv: list[str]) -> int:
  parser, commands = _parser()
  args = parser.parse_args(argv)
  command = commands[args.command]
  if args.command == "bench":
    _require(command, bench.missing_requirements(), "bench",
             bench.INSTALL_HINT)
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    try:
      bench.run_benchmark(tasks=args.tasks, seeds=seeds, quick=args.quick,
                          epochs=args.epochs, methods=args.methods,
                          search=args.search, out=args.out, data=args.data,
                          hierarchy=args.hierarchy, body=args.body,
                          data_dir=args.data_dir, command=shlex.join(
                              ["spectral-targets", *argv]))
    except bench.InputError as e:
      command.error(f"argument --{e.argument.replace('_', '-')}: {e}")
    return 0
  _require(command, render.missing_requirements(), "viz", render.INSTALL_HINT)
  for which in args.which or list(render.RENDERERS):
    try:
      path = render.render(which, args.out, frames=args.frames, fps=args.fps)
    except OSError as e:
      command.error(f"cannot write {which}.gif into {str(args.out)!r}: "
                    f"{e.strerror or e}")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MB)")
  return 0


def _require(command: argparse.ArgumentParser, missing: list[str],
             extra: str, hint: str) -> None:
  if missing:
    command.error(f"needs {', '.join(missing)}, which the {extra!r} extra "
                  f"installs:\n  {hint}")

"""Renders the collapse animation (examples/figures/collapse.gif in the README).

    python examples/render_collapse_gif.py                        # a new temporary folder
    python examples/render_collapse_gif.py --out examples/figures # replace the README's

(`spectral-targets render collapse --frames N --fps N --out DIR` for options.)
"""

import argparse
import pathlib
import tempfile

from spectral_targets import render

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, metavar="DIR",
                      help="output folder (default: a new temporary one, so "
                           "the tracked figures change only when asked)")
  out = parser.parse_args().out or pathlib.Path(
      tempfile.mkdtemp(prefix="spectral-targets-"))
  print("wrote", render.render("collapse", out))

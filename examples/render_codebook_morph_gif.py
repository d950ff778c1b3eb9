"""Writes examples/figures/codebook-morph.gif (see the README).

    python examples/render_codebook_morph_gif.py [--frames N] [--fps N]
"""

import argparse
import pathlib

from spectral_targets import render

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=render.DEFAULT_FRAMES)
  parser.add_argument("--fps", type=int, default=render.DEFAULT_FPS)
  parser.add_argument("--out", default=pathlib.Path(__file__).parent / "figures")
  args = parser.parse_args()
  path = render.render("codebook-morph", args.out, frames=args.frames, fps=args.fps)
  print(f"wrote {path}")

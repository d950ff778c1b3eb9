"""Writes examples/figures/rank-reconstruction.gif, shown in the README.

    python examples/render_rank_reconstruction_gif.py

(`spectral-targets render rank-reconstruction --frames N --fps N --out DIR` for options.)
"""

import pathlib

from spectral_targets import render

if __name__ == "__main__":
  print("wrote", render.render("rank-reconstruction", pathlib.Path(__file__).parent / "figures"))

"""Writes examples/figures/codebook-morph.gif, shown in the README.

    python examples/render_codebook_morph_gif.py

(`spectral-targets render codebook-morph --frames N --fps N --out DIR` for options.)
"""

import pathlib

from spectral_targets import render

if __name__ == "__main__":
  print("wrote", render.render("codebook-morph", pathlib.Path(__file__).parent / "figures"))

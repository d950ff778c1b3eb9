"""Writes examples/figures/collapse.gif, shown in the README.

    python examples/render_collapse_gif.py

(`spectral-targets render collapse --frames N --fps N --out DIR` for options.)
"""

import pathlib

from spectral_targets import render

if __name__ == "__main__":
  print("wrote", render.render("collapse", pathlib.Path(__file__).parent / "figures"))

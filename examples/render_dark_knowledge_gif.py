"""Writes examples/figures/dark-knowledge.gif, shown in the README.

    python examples/render_dark_knowledge_gif.py

(`spectral-targets render dark-knowledge --frames N --fps N --out DIR` for options.)
"""

import pathlib

from spectral_targets import render

if __name__ == "__main__":
  print("wrote", render.render("dark-knowledge", pathlib.Path(__file__).parent / "figures"))

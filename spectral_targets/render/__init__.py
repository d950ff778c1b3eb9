"""The four animations of the source blog, computed live with the library.

``spectral-targets render [WHICH ...] [--out DIR] [--frames N] [--fps N]``
writes them as GIFs; ``render(which, out, frames=..., fps=...)`` is the same
from Python, and the ``*_frames`` functions return the numbers behind every
frame (what the tests check). Needs the ``viz`` extra (matplotlib, pillow;
the collapse animation also uses scikit-learn's bundled digits).
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable
from typing import Any, Literal

from spectral_targets.render import _gif
from spectral_targets.render._frames import CollapseFrame as CollapseFrame
from spectral_targets.render._frames import DarkKnowledgeFrame as DarkKnowledgeFrame
from spectral_targets.render._frames import MorphFrame as MorphFrame
from spectral_targets.render._frames import RankFrame as RankFrame
from spectral_targets.render._frames import codebook_morph_frames as codebook_morph_frames
from spectral_targets.render._frames import collapse_frames as collapse_frames
from spectral_targets.render._frames import dark_knowledge_frames as dark_knowledge_frames
from spectral_targets.render._frames import rank_reconstruction_frames as rank_reconstruction_frames

INSTALL_HINT = 'pip install "spectral-targets[viz]"  (from a clone: pip install -e ".[viz]")'
_REQUIREMENTS = {"matplotlib": "matplotlib", "PIL": "pillow",
                 "sklearn": "scikit-learn"}

Animation = Literal["codebook-morph", "rank-reconstruction", "collapse",
                   "dark-knowledge"]
# name -> (frames function taking the frame count or None, drawer)
RENDERERS: dict[Animation, tuple[Callable[[int], list[Any]] | None,
                                 Callable[[Any, pathlib.Path, int],
                                          pathlib.Path]]] = {
    "codebook-morph": (codebook_morph_frames, _gif.draw_codebook_morph),
    "rank-reconstruction": (None, _gif.draw_rank_reconstruction),
    "collapse": (collapse_frames, _gif.draw_collapse),
    "dark-knowledge": (dark_knowledge_frames, _gif.draw_dark_knowledge),
}
DEFAULT_FRAMES = 40
DEFAULT_FPS = 8


def missing_requirements() -> list[str]:
  """The pip names of the viz extra's packages that are not installed."""
  return [pip for module, pip in _REQUIREMENTS.items()
          if importlib.util.find_spec(module) is None]


def render(which: Animation, out: str | pathlib.Path = "figures", *,
           frames: int = DEFAULT_FRAMES, fps: int = DEFAULT_FPS
           ) -> pathlib.Path:
  """Writes one animation to ``out/WHICH.gif`` and returns its path.

  Args:
    which: one of ``RENDERERS``: "codebook-morph", "rank-reconstruction",
      "collapse", "dark-knowledge".
    out: output folder (created if needed).
    frames: number of frames (>= 2). "rank-reconstruction" has one frame
      per d = 1 … C, and takes C = frames (at least 2, at most 40).
    fps: frames per second (>= 1).

  Returns:
    The GIF's path.

  Examples:
    >>> import tempfile
    >>> from spectral_targets import render
    >>> render.render("dark-knowledge", tempfile.mkdtemp(), frames=2).name
    'dark-knowledge.gif'
  """
  if which not in RENDERERS:
    raise ValueError(f"which must be one of {sorted(RENDERERS)}, got "
                     f"{which!r}.")
  if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
    raise ValueError(f"frames must be an int >= 2, got {frames!r}.")
  if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
    raise ValueError(f"fps must be an int >= 1, got {fps!r}.")
  missing = missing_requirements()
  if missing:
    raise ImportError(f"rendering needs {', '.join(missing)}, which the "
                      f"'viz' extra installs: {INSTALL_HINT}")
  make, draw = RENDERERS[which]
  data: list[Any]
  if make is None:
    data = rank_reconstruction_frames(num_classes=min(frames, 40))
  else:
    data = make(frames)
  return draw(data, pathlib.Path(out) / f"{which}.gif", fps)

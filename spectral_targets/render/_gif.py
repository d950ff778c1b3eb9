"""Drawing the frames of ``_frames`` into GIFs with matplotlib and pillow."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib and pillow are imported when drawing
  import PIL.Image
  from matplotlib.axes import Axes
  from matplotlib.figure import Figure

  from spectral_targets.render._frames import (
    CollapseFrame,
    DarkKnowledgeFrame,
    MorphFrame,
    RankFrame,
  )

# Okabe & Ito's colour-blind-safe palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9",
           "#D55E00", "#F0E442", "#000000"]


def _figure(ncols: int, size: tuple[float, float]
            ) -> tuple[Figure, list[Axes]]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, ncols, figsize=size, dpi=80,
                           constrained_layout=True)
  return fig, list(axes)


def _image(fig: Figure) -> PIL.Image.Image:
  from PIL import Image
  import matplotlib.pyplot as plt
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png")
  plt.close(fig)
  buffer.seek(0)
  return Image.open(buffer).convert("RGB")


def _save(images: list[PIL.Image.Image], path: str | pathlib.Path, fps: int
          ) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # One adaptive palette for all frames keeps the file small and stable.
  palette = images[len(images) // 2].quantize(colors=64)
  frames = [im.quantize(palette=palette) for im in images]
  frames[0].save(path, save_all=True, append_images=frames[1:],
                 duration=int(round(1000 / fps)), loop=0, optimize=True)
  return path


def _ring(ax: Axes, codes: np.ndarray, sizes: np.ndarray | None = None,
          highlight: np.ndarray | None = None) -> None:
  import matplotlib.patches as patches
  ax.add_patch(patches.Circle((0, 0), 1, fill=False, color="0.8", lw=1))
  C = codes.shape[0]
  colours = [PALETTE[i % len(PALETTE)] for i in range(C)]
  ax.scatter(codes[:, 0], codes[:, 1], s=60 if sizes is None else sizes,
             c=colours, edgecolors="black", linewidths=0.5, zorder=3)
  for i, (x, y) in enumerate(codes):
    ax.annotate(str(i), (1.18 * x, 1.18 * y), ha="center", va="center",
                fontsize=9)
  if highlight is not None:
    ax.scatter(highlight[0], highlight[1], marker="*", s=220, c="black",
               zorder=4)
  ax.set_xlim(-1.45, 1.45)
  ax.set_ylim(-1.45, 1.45)
  ax.set_aspect("equal")
  ax.set_xlabel("code dim 1")
  ax.set_ylabel("code dim 2")


def draw_codebook_morph(frames: Sequence[MorphFrame], path: pathlib.Path,
                        fps: int) -> pathlib.Path:
  images = []
  for f in frames:
    fig, (a, b) = _figure(2, (8, 3.8))
    _ring(a, f.codes)
    a.set_title(f"spectral_codebook(S, 2), dial = {f.dial:.2f}")
    C = f.spectrum.size
    b.bar(np.arange(1, C + 1), f.spectrum, color=PALETTE[0])
    b.axvline(2.5, color=PALETTE[5], ls="--", lw=1, label="cut at d = 2")
    b.set_ylim(min(0, f.spectrum.min()) - 0.02, 0.6)
    b.set_xlabel("mode")
    b.set_ylabel("λ / Σ|λ|")
    b.set_title("flat → graded: eigenspectrum")
    b.legend(loc="upper right")
    images.append(_image(fig))
  return _save(images, path, fps)


def draw_rank_reconstruction(frames: Sequence[RankFrame], path: pathlib.Path,
                             fps: int) -> pathlib.Path:
  images = []
  C = frames[-1].d
  for f in frames:
    fig, (a, b, c) = _figure(3, (10.5, 3.5))
    lim = float(np.abs(f.target).max())
    a.imshow(f.target, cmap="cividis", vmin=-lim, vmax=lim)
    a.set_title("target kernel S")
    b.imshow(f.gram, cmap="cividis", vmin=-lim, vmax=lim)
    b.set_title(f"rank-{f.d} Gram  X Xᵀ")
    for ax in (a, b):
      ax.set_xlabel("class")
      ax.set_ylabel("class")
    ks = np.arange(1, f.d + 1)
    c.plot(ks, f.alignment, "o-", color=PALETTE[0], label="alignment")
    c.plot(ks, f.gram_error, "s-", color=PALETTE[5], label="gram_error")
    c.set_xlim(0.5, C + 0.5)
    c.set_ylim(-0.03, 1.03)
    c.set_xlabel("d")
    c.set_title(f"d = {f.d} of {C}")
    c.legend(loc="center right")
    images.append(_image(fig))
  return _save(images, path, fps)


def draw_collapse(frames: Sequence[CollapseFrame], path: pathlib.Path,
                  fps: int) -> pathlib.Path:
  images = []
  last = frames[-1]
  floor = 1e-8
  top = max(max(f.between.max(), f.within.max()) for f in frames) * 2
  for f in frames:
    fig, (a, b) = _figure(2, (8, 3.6))
    k = np.arange(1, f.between.size + 1)
    a.semilogy(k, np.maximum(f.between, floor), "o-", color=PALETTE[0],
               label="Σ_B")
    a.semilogy(k, np.maximum(f.within, floor), "s-", color=PALETTE[5],
               label="Σ_W")
    a.set_ylim(floor, top)
    a.set_xlabel("mode")
    a.set_ylabel("eigenvalue")
    a.set_title(f"class covariances, step {f.step}")
    a.legend(loc="upper right")
    b.plot(f.nc1_steps, f.nc1, "o-", color=PALETTE[2])
    b.set_xlim(0, last.step)
    b.set_ylim(0, max(last.nc1.max(), f.nc1.max()) * 1.05 + 1e-9)
    b.set_xlabel("training step")
    b.set_ylabel("NC1 = tr(Σ_W Σ_B⁺) / C")
    b.set_title("within-class variability collapses")
    images.append(_image(fig))
  return _save(images, path, fps)


def draw_dark_knowledge(frames: Sequence[DarkKnowledgeFrame],
                        path: pathlib.Path, fps: int) -> pathlib.Path:
  images = []
  first, last = frames[0], frames[-1]
  for f in frames:
    fig, (a, b, c) = _figure(3, (10.5, 3.5))
    _ring(a, f.codes, sizes=30 + 900 * f.assignment, highlight=f.feature)
    a.set_title(f"soft_assignment, τ = {f.temperature:.3f}")
    C = f.assignment.size
    b.bar(np.arange(C), f.assignment,
          color=[PALETTE[i % len(PALETTE)] for i in range(C)])
    b.set_ylim(0, 1)
    b.set_xlabel("class")
    b.set_ylabel("probability")
    b.set_title("assignment over the codebook")
    c.semilogx(f.temperatures, f.mass, "o-", color=PALETTE[0],
               label="dark_knowledge_mass")
    c.semilogx(f.temperatures, f.entropy / np.log(C), "s-",
               color=PALETTE[5], label="entropy / log C")
    c.set_xlim(first.temperature * 1.2, last.temperature / 1.2)
    c.set_ylim(-0.03, 1.03)
    c.set_xlabel("temperature τ (falling →)")
    c.set_title("dark knowledge as τ falls")
    c.legend(loc="upper right", fontsize=8)
    images.append(_image(fig))
  return _save(images, path, fps)

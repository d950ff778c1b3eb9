"""The four animations: GIFs with the requested frames, and the numbers
behind the frames against the library's own."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import spectral_targets as st
from spectral_targets import render


@pytest.mark.parametrize("which", sorted(render.RENDERERS))
def test_render_writes_a_gif_with_the_requested_frames(which, tmp_path):
  path = render.render(which, tmp_path, frames=3, fps=5)
  assert path == tmp_path / f"{which}.gif"
  with Image.open(path) as gif:
    assert gif.n_frames == 3
    assert gif.size[0] > 400 and gif.size[1] > 200
    assert gif.info["duration"] == 200
  assert path.stat().st_size < 3 * 2**20
  # Re-rendering leaves a committed figure unchanged.
  again = render.render(which, tmp_path / "again", frames=3, fps=5)
  assert again.read_bytes() == path.read_bytes()


def test_collapse_gif_bytes_do_not_depend_on_xla_threads(tmp_path):
  # How many threads XLA's CPU matmuls use changes the order of their sums;
  # in float32 that moved the trained features by ~1e-5 and the GIF's
  # pixels with them. Render once with XLA's default threading and once
  # single-threaded, each in a fresh process.
  paths = []
  for name, flag in [("default", ""),
                     ("single", "--xla_cpu_multi_thread_eigen=false")]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    result = subprocess.run(
        [sys.executable, "-m", "spectral_targets", "render", "collapse",
         "--frames", "3", "--out", str(tmp_path / name)],
        capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    paths.append(tmp_path / name / "collapse.gif")
  assert paths[0].read_bytes() == paths[1].read_bytes()


def test_codebook_morph_starts_on_an_even_ring_and_moves_smoothly():
  frames = render.codebook_morph_frames(6, num_classes=9)
  ring = frames[0].codes
  assert frames[0].dial == 0 and frames[-1].dial == 1
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1, rtol=1e-5)
  angles = np.sort(np.degrees(np.arctan2(ring[:, 1], ring[:, 0])))
  np.testing.assert_allclose(np.diff(angles), 40, atol=0.1)
  for f in frames:
    np.testing.assert_allclose(np.abs(f.spectrum).sum(), 1, rtol=1e-5)
  # The flat end is as good as the library's own flat codebook.
  flat = np.asarray(st.spectral_codebook(st.flat(9), 2))
  np.testing.assert_allclose(st.coherence(ring), st.coherence(flat), atol=1e-5)
  # Procrustes alignment keeps consecutive frames close (each class moves
  # less than a ring's side), and the last frame is the graded codebook up
  # to rotation.
  for a, b in zip(frames, frames[1:]):
    assert np.linalg.norm(a.codes - b.codes, axis=1).max() < 0.68
  end = np.asarray(st.spectral_codebook(
      st.double_center(st.graded(9, 2.0)), 2))
  np.testing.assert_allclose(frames[-1].codes @ frames[-1].codes.T,
                             end @ end.T, atol=1e-4)


def test_rank_reconstruction_numbers():
  frames = render.rank_reconstruction_frames(num_classes=8, width=3.0)
  assert [f.d for f in frames] == list(range(1, 9))
  last = frames[-1]
  assert np.all(np.diff(last.alignment) >= -1e-6)   # non-decreasing in d
  assert np.all(np.diff(last.gram_error) <= 1e-6)   # non-increasing
  np.testing.assert_allclose(last.gram, last.target, atol=1e-4)
  S = st.graded(8, 3.0)
  for f in frames:
    np.testing.assert_allclose(f.gram_error[-1], st.gram_error(S, f.d),
                               atol=1e-6)


def test_collapse_frames_between_class_rank_and_nc1():
  frames = render.collapse_frames(4, steps=300, num_classes=4)
  assert [f.step for f in frames] == [0, 100, 200, 300]
  for f in frames:
    assert f.between.shape == (16,) and f.within.shape == (16,)
    assert f.between.dtype == np.float32
    # Σ_B has rank C - 1 = 3: its null space is exactly zero, not rounding
    # noise; Σ_W of 16 tanh features over ~700 samples has full rank.
    assert np.all(f.between[:3] > 0) and np.all(f.between[3:] == 0)
    assert np.all(f.within > 0)
  assert frames[-1].nc1[-1] < frames[0].nc1[0]
  np.testing.assert_array_equal(frames[-1].nc1_steps, [0, 100, 200, 300])


def test_dark_knowledge_frames():
  frames = render.dark_knowledge_frames(5, num_classes=9, label=3)
  temps = frames[-1].temperatures
  assert np.all(np.diff(temps) < 0)  # the temperature falls
  for f in frames:
    np.testing.assert_allclose(f.assignment.sum(), 1, rtol=1e-5)
    np.testing.assert_allclose(f.assignment, st.soft_assignment(
        f.feature, f.codes, temperature=f.temperature), rtol=1e-5)
  assert np.all(np.diff(frames[-1].mass) < 0)    # less dark knowledge
  assert np.all(np.diff(frames[-1].entropy) < 0)
  assert frames[-1].assignment.argmax() == 3


def test_render_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="which must be one of"):
    render.render("morph", tmp_path)
  with pytest.raises(ValueError, match="frames must be an int >= 2"):
    render.render("collapse", tmp_path, frames=1)
  with pytest.raises(ValueError, match="fps must be an int >= 1"):
    render.render("collapse", tmp_path, fps=0)


def test_render_command(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "spectral_targets", "render",
       "rank-reconstruction", "--frames", "3", "--out", str(tmp_path)],
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert "rank-reconstruction.gif" in result.stdout
  bad = subprocess.run(
      [sys.executable, "-m", "spectral_targets", "render", "nope",
       "--out", str(tmp_path)], capture_output=True, text=True)
  assert bad.returncode == 2
  assert "render: error: argument WHICH: unknown animation 'nope'" in bad.stderr


def test_missing_extra_names_the_install(monkeypatch, capsys, tmp_path):
  from spectral_targets import _cli
  monkeypatch.setattr(render, "missing_requirements", lambda: ["pillow"])
  assert _cli.main(["render", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "pillow" in err and ".[viz]" in err
  with pytest.raises(ImportError, match=r"'viz' extra"):
    render.render("collapse", tmp_path)

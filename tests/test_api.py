"""The public surface as a user discovers it: __all__, dir(), help()."""

import pydoc
import re
import types

import pytest

import spectral_targets as st
import spectral_targets.linen
import spectral_targets.nnx

LEAKS = {"jax", "jnp", "np", "nn", "nnx", "v", "annotations", "Any",
         "TYPE_CHECKING", "codebook_logits"}


def _defined_publicly(value):
  return isinstance(value, types.ModuleType) or getattr(
      value, "__module__", "").startswith("spectral_targets")


def test_all_is_every_public_reexport_and_nothing_else():
  names = set(st.__all__)
  assert {"linen", "nnx", "spectral_codebook"} <= names
  assert "CodebookHead" not in names  # it lives in .nnx and .linen
  assert len(st.__all__) == len(names), "duplicates in __all__"
  for name in st.__all__:
    assert not name.startswith("_"), name
    value = getattr(st, name)
    assert _defined_publicly(value), (name, value)
  # Every public attribute of the package (after loading nnx/linen) is in
  # __all__: a new re-export cannot be forgotten.
  public = {n for n in vars(st) if not n.startswith("_")}
  assert public - names <= {"TYPE_CHECKING", "render", "bench"}, (
      public - names)


def test_dir_lists_the_api_only():
  assert dir(st) == sorted([*st.__all__, "__version__"])
  assert not {"TYPE_CHECKING", "__getattr__"} & set(dir(st))
  assert not any(n.startswith("_") and not n.startswith("__")
                 for n in dir(st)), "a private module leaks into dir()"


@pytest.mark.parametrize("module", [spectral_targets.nnx,
                                    spectral_targets.linen])
def test_flax_modules_dir_is_their_all(module):
  assert dir(module) == sorted(module.__all__)
  assert not LEAKS & set(dir(module))
  for name in module.__all__:
    assert getattr(module, name).__module__ == module.__name__


def test_module_docstring_is_the_map_of_the_api():
  doc = st.__doc__
  assert doc is not None
  qualified = [n for n in st.__all__ if n not in ("nnx", "linen")]
  qualified += [f"nnx.{n}" for n in spectral_targets.nnx.__all__]
  qualified += [f"linen.{n}" for n in spectral_targets.linen.__all__]
  missing = [n for n in qualified
             if not re.search(rf"(?<![\w.]){re.escape(n)}\b", doc)]
  assert not missing, (
      f"public names missing from the map in spectral_targets/__init__.py's "
      f"docstring (add each under its group): {missing}")
  # ... and nothing in the map that is not a public name.
  listed = set(re.findall(r"^  (.+)$", doc, flags=re.M))
  words = {w for line in listed for w in re.split(r",\s*", line.strip()) if w}
  assert words <= set(qualified), words - set(qualified)


def test_help_lists_the_api():
  text = pydoc.render_doc(st, renderer=pydoc.plaintext)
  for name in ("spectral_codebook", "distillation_loss", "ClassStatistics",
               "collapse_metrics", "Heads, targets, losses"):
    assert name in text, name
  assert "TYPE_CHECKING" not in text

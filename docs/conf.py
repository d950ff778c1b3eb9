"""Sphinx configuration: `sphinx-build -W -b html docs docs/_build/html`."""

import pathlib
import sys

DOCS = pathlib.Path(__file__).parent
sys.path.insert(0, str(DOCS / "_ext"))

import spectral_targets  # noqa: E402

project = "spectral_targets"
author = "spectral_targets developers"
copyright = "the spectral_targets developers (Apache-2.0)"
version = release = spectral_targets.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinx_design",
    # Local (docs/_ext): every public name documented; ``name`` in a
    # docstring links to that name's page.
    "api_coverage",
    "api_links",
]

exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# -- API reference -------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
# Shapes and types are in the docstrings' Args; the signature stays short.
autodoc_typehints = "none"
autodoc_preserve_defaults = True
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as a field list: `.. attribute::` entries would describe the
# Linen dataclass fields twice.
napoleon_use_ivar = True
napoleon_custom_sections = [("Raises", "params_style")]

# -- executed guides (myst-nb) -------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML ----------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"spectral_targets {version}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

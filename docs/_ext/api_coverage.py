"""Fail the build when a public name is not in the API reference.

The public names are read at build time from ``spectral_targets.__all__``
(and ``__all__`` of each public submodule it lists: ``nnx``, ``linen``), so a
new re-export needs no change here: the build says which names are missing
and which pages to add them to. A name documented on a page but not public
fails too (it would document an accident).
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import types

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGE = "spectral_targets"
# Object types that a page documents as a name of its own (methods and
# attributes belong to their class).
TOP_LEVEL = {"function", "class", "exception", "data"}


def public_names(package: str = PACKAGE) -> set[str]:
  """Fully qualified public names: ``pkg.x`` and ``pkg.sub.y``."""
  module = importlib.import_module(package)
  names = set()
  for name in module.__all__:
    value = getattr(module, name)
    if isinstance(value, types.ModuleType):
      names |= {f"{package}.{name}.{n}" for n in value.__all__}
    else:
      names.add(f"{package}.{name}")
  return names


def _remove_stale_stubs(app: Sphinx) -> None:
  # autosummary writes a page per listed name but never deletes one: a name
  # taken off its group page would stay documented by last build's stub.
  shutil.rmtree(pathlib.Path(app.srcdir) / "api" / "_autosummary",
                ignore_errors=True)


def _reachable(env: BuildEnvironment) -> set[str]:
  """The documents in the table of contents, from the root page down."""
  seen, todo = set(), [env.config.root_doc]
  while todo:
    doc = todo.pop()
    if doc not in seen:
      seen.add(doc)
      todo.extend(env.toctree_includes.get(doc, ()))
  return seen


def _check(app: Sphinx, env: BuildEnvironment) -> None:
  objects = env.get_domain("py").objects
  pages = _reachable(env)
  documented = {name for name, entry in objects.items()
                if entry.objtype in TOP_LEVEL and not entry.aliased
                and entry.docname in pages}
  public = public_names()
  missing = sorted(public - documented)
  extra = sorted(n for n in documented - public if n.startswith(PACKAGE))
  api = pathlib.Path(app.srcdir) / "api"
  group_pages = ", ".join(sorted(p.name for p in api.glob("*.rst")
                                 if p.name != "index.rst"))
  problems = []
  if missing:
    problems.append(
        f"{len(missing)} public name(s) are in no API reference page: "
        + ", ".join(missing)
        + f".\n  Add each, one line per name, to the autosummary list of its "
        f"group's page in docs/api/ ({group_pages}); names of spectral_targets.nnx "
        f"or .linen go under that module's currentmodule in heads.rst.")
  if extra:
    problems.append(
        "documented but not public (not in __all__): " + ", ".join(extra)
        + ".\n  Export them from spectral_targets/__init__.py or remove them "
        "from docs/api/.")
  app.env.api_coverage_failed = bool(problems)  # type: ignore[attr-defined]
  if problems:
    # An error, so the build fails with or without -W (see _status).
    logger.error("API coverage: %s", "\n".join(problems))


def _status(app: Sphinx, exception: Exception | None) -> None:
  if exception is None and getattr(app.env, "api_coverage_failed", False):
    app.statuscode = 1


def setup(app: Sphinx) -> dict[str, object]:
  # Before autosummary (priority 500) writes this build's stubs.
  app.connect("builder-inited", _remove_stale_stubs, priority=100)
  app.connect("env-check-consistency", _check)
  app.connect("build-finished", _status)
  return {"parallel_read_safe": True, "parallel_write_safe": True}

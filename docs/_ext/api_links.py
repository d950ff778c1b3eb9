"""Link ``name`` in docstrings and guides to that name's reference page.

The docstrings write public names as literals (````codebook_logits````, as
in ``help()``); in the HTML each literal that is exactly a documented
public name (optionally followed by ``(...)`` or qualified by ``nnx.`` or
``linen.``) becomes a link to its page: the cross-references between
related functions without marking up every docstring for Sphinx.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx

PACKAGE = "spectral_targets"
_CALL = re.compile(r"^(?:st\.|spectral_targets\.)?([A-Za-z_][\w.]*)(\(.*\))?$")


def _link(app: Sphinx, doctree: nodes.document, docname: str) -> None:
  objects = app.env.get_domain("py").objects
  for literal in list(doctree.findall(nodes.literal)):
    if isinstance(literal.parent, (nodes.reference, nodes.literal_block)):
      continue
    match = _CALL.match(literal.astext())
    if not match:
      continue
    target = f"{PACKAGE}.{match.group(1)}"
    entry = objects.get(target)
    if entry is None or entry.docname == docname:
      continue
    uri = app.builder.get_relative_uri(docname, entry.docname)
    reference = nodes.reference("", "", internal=True,
                                refuri=f"{uri}#{entry.node_id}",
                                reftitle=target)
    literal.replace_self(reference)
    reference += literal


def setup(app: Sphinx) -> dict[str, object]:
  app.connect("doctree-resolved", _link)
  return {"parallel_read_safe": True, "parallel_write_safe": True}

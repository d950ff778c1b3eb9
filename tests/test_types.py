"""Types that check: mypy reports a wrong argument in code that uses the
package, and passes code that uses it as documented (the README's examples
included).

The user's code is checked as a user's would be: ``--strict``, the package
imported like any dependency (errors inside it are the CI's own mypy run's
business, ``python -m mypy`` with the project's configuration).
"""

import inspect
import pathlib
import re
import textwrap

import pytest

import spectral_targets as st
from spectral_targets import linen as st_linen
from spectral_targets import nnx as st_nnx
from spectral_targets import render

ROOT = pathlib.Path(st.__file__).resolve().parents[1]

# Each line marked "# E: CODE" must be reported with that error code, and
# no other line at all.
WRONG = """\
import jax.numpy as jnp

import spectral_targets as st
from spectral_targets import linen as st_linen
from spectral_targets import nnx as st_nnx
from spectral_targets import render

S = st.flat(9)
codes = st.spectral_codebook(S, 2)
st.flat("9")  # E: arg-type
st.spectral_codebook(S, "2")  # E: arg-type
st.spectral_codebook("flat", 2)  # E: arg-type
st.spectral_codebook(S, 2, method="eigh")  # E: arg-type
st.spectral_codebook(S, 2, normalise=True)  # E: call-arg
st.top_eigenmodes(S, 2.5)  # E: arg-type
st.gram_error(S, 2, method="qr")  # E: arg-type
st.distillation_loss("student", jnp.zeros((2, 3)))  # E: arg-type
st.distillation_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), 4.0)  # E: call-arg
st.kernel_soft_labels(jnp.zeros(3, int), S, alpha=None)  # E: arg-type
st.cifar100_hierarchy("imagenet")  # E: arg-type
st.refresh_codebook(codes, S, d=2)  # E: call-arg
st.refresh_codebook(codes, S, seed="0")  # E: arg-type
st.ClassStatistics.zeros(10, 3).merge(3)  # E: arg-type
st_nnx.CodebookHead(codes, scale="large")  # E: arg-type
st_linen.CodebookHead(codes, learn_scale="yes")  # E: arg-type
render.render("collapse.gif")  # E: arg-type
st.spectral_codebok(S, 2)  # E: attr-defined
n: int = st.spectral_codebook(S, 2)  # E: assignment
st.from_hierarchy([("r", "a"), ("r", "b")], implicit=True).to_dense(1)  # E: call-arg
"""

# What the docstrings document, with the types a user gets back.
RIGHT = """\
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse
from typing_extensions import assert_type

import spectral_targets as st
from spectral_targets import linen as st_linen
from spectral_targets import nnx as st_nnx
from spectral_targets import render

S = st.double_center(st.graded(10, 2.0))
codes = st.spectral_codebook(S, 3, method="dense", seed=1)
assert_type(codes, jax.Array)
assert_type(st.separating_dimension(S), int)
assert_type(st.welch_bound(10, 3), float)
assert_type(st.top_eigenmodes(S, 3).eigenvalues, jax.Array)
assert_type(st.eigenmodes(S), tuple[jax.Array, jax.Array])
K = st.from_hierarchy(st.random_hierarchy(50, seed=0), implicit=True)
assert_type(K, st.TreeKernel)
assert_type(K @ np.ones(50), jax.Array)
assert_type(st.from_hierarchy([("r", "a"), ("r", "b")]), jax.Array)
assert_type(st.gram_error(K, 8, method="randomized"), jax.Array)
assert_type(st.alignment(K, st.low_rank_kernel(np.ones((50, 2)))), jax.Array)
assert_type(st.blocks(["cat", "cat", "car"]), jax.Array)
bcoo = sparse.BCOO.fromdense(jnp.eye(5))  # an object with a shape and a @
assert_type(st.top_eigenmodes(bcoo, 2, method="dense").eigenvalues, jax.Array)

features, labels = jnp.ones((4, 3)), jnp.array([0, 1, 2, 3])
logits = st.codebook_logits(features, codes, scale=16.0)
assert_type(st.distillation_loss(logits, logits, temperature=4.0,
                                 where=np.ones(10, bool)), jax.Array)
assert_type(st.decoupled_distillation_loss(logits, logits, labels), jax.Array)
assert_type(st.kernel_soft_labels(labels, S, alpha=0.1), jax.Array)
assert_type(st.soft_assignment(features, codes, temperature=0.5), jax.Array)
edges, classes = st.cifar100_hierarchy("wordnet")
tree = st.build_tree(edges, classes)
assert_type(st.hierarchical_cross_entropy(jnp.ones((2, 100)), labels[:2], tree,
                                          alpha=0.5), jax.Array)
stats = st.ClassStatistics.zeros(10, 3).update(features, labels)
assert_type(stats, st.ClassStatistics)
assert_type(st.collapse_metrics_from_statistics(stats), st.CollapseMetrics)
assert_type(st.collapse_metrics(features, labels, 10).nc3, jax.Array | None)
state = st.OnlineKernel.init(10).update(jax.nn.softmax(logits), labels)
assert_type(st.refresh_codebook(codes, state.kernel(), method="dense"),
            jax.Array)
assert_type(st.fit_temperature(logits, labels), jax.Array)

head = st_nnx.CodebookHead(codes, scale=16.0, learn_scale=True)
assert_type(head(features), jax.Array)
linen_head = st_linen.CodebookHead(codes)
variables = linen_head.init(jax.random.key(0), features)
assert_type(render.render("collapse", "figures", frames=3), pathlib.Path)
"""

CONFIG = """\
[mypy]
strict = True
mypy_path = {root}
cache_dir = {cache}

[mypy-spectral_targets.*]
ignore_errors = True
"""


def _readme_blocks():
  return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(),
                    flags=re.S)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
  """mypy's errors, per file name, over WRONG, RIGHT and the README's
  examples: one run, as every file imports the same packages."""
  api = pytest.importorskip("mypy.api")
  tmp = tmp_path_factory.mktemp("types")
  sources = {"wrong.py": WRONG, "right.py": RIGHT}
  sources.update({f"readme_{i}.py": code
                  for i, code in enumerate(_readme_blocks())})
  for name, code in sources.items():
    (tmp / name).write_text(code)
  config = tmp / "mypy.ini"
  config.write_text(CONFIG.format(root=ROOT, cache=tmp / "cache"))
  stdout, stderr, _ = api.run(["--config-file", str(config),
                               "--show-error-codes", "--no-pretty",
                               *(str(tmp / name) for name in sources)])
  assert not stderr, stderr
  errors = {name: [] for name in sources}
  for line in stdout.splitlines():
    m = re.match(r"(?:.*[/\\])?([\w.]+\.py):(\d+): error: (.*)\[([\w-]+)\]$",
                 line)
    if m:
      errors[m[1]].append((int(m[2]), m[4], m[3].strip()))
  return errors


def test_wrong_arguments_are_reported(reported):
  expected = {number: m[1] for number, line in enumerate(WRONG.splitlines(), 1)
              if (m := re.search(r"# E: ([\w-]+)$", line))}
  assert len(expected) >= 15
  found = {}
  for number, code, message in reported["wrong.py"]:
    found.setdefault(number, []).append((code, message))
  missing = {n: c for n, c in expected.items()
             if c not in [code for code, _ in found.get(n, [])]}
  unexpected = {n: f for n, f in found.items() if n not in expected}
  assert not missing, f"not reported (line: code): {missing}; got {found}"
  assert not unexpected, f"errors on unmarked lines: {unexpected}"


def test_documented_usage_is_clean(reported):
  assert reported["right.py"] == []
  readme = [name for name in reported if name.startswith("readme_")]
  assert readme, "the README has no python example"
  for name in readme:
    assert reported[name] == [], name


def _public_functions():
  for module in (st, st_nnx, st_linen, render):
    for name in dir(module):
      obj = getattr(module, name)
      if (not name.startswith("_") and inspect.isfunction(obj)
          and obj.__module__.startswith("spectral_targets")):
        yield f"{module.__name__}.{name}", obj


@pytest.mark.parametrize("name, fn", list(_public_functions()))
def test_public_signatures_take_array_like_and_return_array(name, fn):
  # Arrays in as jax.typing.ArrayLike, out as jax.Array, as in Optax; every
  # parameter and the result annotated (mypy --strict checks the rest).
  sig = inspect.signature(fn)
  for p in sig.parameters.values():
    assert p.annotation is not p.empty, f"{name}({p.name}) has no type"
    for narrow in ("jax.Array", "np.ndarray", "numpy.ndarray"):
      assert narrow not in str(p.annotation), (
          f"{name}({p.name}: {p.annotation}): take jax.typing.ArrayLike")
  out = sig.return_annotation
  assert out is not sig.empty, f"{name} has no return type"
  assert "ArrayLike" not in str(out) and "ndarray" not in str(out), (
      f"{name} -> {out}: return jax.Array")
  assert "Any" not in re.findall(r"\w+", str(out)), f"{name} -> {out}"

"""The README's usage example runs as written, and its commands are the ones
CI runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks():
  return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(),
                    flags=re.S)


def test_readme_usage_runs(capsys):
  # Every ```python block runs as written (fragments are fenced ```py).
  blocks = _python_blocks()
  assert blocks, "README has no python example"
  for code in blocks:
    exec(compile(code, "README.md", "exec"), {})
  out = capsys.readouterr().out
  assert "40. 40. 40." in out
  assert "99 100 distinct codes" in out  # CIFAR-100: a code per class


def test_readme_test_command_is_what_ci_runs():
  readme = (ROOT / "README.md").read_text()
  assert 'pip install -e ".[bench]" && spectral-targets bench' in readme
  assert 'pip install -e ".[test]" && pytest' in readme
  ci = (ROOT / ".ci" / "run").read_text()
  assert 'pip install -e ".[test]"' in ci and "pytest" in ci
  # The documentation: the README's build command is the one CI runs.
  assert ('pip install -e ".[docs]" && sphinx-build -W -b html docs '
          'docs/_build/html') in readme
  assert 'pip install --quiet -e ".[docs]"' in ci
  assert "sphinx-build -W -q -b html docs docs/_build/html" in ci

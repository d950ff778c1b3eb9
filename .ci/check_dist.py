"""Checks the built distributions against the checkout.

    python .ci/check_dist.py DIST_DIR

The wheel must hold every file of the package (every subpackage, py.typed,
the data files) and nothing outside it; the sdist must also hold the tests,
examples, README and LICENSE, everything the test suite reads.
"""

import pathlib
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "spectral_targets"


def files(folder: str) -> set[str]:
  """The files under ``folder`` of the checkout, bytecode left out."""
  return {p.relative_to(ROOT).as_posix()
          for p in (ROOT / folder).rglob("*")
          if p.is_file() and "__pycache__" not in p.parts
          and p.suffix not in (".pyc", ".pyo")}


def main(dist: pathlib.Path) -> int:
  (wheel,) = dist.glob("*.whl")
  (sdist,) = dist.glob("*.tar.gz")
  with zipfile.ZipFile(wheel) as z:
    in_wheel = {n for n in z.namelist()
                if ".dist-info/" not in n and not n.endswith("/")}
  with tarfile.open(sdist) as t:
    # Strip the leading "name-version/".
    in_sdist = {m.name.split("/", 1)[1] for m in t.getmembers()
                if m.isfile() and "/" in m.name}
  package = files(PACKAGE)
  problems = []
  for name in sorted(package - in_wheel):
    problems.append(f"{wheel.name} lacks {name}")
  for name in sorted(in_wheel - package):
    problems.append(f"{wheel.name} holds {name}, not in {PACKAGE}/")
  wanted = (package | files("tests") | files("examples")
            | {"README.md", "LICENSE", "pyproject.toml"})
  for name in sorted(wanted - in_sdist):
    problems.append(f"{sdist.name} lacks {name}")
  for problem in problems:
    print(problem, file=sys.stderr)
  if not problems:
    print(f"{wheel.name}: {len(in_wheel)} files; {sdist.name}: "
          f"{len(in_sdist)} files; nothing missing")
  return 1 if problems else 0


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  sys.exit(main(pathlib.Path(sys.argv[1])))

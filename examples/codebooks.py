"""Codebooks from label kernels: the three shapes the library is about.

    python examples/codebooks.py
"""

import numpy as np

import spectral_targets as st


def angles(codes):
  a = np.sort(np.degrees(np.arctan2(codes[:, 1], codes[:, 0])))
  return np.diff(np.r_[a, a[0] + 360]).round(1)


def main():
  print("flat(9), d=2 -> the regular 9-gon; angles between neighbours:")
  print("  ", angles(np.asarray(st.spectral_codebook(st.flat(9), 2))))

  codes = st.spectral_codebook(st.flat(10), 9)
  print(f"flat(10), d=9 -> simplex: coherence {float(st.coherence(codes)):.4f}"
        f" = Welch bound {st.welch_bound(10, 9):.4f}")

  S = st.blocks([0, 0, 0, 1, 1, 1, 2, 2, 2])
  # The classes of a block are identical to this kernel: one code each.
  G = np.asarray(st.spectral_codebook(S, 2, allow_merged=True))
  print("blocks of 3, d=2 -> three clusters; cosines of class 0 to all:")
  print("  ", (G @ G[0]).round(3))

  B = st.double_center(st.graded(9, 2.2))
  print("graded(9), d=2 -> horseshoe; gram_error by d:",
        [round(float(st.gram_error(B, d)), 3) for d in range(1, 6)])

  edges, classes = st.cifar100_hierarchy()
  S = st.from_hierarchy(edges, classes=classes)
  B = st.double_center(S)
  supers = st.spectral_codebook(B, 19, allow_merged=True)  # siblings merge
  d = st.separating_dimension(B)
  codes = st.spectral_codebook(B, d)
  for name, c in (("d=19 (superclasses)", supers), (f"d={d}", codes)):
    print(f"CIFAR-100 tree, {name}: "
          f"{len(np.unique(np.asarray(c).round(4), axis=0))} distinct codes, "
          f"alignment with the tree kernel "
          f"{float(st.alignment(c @ c.T, S, centered=True)):.3f}")


if __name__ == "__main__":
  main()

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
  G = np.asarray(st.spectral_codebook(S, 2))
  print("blocks of 3, d=2 -> three clusters; cosines of class 0 to all:")
  print("  ", (G @ G[0]).round(3))

  B = st.double_center(st.graded(9, 2.2))
  print("graded(9), d=2 -> horseshoe; gram_error by d:",
        [round(float(st.gram_error(B, d)), 3) for d in range(1, 6)])

  edges, classes = st.cifar100_hierarchy()
  S = st.from_hierarchy(edges, classes=classes)
  codes = st.spectral_codebook(st.double_center(S), 19)
  print(f"CIFAR-100 superclasses, d=19: {codes.shape[0]} codes, "
        f"alignment with the tree kernel "
        f"{float(st.alignment(codes @ codes.T, S, centered=True)):.3f}")


if __name__ == "__main__":
  main()

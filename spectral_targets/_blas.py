"""One BLAS thread for the host-side linear algebra of a codebook.

The codebook's NumPy products, LAPACK eigh and JAX's CPU SVD (which calls
SciPy's OpenBLAS) are small; on a busy machine OpenBLAS's own threads
cost far more than they save (timings in ``one_blas_thread``).
"""

from __future__ import annotations

import contextlib


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
  """Every loaded BLAS on one thread inside the context (when threadpoolctl
  is installed; else a context that does nothing).

  A codebook's products and eigh are small; with the cores busy (pytest
  workers, a data loader, XLA's own threads) OpenBLAS's threads wait on
  each other: a 256-class codebook took 1.9 s instead of 13 ms, a
  1,000-class one 19 s instead of 0.26 s, and JAX's SVD of a 99 x 99
  matrix (SciPy's OpenBLAS) 0.5 s instead of 5 ms. The libraries are looked
  up afresh each time (~2 ms): JAX loads SciPy's OpenBLAS only at its first
  LAPACK call, after a cached lookup."""
  try:
    import threadpoolctl
  except ImportError:
    return contextlib.nullcontext()
  limited: contextlib.AbstractContextManager[object] = (
      threadpoolctl.threadpool_limits(limits=1, user_api="blas"))
  return limited

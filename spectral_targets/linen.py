"""Flax Linen heads with a fixed codebook.

The codebook lives in the ``"constants"`` collection, not in ``"params"``:
``optax`` updates on ``variables["params"]`` never see it. ``apply`` takes
the whole variables dict, or ``{"params": params}`` alone (the codebook is
then the module's own attribute).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from spectral_targets import _validation as v
from spectral_targets._logits import codebook_logits, head_codebook

__all__ = ["CodebookHead", "FrozenArray"]


class FrozenArray:
  """A read-only array that hashes by value, so it can be a Linen field.

  Linen modules are dataclasses that get hashed; a raw array as a field
  breaks that. ``CodebookHead`` wraps its codebook in this automatically.
  """

  def __init__(self, array: np.typing.ArrayLike):
    self._array = np.array(array)
    self._array.setflags(write=False)

  def __array__(self, dtype: np.typing.DTypeLike | None = None,
                copy: bool | None = None) -> np.ndarray[Any, Any]:
    return self._array if dtype is None else self._array.astype(dtype)

  @property
  def shape(self) -> tuple[int, ...]:
    return self._array.shape

  def __hash__(self) -> int:
    return hash((self._array.shape, self._array.dtype.str,
                 self._array.tobytes()))

  def __eq__(self, other: object) -> bool:
    return (isinstance(other, FrozenArray)
            and self._array.shape == other._array.shape
            and bool(np.array_equal(self._array, other._array)))

  def __repr__(self) -> str:
    return f"FrozenArray(shape={self._array.shape})"


class CodebookHead(nn.Module):
  r"""Logits from scaled cosines to fixed class codes (Linen).

  .. math::
    \ell_c = s\,\cos(z, w_c)

  ``init`` copies the codebook into the ``"constants"`` collection, so a
  checkpoint of the variables carries it. ``apply`` reads it from there when
  the variables have it (a restored or refreshed codebook wins), and from the
  ``codebook`` attribute otherwise: ``apply({"params": params}, x)`` works
  as for any Linen model (Flax would raise ``ScopeCollectionNotFound`` for
  ``"constants"``).

  Attributes:
    codebook: (C, d) class codes (any array; stored as a ``FrozenArray``) and
      copied into the ``"constants"`` collection at ``init``: finite,
      C, d >= 1, no zero row (``ValueError`` otherwise).
    scale: s > 0; 8 by default, as :class:`spectral_targets.nnx.CodebookHead`
      (where the default comes from is said there).
    learn_scale: make s a ``"params"`` entry, trained with the model.

  Examples:
    >>> import jax, jax.numpy as jnp, spectral_targets as st
    >>> from spectral_targets.linen import CodebookHead
    >>> head = CodebookHead(st.spectral_codebook(st.flat(4), 3))
    >>> variables = head.init(jax.random.key(0), jnp.ones((2, 3)))
    >>> sorted(variables), head.apply(variables, jnp.ones((2, 3))).shape
    (['constants'], (2, 4))
    >>> head.apply({"params": {}}, jnp.ones((2, 3))).shape
    (2, 4)
  """
  codebook: FrozenArray | jax.typing.ArrayLike
  scale: float = 8.0
  learn_scale: bool = False

  def __post_init__(self) -> None:
    codebook = self.codebook
    W = np.asarray(head_codebook(
        np.asarray(codebook) if isinstance(codebook, FrozenArray)
        else codebook))
    if not isinstance(codebook, FrozenArray):
      object.__setattr__(self, "codebook", FrozenArray(W))
    v.check_positive(self.scale, "scale")
    super().__post_init__()

  @nn.compact
  def __call__(self, features: jax.typing.ArrayLike) -> jax.Array:
    """(..., d) features -> (..., C) logits."""
    if self.is_initializing() or self.has_variable("constants", "codebook"):
      W = self.variable("constants", "codebook",
                        lambda: jnp.asarray(np.asarray(self.codebook))).value
    else:
      # Variables without "constants" (apply({"params": p}, x)): the
      # codebook is fixed, and this module holds it.
      W = jnp.asarray(np.asarray(self.codebook))
    scale: jax.typing.ArrayLike
    if self.learn_scale:
      scale = self.param("scale", lambda _: jnp.asarray(self.scale, W.dtype))
    else:
      scale = self.scale
    return codebook_logits(features, W, scale=scale)


def __dir__() -> list[str]:
  # dir() and tab completion show the API, not this module's imports.
  return list(__all__)

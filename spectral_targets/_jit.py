"""``jax.jit`` that keeps the signature of the function it compiles.

``jax.jit`` returns a ``JitWrapped`` whose ``__call__`` takes anything and
returns ``Any``, so a type checker sees neither the arguments nor the result
of a jitted function. The package's jitted helpers use ``jit`` below instead:
the same ``jax.jit`` object at run time, typed as the function it wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar, cast, overload

import jax

P = ParamSpec("P")
R = TypeVar("R")


@overload
def jit(fun: Callable[P, R], /) -> Callable[P, R]:
  ...


@overload
def jit(*, static_argnums: int | Sequence[int] | None = None,
        static_argnames: str | Sequence[str] | None = None
        ) -> Callable[[Callable[P, R]], Callable[P, R]]:
  ...


def jit(fun: Callable[P, R] | None = None, /, *,
        static_argnums: int | Sequence[int] | None = None,
        static_argnames: str | Sequence[str] | None = None
        ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
  """``jax.jit(fun, static_argnums=..., static_argnames=...)``, typed as
  ``fun``; without ``fun``, a decorator."""

  def compile_(f: Callable[P, R]) -> Callable[P, R]:
    return cast(Callable[P, R],
                jax.jit(f, static_argnums=static_argnums,
                        static_argnames=static_argnames))

  return compile_ if fun is None else compile_(fun)

"""Tensors are hashed, decoded and compared on every core, a few at a time (see git_theta.pipeline)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from git_theta import pipeline

In = TypeVar("In")
Out = TypeVar("Out")


def ordered_map(fn: Callable[[In], Out], items: Iterable[In]) -> Iterator[Out]:
    """Yield ``fn(item)`` in input order with only a few items in flight, so a streamed file is never held whole."""
    with pipeline.Pool(pipeline.workers(), "git-theta-compare") as pool:
        yield from pipeline.ordered_map(pool, fn, items, pipeline.workers() + 1)

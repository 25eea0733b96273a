"""Git-Theta 0.2 metadata as one side of a comparison: its tensors decoded through ``git_theta.legacy``.

The old metadata has no exact hash of a tensor, so a tensor's digest is the SHA-256 of its decoded bytes, as ours
is: a legacy tensor and the same tensor in our format compare equal. A ``dense`` object decodes to the same value
wherever it is named, so its digest is computed once per process and an unchanged tensor of two legacy commits is
decoded once. An update (``sparse``, ``low-rank``, ``ia3``) is resolved when its item is made: numpy's promotion can
give the value another dtype than the metadata says (an ia3 vector of float64 makes a float64 parameter), and the
item's layout must be the checked-out one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from git_theta.diffs.compare import Item, Side
from git_theta.diffs.result import Layout
from git_theta.diffs.store import ObjectReader
from git_theta.git.catfile import BlobReader
from git_theta.legacy import metadata
from git_theta.legacy.errors import LegacyError
from git_theta.legacy.metadata import DTYPES, LegacyEntry
from git_theta.legacy.update_chains import Resolver
from git_theta.storage.errors import ObjectError

#: The old tool took the checkpoint format from this variable; so does our checkout of its files.
CHECKPOINT_TYPE_ENV = "GIT_THETA_CHECKPOINT_TYPE"
#: SHA-256 digests of decoded dense objects, by object id (an object always decodes to the same value).
_DIGESTS: dict[str, str] = {}
#: One side downloads its objects at a time (they are first needed on the comparison's worker threads).
_SETUP = threading.Lock()


@dataclass(frozen=True)
class LegacyItem(Item):
    """A tensor of a legacy side; ``oid`` names its dense object, whose digest is shared by every side naming it."""

    oid: str | None = None

    def digest(self) -> str:
        """The SHA-256 of the decoded tensor, as our metadata records it (``hash`` only labels the tensor)."""
        if self.oid is not None and self.oid in _DIGESTS:
            return _DIGESTS[self.oid]
        digest = "sha256:" + hashlib.sha256(self.load()).hexdigest()
        if self.oid is not None:
            _DIGESTS[self.oid] = digest
        return digest


def legacy_side(
    data: bytes, path: str, reader: ObjectReader, explicit: str | None = None, cwd: str | None = None
) -> Side:
    """The side given by legacy metadata of ``path``; ``explicit`` is the format the attribute names, if any."""
    from git_theta.legacy.checkpoint import checkpoint_type

    named = os.environ.get(CHECKPOINT_TYPE_ENV) or explicit
    try:
        kind = checkpoint_type(path, named)
    except LegacyError:
        kind = named  # a format the old tool wrote and we cannot rebuild: its name still labels the side
    return Side(LegacyTensors(path, metadata.parse(data, path), reader, cwd), kind)


class LegacyTensors:
    """The tensors of one legacy checkpoint; its history is read and its objects downloaded once, when first listed.

    Iterable more than once, like the items of a side described by our metadata. A tensor that cannot be had (an
    object missing, history not here) fails with ``ObjectError`` when it is loaded, so that textconv marks that
    tensor instead of failing; its item's ``hash`` then names its object, for textconv's line.
    """

    def __init__(
        self, path: str, entries: dict[tuple[str, ...], LegacyEntry], reader: ObjectReader, cwd: str | None
    ) -> None:
        self._path = path
        self._entries = entries
        self._reader = reader
        self._cwd = cwd
        self._resolver: Resolver | None = None
        self._chains: dict[tuple[str, ...], list[LegacyEntry]] = {}
        self._errors: dict[tuple[str, ...], LegacyError] = {}
        self._missing: LegacyError | None = None

    def __iter__(self) -> Iterator[Item]:
        self._setup()
        for keys, entry in self._entries.items():
            yield self._item(keys, entry)

    def _item(self, keys: tuple[str, ...], entry: LegacyEntry) -> Item:
        layout = Layout(entry.dtype, entry.shape)
        load = partial(self.load, keys)
        if self._problem(keys) is not None:
            return LegacyItem(name=entry.name, layout=layout, hash=f"unavailable:{entry.oid}", load=load)
        if entry.update_type == "dense":
            return LegacyItem(name=entry.name, layout=layout, hash=None, load=load, oid=entry.oid)
        try:
            value = self.value(keys)
        except ObjectError:
            return LegacyItem(name=entry.name, layout=layout, hash=f"unavailable:{entry.oid}", load=load)
        data = _bytes(value)
        layout = Layout(DTYPES[str(value.dtype)], tuple(value.shape))
        return LegacyItem(name=entry.name, layout=layout, hash=None, load=lambda: data)

    def load(self, keys: tuple[str, ...]) -> memoryview:
        """The exact bytes of one dense parameter, checked against its metadata."""
        value = self.value(keys)
        entry = self._entries[keys]
        if DTYPES.get(str(value.dtype)) != entry.dtype:
            raise ObjectError(
                f"{self._path}: parameter {entry.name!r}: its Git-Theta 0.2 object holds {value.dtype}, but the "
                f"metadata says {entry.dtype}; the object is corrupt"
            )
        return _bytes(value)

    def value(self, keys: tuple[str, ...]) -> np.ndarray:
        """The value of one parameter, its updates applied; ObjectError when it cannot be had."""
        problem = self._problem(keys)
        if problem is not None:
            raise ObjectError(str(problem)) from problem
        assert self._resolver is not None
        try:
            value = self._resolver.value(self._chains[keys])
        except LegacyError as exc:
            raise ObjectError(str(exc)) from exc
        if str(value.dtype) not in DTYPES:
            raise ObjectError(f"{self._path}: parameter {'/'.join(keys)!r} rebuilt as {value.dtype}")
        return value

    def _setup(self) -> None:
        """Resolve each parameter's chain of updates through history; download what they need in one batch."""
        with _SETUP:
            if self._resolver is not None:
                return
            with BlobReader(self._cwd) as blobs:
                resolver = Resolver(self._path, self._reader.store, self._reader.fetch, blobs)
                for keys, entry in self._entries.items():
                    try:
                        self._chains[keys] = resolver.chains({keys: entry})[keys]
                    except LegacyError as exc:  # textconv names a temp file, where history has no such path
                        self._errors[keys] = exc
            try:
                resolver.require(self._chains)
            except LegacyError as exc:
                self._missing = exc
            self._resolver = resolver

    def _problem(self, keys: tuple[str, ...]) -> LegacyError | None:
        """Why the parameter cannot be had, if it cannot."""
        if keys in self._errors:
            return self._errors[keys]
        store = self._reader.store
        if self._missing is not None and not all(store.has(entry.oid) for entry in self._chains[keys]):
            return self._missing
        return None


def _bytes(value: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(value)).cast("B")

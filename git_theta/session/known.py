"""What a file's tensors may reuse: found only in the repository's committed and indexed state.

The metadata a clean writes must be a function of the file's content and of that state alone. Git hands files to
one filter process in an order of its own, and a fresh clone, ``git status`` or ``git add --renormalize`` cleans them
one at a time, so nothing one file stores is remembered for the next: a tensor is reused only when the index or
HEAD already names it, looked up in a fixed order.

1. A tensor whose bytes are the committed (else the staged) value of the same name gets exactly that entry back: a
   file that returns to its committed content gets its committed metadata.
2. Bytes stored anywhere else (this file's other tensors and their bases, then every tracked checkpoint of the
   index and HEAD, by path) are reused as stored there, with this tensor's own previous value.
3. Otherwise the tensor is stored, as an update of its previous value or of a *related* tensor: the same name in a
   checkpoint of the same directory, else in a file of the same name elsewhere (a copy of a model, a re-sharded
   checkpoint). Two copies of a fine-tune added together then store the same delta object, once.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Iterable

from git_theta.checkpoints.base import TensorSpec
from git_theta.metadata import DENSE, CheckpointMetadata, TensorEntry

#: ``{path: versions}`` of the tracked checkpoints: the staged metadata first, then the committed one if it differs.
Checkpoints = dict[str, list[CheckpointMetadata]]


class KnownTensors:
    """The tensors one file may reuse or build on (see the module doc)."""

    def __init__(
        self, path: str, own: Iterable[CheckpointMetadata | None], others: Callable[[], Checkpoints] | None = None
    ) -> None:
        self.path = path
        self.own = [metadata for metadata in own if metadata is not None]
        self._others = others
        #: Tensor name -> its previous value in this file (the committed one, else the staged one).
        self.previous: dict[str, TensorEntry] = {}
        self._stored: dict[str, TensorEntry] = {}
        for metadata in self.own:
            for name, entry in metadata.tensors.items():
                self.previous.setdefault(name, entry)
            _add_stored(self._stored, metadata)
        self._lock = threading.Lock()
        self._wider: dict[str, TensorEntry] | None = None
        self._related: list[CheckpointMetadata] | None = None

    def unchanged(self, spec: TensorSpec, digest: str) -> TensorEntry | None:
        """This file's own entry for ``spec`` when its bytes are the committed or staged ones."""
        for metadata in self.own:
            entry = metadata.tensors.get(spec.name)
            if entry is not None and entry.hash == digest and (entry.dtype, entry.shape) == (spec.dtype, spec.shape):
                return entry
        return None

    def stored(self, spec: TensorSpec, digest: str) -> TensorEntry | None:
        """An entry that stores exactly these bytes for a tensor of this dtype and shape, if the repository has one."""
        found = self._stored.get(digest) or self._repository().get(digest)
        if found is None:
            return None
        if (found.dtype, found.shape) != (spec.dtype, spec.shape):
            if found.update != DENSE:
                return None  # an update rebuilds only its own dtype and shape
            found = found._replace(dtype=spec.dtype, shape=spec.shape)
        return with_previous(found, self.previous.get(spec.name))

    def related(self, name: str) -> TensorEntry | None:
        """The value of ``name`` in a related checkpoint (see the module doc), if any."""
        for metadata in self._related_files():
            if name in metadata.tensors:
                return metadata.tensors[name]
        return None

    def _related_files(self) -> list[CheckpointMetadata]:
        with self._lock:
            if self._related is None:
                others = self._others() if self._others is not None else {}
                directory, filename = posixpath.split(self.path)
                beside = sorted(path for path in others if posixpath.dirname(path) == directory)
                copies = sorted(path for path in others if posixpath.basename(path) == filename)
                paths = dict.fromkeys(path for path in beside + copies if path != self.path)
                self._related = [metadata for path in paths for metadata in others[path]]
        return self._related

    def _repository(self) -> dict[str, TensorEntry]:
        with self._lock:  # asked from the tensor workers; built once, on the first tensor not found nearer
            if self._wider is None:
                self._wider = {}
                others = self._others() if self._others is not None else {}
                for _, versions in sorted(others.items()):
                    for metadata in versions:
                        _add_stored(self._wider, metadata)
        return self._wider


def with_previous(entry: TensorEntry, previous: TensorEntry | None) -> TensorEntry:
    """``entry`` naming ``previous`` as the value it changed from (when it is of the same dtype and shape)."""
    if (
        previous is None
        or previous.hash == entry.hash
        or (previous.dtype, previous.shape) != (entry.dtype, entry.shape)
    ):
        return entry._replace(previous=())
    return entry._replace(previous=(previous.link, *previous.base))


def _add_stored(stored: dict[str, TensorEntry], metadata: CheckpointMetadata) -> None:
    """Index a checkpoint's tensors by hash, and the values under its updates: a return to one stores nothing."""
    for entry in metadata.tensors.values():
        stored.setdefault(entry.hash, entry._replace(previous=()))
        while entry.base:
            entry = entry.base_entry()
            stored.setdefault(entry.hash, entry)

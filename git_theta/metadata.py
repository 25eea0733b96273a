"""The small, versioned, human-readable file that Git stores for each tracked checkpoint.

Format (documented in docs/metadata-format.md, pinned by tests/golden/):

    {
      "git_theta_metadata": 1,
      "checkpoint_type": "safetensors",
      "tensors": {
        "<name>": {"dtype": "F32", "shape": [384], "nbytes": 1536, "hash": "sha256:…", "oid": "…", "stored": 1410},
        ...
      },
      "format": {...},
      "merge": {...}
    }

Tensors are listed in the order the checkpoint stores them, one per line so that ``git diff`` of the metadata names
exactly the tensors that changed. A small tensor may live in a *pack* shared with others (storage/packs.py): its
entry names the pack's object and, under ``packed``, where its own object lies in it. ``format`` holds what the
checkpoint plugin needs to rebuild the file exactly.
``merge``, only in a checkpoint that a merge driver made, records how (see merges/provenance.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from git_theta.dtypes import ITEMSIZE, MAX_NBYTES, shape_error
from git_theta.dtypes import nbytes as dtype_nbytes
from git_theta.errors import GitThetaError

#: A string as ``json.dumps`` writes it (ASCII, escaped), without its per-call overhead.
_json_string = json.encoder.encode_basestring_ascii

VERSION = 1
#: The update type of a tensor stored whole.
DENSE = "dense"
#: Longest base chain a metadata file may describe (writers keep theirs much shorter: ``theta.maxDeltaDepth``).
MAX_CHAIN = 64
#: How format data holds a byte string: inline as base64 when small, else in an object (see storage.format_data).
BYTES_INLINE, BYTES_OBJECT = "$base64", "$object"
MAGIC = b'{\n  "git_theta_metadata": '


class MetadataError(GitThetaError):
    """A metadata file cannot be parsed or is from an unsupported version."""


#: Where a tensor's object lies in a pack: ``(offset, length)`` in bytes.
Piece = tuple[int, int]


class BaseLink(NamedTuple):
    """One step of a chain of bases: a previous value of a tensor, named by content, and how it is stored."""

    hash: str
    oid: str
    stored: int
    update: str
    packed: Piece | None = None

    def to_json(self) -> list[Any]:
        link: list[Any] = [self.hash, self.oid, self.stored, self.update]
        return link if self.packed is None else [*link, list(self.packed)]


class TensorEntry(NamedTuple):
    """One tensor: what it is, the hash of its exact bytes, and the LFS object that holds them.

    A tensor stored as an update (``update`` other than ``dense``) also lists its ``base`` chain: the tensor values
    its object applies to, nearest first, down to one stored whole. They are named by content, never by commit.
    A tensor that changed also names its ``previous`` value (and that value's chain), so that a diff of one side
    can say how it changed; nothing needs it to rebuild the tensor. A tensor kept in a pack has ``packed``: where
    its own object lies in the pack ``oid`` names (``stored`` is then the pack's size).
    """

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    hash: str
    oid: str
    stored: int
    update: str = DENSE
    base: tuple[BaseLink, ...] = ()
    previous: tuple[BaseLink, ...] = ()
    packed: Piece | None = None

    def json_text(self) -> str:
        """``json.dumps(self.to_json())``, written directly for the usual entry (a tensor stored whole): metadata
        of thousands of tiny tensors is written on every ``git add``."""
        if self.update != DENSE or self.previous:
            return json.dumps(self.to_json())
        text, shape = _json_string, ", ".join(map(str, self.shape))
        head = f'{{"dtype": {text(self.dtype)}, "shape": [{shape}], "nbytes": {self.nbytes:d}, '
        link = f'"hash": {text(self.hash)}, "oid": {text(self.oid)}, "stored": {self.stored:d}'
        if self.packed is None:
            return head + link + "}"
        offset, length = self.packed
        return f'{head}{link}, "packed": [{offset:d}, {length:d}]}}'

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of this entry."""
        data: dict[str, Any] = {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "hash": self.hash,
            "oid": self.oid,
            "stored": self.stored,
        }
        if self.packed is not None:
            data["packed"] = list(self.packed)
        if self.update != DENSE:
            data["update"] = self.update
            data["base"] = [link.to_json() for link in self.base]
        if self.previous:
            data["previous"] = [link.to_json() for link in self.previous]
        return data

    @property
    def link(self) -> BaseLink:
        """This tensor as the base of another."""
        return BaseLink(self.hash, self.oid, self.stored, self.update, self.packed)

    def base_entry(self) -> TensorEntry:
        """The entry of the value this update applies to (same dtype and shape)."""
        return self._from_chain(self.base)

    def previous_entry(self) -> TensorEntry | None:
        """The entry of the value this tensor had before it changed, if recorded."""
        return self._from_chain(self.previous) if self.previous else None

    def _from_chain(self, chain: tuple[BaseLink, ...]) -> TensorEntry:
        first, *rest = chain
        return self._replace(
            hash=first.hash,
            oid=first.oid,
            stored=first.stored,
            update=first.update,
            base=tuple(rest),
            previous=(),
            packed=first.packed,
        )

    def objects(self) -> dict[str, int]:
        """Every object (oid -> stored size) needed to rebuild this tensor: its own and its bases'."""
        needed = {self.oid: self.stored}
        needed.update((link.oid, link.stored) for link in self.base)
        return needed

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> TensorEntry:
        """Build an entry from its JSON form, checking that it is consistent."""
        if not isinstance(data, dict):
            raise MetadataError(f"tensor {name!r} has a malformed entry (not a JSON object)")
        try:  # positional, and optional fields only when present: thousands of entries are read per git command
            entry = cls(
                _typed(data["dtype"], str),
                tuple(data["shape"]) if isinstance(data["shape"], list) else data["shape"],
                _count(data["nbytes"]),
                _typed(data["hash"], str),
                _typed(data["oid"], str),
                _count(data["stored"]),
                _typed(data["update"], str) if "update" in data else DENSE,
                _chain(data["base"]) if "base" in data else (),
                _chain(data["previous"]) if "previous" in data else (),
                _piece(data["packed"], data["stored"]) if "packed" in data else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"tensor {name!r} has a malformed entry ({exc})") from exc
        if entry.dtype not in ITEMSIZE:
            raise MetadataError(f"tensor {name!r} has dtype {entry.dtype!r:.40}, unknown to this git-theta; upgrade it")
        problem = shape_error(entry.dtype, entry.shape)
        if problem:
            raise MetadataError(f"tensor {name!r} {problem}")
        if entry.nbytes != dtype_nbytes(entry.dtype, entry.shape):
            raise MetadataError(f"tensor {name!r}: nbytes does not match dtype and shape")
        if not (_is_sha256(entry.oid) and _is_hash(entry.hash)):
            raise MetadataError(f"tensor {name!r} has a malformed hash or oid")
        if entry.update != DENSE or entry.base or entry.previous:  # a chain of bases, or a previous value
            _check_chains(name, entry)
        return entry


def _check_chains(name: str, entry: TensorEntry) -> None:
    for chain in ([entry.link, *entry.base], list(entry.previous)):
        if not all(_is_sha256(link.oid) and _is_hash(link.hash) for link in chain):
            raise MetadataError(f"tensor {name!r} has a malformed hash or oid")
        if chain and not _valid_chain(chain):
            raise MetadataError(f"tensor {name!r} has a malformed base chain")


def _typed(value: Any, kind: type) -> Any:
    # The JSON types as written: str(5) or int("5") would turn a corrupt file into a different, valid-looking one.
    if type(value) is not kind:
        raise TypeError(f"{value!r:.60} is not a {kind.__name__}")
    return value


def _count(value: Any) -> int:
    """A size: a non-negative int (not a bool), no larger than any real tensor."""
    if type(value) is not int or not 0 <= value <= MAX_NBYTES:
        raise ValueError(f"{value!r:.60} is not a byte count")
    return value


def _piece(item: Any, stored: int) -> Piece:
    """Where a tensor's object lies in its pack: inside the pack's recorded size, and not empty."""
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError(f"a pack location is not [offset, length]: {item!r:.60}")
    offset, length = _count(item[0]), _count(item[1])
    if length == 0 or offset + length > stored:
        raise ValueError(f"pack location {item!r:.60} lies outside a pack of {stored} bytes")
    return offset, length


def _chain(items: Any) -> tuple[BaseLink, ...]:
    if not isinstance(items, list) or len(items) > MAX_CHAIN + 1:
        raise ValueError(f"a base chain is not a list of at most {MAX_CHAIN + 1} links")
    return tuple(_link(item) for item in items)


def _valid_chain(chain: list[BaseLink]) -> bool:
    """Updates all the way down to one value stored whole, and not absurdly deep."""
    updates, last = chain[:-1], chain[-1]
    return all(link.update != DENSE for link in updates) and last.update == DENSE and len(chain) <= MAX_CHAIN + 1


def _link(item: Any) -> BaseLink:
    if not isinstance(item, list) or len(item) not in (4, 5):
        raise ValueError(f"a base link is not [hash, oid, stored, update(, [offset, length])]: {item!r:.60}")
    hash_, oid, stored, update = item[:4]
    packed = _piece(item[4], _count(stored)) if len(item) == 5 else None
    return BaseLink(_typed(hash_, str), _typed(oid, str), _count(stored), _typed(update, str), packed)


class CheckpointMetadata:
    """Everything Git stores about one checkpoint file."""

    # A plain class rather than a dataclass: importing dataclasses costs every checkout ~10 ms.
    __slots__ = ("checkpoint_type", "tensors", "format", "merge")

    def __init__(
        self,
        checkpoint_type: str,
        tensors: dict[str, TensorEntry] | None = None,
        format: dict[str, Any] | None = None,
        merge: dict[str, Any] | None = None,
    ) -> None:
        self.checkpoint_type = checkpoint_type
        self.tensors = tensors if tensors is not None else {}
        self.format = format if format is not None else {}
        #: How a merge made this checkpoint, when one did (the ``merge`` record); None otherwise.
        self.merge = merge

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckpointMetadata):
            return NotImplemented
        mine = (self.checkpoint_type, self.tensors, self.format, self.merge)
        return mine == (other.checkpoint_type, other.tensors, other.format, other.merge)

    def same_checkpoint(self, other: CheckpointMetadata) -> bool:
        """Tell whether both describe the same file: type, format data, and tensors (names, order, dtype, shape,
        hash), however the tensors are stored and whatever the merge records say."""
        if (self.checkpoint_type, self.format) != (other.checkpoint_type, other.format):
            return False
        mine = [(name, e.dtype, e.shape, e.hash) for name, e in self.tensors.items()]
        return mine == [(name, e.dtype, e.shape, e.hash) for name, e in other.tensors.items()]

    def __repr__(self) -> str:
        return f"CheckpointMetadata({self.checkpoint_type!r}, {len(self.tensors)} tensors)"

    def dumps(self) -> bytes:
        """Serialize to the canonical text form (deterministic: same checkpoint, same bytes)."""
        lines = [
            "{",
            f'  "git_theta_metadata": {VERSION},',
            f'  "checkpoint_type": {json.dumps(self.checkpoint_type)},',
        ]
        if self.tensors:
            lines.append('  "tensors": {')
            rows = [f"    {_json_string(name)}: {entry.json_text()}" for name, entry in self.tensors.items()]
            lines.append(",\n".join(rows))
            lines.append("  },")
        else:
            lines.append('  "tensors": {},')
        lines.append(f'  "format": {json.dumps(self.format, sort_keys=True)}')
        if self.merge is not None:
            lines[-1] += ","
            lines.append(f'  "merge": {json.dumps(self.merge, sort_keys=True)}')
        lines.append("}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, data: bytes) -> CheckpointMetadata:
        """Parse the text form; raise MetadataError when it is not valid metadata."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # also nested too deep, or an integer of thousands of digits
            raise MetadataError(f"not a git-theta metadata file ({str(exc):.200})") from exc
        if not isinstance(doc, dict) or "git_theta_metadata" not in doc:
            raise MetadataError("not a git-theta metadata file")
        if type(doc["git_theta_metadata"]) is not int or doc["git_theta_metadata"] != VERSION:
            raise MetadataError(
                f"metadata version {doc['git_theta_metadata']!r:.40} is not supported by this git-theta "
                f"(supports {VERSION}); upgrade git-theta"
            )
        tensors = doc.get("tensors")
        if not isinstance(tensors, dict) or not isinstance(doc.get("format", {}), dict):
            raise MetadataError("metadata has no valid 'tensors' table")
        if not isinstance(doc.get("checkpoint_type"), str):
            raise MetadataError("metadata names no checkpoint type")
        if not isinstance(doc.get("merge", {}), dict):
            raise MetadataError("metadata has a malformed 'merge' record (not a JSON object)")
        return cls(
            checkpoint_type=doc["checkpoint_type"],
            tensors={name: TensorEntry.from_json(name, entry) for name, entry in tensors.items()},
            format=doc.get("format", {}),
            merge=doc.get("merge"),
        )

    def objects(self) -> dict[str, int]:
        """Every object (oid -> stored size) needed to write the checkpoint: the tensors' (and their bases') and
        those holding large byte strings of the format data."""
        needed: dict[str, int] = {}
        for entry in self.tensors.values():
            needed.update(entry.objects())
        needed.update((entry.oid, entry.stored) for entry in format_objects(self.format))
        return needed

    @property
    def total_bytes(self) -> int:
        """Raw size of all tensors."""
        return sum(entry.nbytes for entry in self.tensors.values())


def format_objects(value: Any) -> Iterator[TensorEntry]:
    """The objects that hold the large byte strings of format data (``{"$object": ...}``, see storage.format_data)."""
    if isinstance(value, dict):
        if set(value) == {BYTES_OBJECT}:
            yield bytes_entry(value[BYTES_OBJECT])
            return
        for item in value.values():
            yield from format_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from format_objects(item)


def bytes_entry(reference: Any) -> TensorEntry:
    """The object holding a byte string of format data, described like a U8 tensor stored whole."""
    if not isinstance(reference, dict) or not isinstance(reference.get("nbytes"), int):
        raise MetadataError("invalid reference to an object in the format data")
    fields = {"dtype": "U8", "shape": [reference["nbytes"]], **reference}
    return TensorEntry.from_json("format data", fields)


def is_metadata(data: bytes) -> bool:
    """Tell whether ``data`` looks like a git-theta metadata file (cheap prefix test)."""
    return data.startswith(MAGIC)


_HASH = re.compile(r"sha256:[0-9a-f]{64}").fullmatch
_SHA256 = re.compile(r"[0-9a-f]{64}").fullmatch  # twice as fast as str.strip, for thousands of entries per read


def _is_hash(text: str) -> bool:
    return _HASH(text) is not None


def _is_sha256(text: str) -> bool:
    return _SHA256(text) is not None

"""Which tensor objects the repository's metadata references, and where."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from git_theta.git.reachability import metadata_blobs
from git_theta.metadata import CheckpointMetadata, MetadataError, TensorEntry, format_objects

#: Anything that looks like an object id; used where keeping too much is safe and keeping too little is not.
_OID = re.compile(rb"[0-9a-f]{64}")
#: How reports name an object holding format data (GGUF's header) rather than a tensor.
FORMAT_DATA = "format data"


@dataclass
class Usage:
    """One object: the tensor entries that name it, the checkpoints and tensors they come from."""

    entries: list[TensorEntry] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)

    def add(self, path: str, name: str, entry: TensorEntry) -> None:
        """Record one more use of the object."""
        if entry not in self.entries:
            self.entries.append(entry)
        if path not in self.paths:
            self.paths.append(path)
        if name not in self.tensors:
            self.tensors.append(name)

    def describe(self, oid: str) -> str:
        """Name the checkpoint path(s), the tensor and the object, for a one-line report."""
        more = f" (and {len(self.tensors) - 1} more)" if len(self.tensors) > 1 else ""
        what = FORMAT_DATA if self.tensors[0] == FORMAT_DATA else f"tensor {self.tensors[0]!r}"
        return f"{', '.join(self.paths)}: {what}{more}: object {oid}"


def referenced_objects(revisions: list[str]) -> tuple[dict[str, Usage], list[str]]:
    """Return the objects that metadata reachable from ``revisions`` references, and the metadata that is unreadable."""
    usages: dict[str, Usage] = {}
    unreadable = []
    for path, data in metadata_blobs(revisions):
        try:
            metadata = CheckpointMetadata.loads(data)
        except MetadataError as exc:
            unreadable.append(f"{path}: {exc}")
            continue
        for name, entry in metadata.tensors.items():
            usages.setdefault(entry.oid, Usage()).add(path, name, entry)
            while entry.base:  # the values an update applies to are needed too
                entry = entry.base_entry()
                usages.setdefault(entry.oid, Usage()).add(path, name, entry)
        try:
            for entry in format_objects(metadata.format):  # large byte strings of the format data (GGUF's header)
                usages.setdefault(entry.oid, Usage()).add(path, FORMAT_DATA, entry)
        except MetadataError as exc:
            unreadable.append(f"{path}: {exc}")
    return usages, unreadable


def referenced_oids(revisions: list[str]) -> set[str]:
    """Return every object id metadata reachable from ``revisions`` may reference, even metadata we cannot parse."""
    return {match.decode() for _, data in metadata_blobs(revisions) for match in _OID.findall(data)}

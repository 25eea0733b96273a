"""Telling a Git-Theta 0.2 metadata file from the first bytes of a file: on every call of the filters, so without
importing the rest of this package (its metadata parser compiles regular expressions and imports json)."""

from __future__ import annotations

#: How far into a file its metadata keyword is looked for: a leaf, and so the keyword, always appears within the
#: first bytes of the file.
SNIFF = 1 << 16


def is_legacy_metadata(data: bytes) -> bool:
    """Tell whether ``data`` looks like a Git-Theta 0.2 metadata file (cheap test of its first bytes)."""
    return data.lstrip()[:1] == b"{" and b'"theta_metadata"' in data[:SNIFF]

"""Writing and reading the tracking lines of .gitattributes (``git theta track``, ``untrack`` and ``fsck``)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from git_theta.errors import UsageError
from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE
from git_theta.git.runner import output, run, split_z

#: ``-text``, as ``git lfs track`` writes it: git must never convert line endings of the metadata it stores
#: (``core.autocrlf``, ``core.eol``, ``text=auto``), or a clone's metadata and checkpoints come out changed.
BINARY = "-text"
TRACK_ATTRIBUTES = f"filter=theta diff=theta merge=theta {BINARY}"
#: The attributes ``git theta track`` writes that ``git theta untrack`` removes (``-text`` may be another tool's).
_OURS = frozenset(TRACK_ATTRIBUTES.split()) - {BINARY}
#: What git reads at the start of a .gitattributes line as something other than a plain pattern.
_SPECIAL_STARTS = {"#": "a comment", "!": "a negative pattern, which git ignores", '"': "a C-quoted pattern"}


class PatternError(UsageError):
    """A pattern cannot be written as one line of .gitattributes."""


def escape_pattern(pattern: str) -> str:
    """Escape a pattern for .gitattributes, where blanks separate fields (as git-lfs does); refuse what cannot be."""
    _check_pattern(pattern)
    return pattern.replace(" ", "[[:space:]]").replace("\t", "[[:space:]]")


def _check_pattern(pattern: str) -> None:
    # git splits .gitattributes into lines at LF (a CR ends a field): a line break would start a line of its own.
    control = next((char for char in pattern if (ord(char) < 0x20 and char != "\t") or char == "\x7f"), None)
    if control is not None:
        raise PatternError(
            f"pattern {pattern!r} contains the control character {control!r}; a .gitattributes pattern is one line "
            "of printable characters: give each pattern as its own argument"
        )
    if not pattern or pattern.startswith("[attr]"):
        raise PatternError(f"{pattern!r} is not a file pattern; give one such as '*.safetensors'")
    if pattern[0] in _SPECIAL_STARTS:
        raise PatternError(
            f"pattern {pattern!r} would be read by git as {_SPECIAL_STARTS[pattern[0]]}; "
            f"start it with a backslash ('\\{pattern}') to match a name that begins with {pattern[0]!r}"
        )


def needs_binary(line: str) -> bool:
    """Tell whether a .gitattributes line hands files to git-theta without ``-text`` (written before it was added)."""
    fields = line.split()
    return len(fields) > 1 and not fields[0].startswith("#") and "filter=theta" in fields and BINARY not in fields


def add_tracking(root: Path, patterns: list[str]) -> tuple[list[str], list[str]]:
    """Append a tracking line per new pattern to ``root/.gitattributes``, and add ``-text`` where a theta line lacks it.

    Return the patterns added and the lines upgraded (as they were). Other lines, their order and their line endings
    are kept.
    """
    lines = [escape_pattern(pattern) for pattern in patterns]  # refuse a bad pattern before writing anything
    path = root / ".gitattributes"
    old = _read_lines(path)
    upgraded = [line.rstrip("\r\n") for line in old if needs_binary(line)]
    text = "".join(_with_binary(line) if needs_binary(line) else line for line in old)
    present = {tuple(line.split()) for line in text.splitlines()}
    eol = "\r\n" if old and old[0].endswith("\r\n") else "\n"
    added = []
    for pattern, escaped in zip(patterns, lines, strict=True):
        fields = tuple(f"{escaped} {TRACK_ATTRIBUTES}".split())
        if fields not in present:
            added.append(pattern)
            present.add(fields)
            text += ("" if not text or text.endswith("\n") else eol) + " ".join(fields) + eol
    if added or upgraded:
        _write_atomic(path, text)
    return added, upgraded


class AttributesLine(NamedTuple):
    """One line of an attributes file; ``top_level`` when the file is the one ``git theta track`` writes."""

    path: Path
    number: int
    text: str
    top_level: bool


def lines_without_binary() -> list[AttributesLine]:
    """Return every theta line without ``-text`` in the attributes files git reads (info/attributes, .gitattributes)."""
    return [line for line in tracking_lines() if needs_binary(line.text)]


def tracking_lines() -> list[AttributesLine]:
    """Return every line that hands files to git-theta, in the attributes files git reads."""
    return [
        AttributesLine(path, number, line.rstrip("\r\n"), top_level)
        for path, top_level in _attributes_files().items()
        for number, line in enumerate(_read_lines(path), 1)
        if _is_tracking(line)
    ]


def _attributes_files() -> dict[Path, bool]:
    """The .gitattributes files of the working tree (top level first) and info/attributes; True for the top level."""
    files = {}
    if output("rev-parse", "--is-bare-repository") == "false":
        root = Path(output("rev-parse", "--show-toplevel"))
        listed = split_z(run("ls-files", "-z", "--", ":(glob)**/.gitattributes", cwd=str(root)).stdout)
        files.update({root / name: name == ".gitattributes" for name in sorted({".gitattributes", *listed})})
    files[Path(output("rev-parse", "--path-format=absolute", "--git-path", "info/attributes"))] = False
    files[_global_attributes()] = False
    return files


def _global_attributes() -> Path:
    """``core.attributesFile``, else git's default ``$XDG_CONFIG_HOME/git/attributes``."""
    configured = run("config", "--type=path", "--get", "core.attributesFile", check=False).stdout.decode().strip()
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "git" / "attributes"


def _is_tracking(line: str) -> bool:
    fields = line.split()
    return len(fields) > 1 and not fields[0].startswith("#") and "filter=theta" in fields[1:]


def remove_tracking(root: Path, patterns: list[str]) -> None:
    """Remove git-theta's attributes for ``patterns`` from ``root/.gitattributes`` (a line left empty goes).

    Every pattern must be tracked there; otherwise nothing is written and the error says where it is tracked, if
    anywhere. Attributes of other tools on the same line, and the other lines, are kept.
    """
    path = root / ".gitattributes"
    escaped = {escape_pattern(pattern): pattern for pattern in patterns}
    lines = _read_lines(path)
    found = {line.split()[0] for line in lines if _is_tracking(line)}
    for field, pattern in escaped.items():
        if field not in found:
            raise UsageError(_not_tracked_here(pattern, field))
    kept = [line for line in (_without_ours(line, escaped) for line in lines) if line is not None]
    _write_atomic(path, "".join(kept))


def _without_ours(line: str, escaped: dict[str, str]) -> str | None:
    """``line`` without git-theta's attributes when its pattern is one of ``escaped``; None when nothing is left."""
    fields = line.split()
    if not _is_tracking(line) or fields[0] not in escaped:
        return line
    rest = [f for f in fields[1:] if f not in _OURS and not f.startswith(f"{CHECKPOINT_ATTRIBUTE}=")]
    if set(rest) <= {BINARY}:
        return None
    body = line.rstrip("\r\n")
    return " ".join([fields[0], *rest]) + line[len(body) :]


def _not_tracked_here(pattern: str, field: str) -> str:
    elsewhere = [line for line in tracking_lines() if line.text.split()[0] == field]
    if elsewhere:
        where = elsewhere[0]
        return (
            f"{pattern!r} is tracked by {os.path.relpath(where.path)}:{where.number}, not by the top-level "
            ".gitattributes; remove it from that file"
        )
    return f"{pattern!r} is not tracked by git-theta (git theta track lists the tracked patterns)"


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:  # newline="": keep CRLF files CRLF
        return re.findall(r"[^\n]*\n|[^\n]+$", handle.read())  # git ends a line at LF only


def _with_binary(line: str) -> str:
    body = line.rstrip("\r\n")
    return f"{body.rstrip()} {BINARY}{line[len(body) :]}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".theta-tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

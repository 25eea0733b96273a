"""What a commit records of how git-theta merged it: trailers of ``git theta merge``, or a checkpoint's ``merge``
record (merges/provenance.py); read by ``git theta log`` and ``git theta merge --replay``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from git_theta.git import merging
from git_theta.git.runner import run
from git_theta.merges.provenance import GREEDY_SOUP, STRATEGY_TRAILER, describe, parse_trailers
from git_theta.metadata import CheckpointMetadata, MetadataError, is_metadata

SCORE_TRAILER = "Theta-Merge-Score"


def checkpoint_record(commit: str, path: str, cwd: str) -> dict[str, Any] | None:
    """The ``merge`` record of ``path`` in ``commit``, if it has one."""
    metadata = checkpoint_at(commit, path, cwd)
    return metadata.merge if metadata is not None else None


def checkpoint_at(commit: str, path: str, cwd: str) -> CheckpointMetadata | None:
    """The metadata of ``path`` in ``commit`` (None when absent or not git-theta's)."""
    found = run("cat-file", "blob", f"{commit}:{path}", cwd=cwd, check=False)
    if found.returncode != 0 or not is_metadata(found.stdout):
        return None
    try:
        return CheckpointMetadata.loads(found.stdout)
    except MetadataError:
        return None


def provenance_line(commit: str, parents: list[str], path: str, cwd: str) -> str | None:
    """How ``commit`` made ``path``, in one line for ``git theta log`` (None when git-theta did not merge it)."""
    short = _shortener(cwd)
    if len(parents) > 1:
        found = parse_trailers(merging.commit_message(commit, cwd))
        if STRATEGY_TRAILER in found:
            strategy = found[STRATEGY_TRAILER][-1]
            line = describe({"strategy": strategy}, short, parents)
            return line + soup_summary(found, short) if strategy == GREEDY_SOUP else line
    found_record = checkpoint_record(commit, path, cwd)
    return describe(found_record, short, parents) if found_record is not None else None


def soup_summary(found: dict[str, list[str]], short: Callable[[str], str]) -> str:
    """``; kept A (0.91), B (0.92); rejected C (0.8)`` from the score trailers of a greedy soup."""
    kept: list[str] = []
    rejected: list[str] = []
    for value in found.get(SCORE_TRAILER, []):
        parts = dict(part.split("=", 1) for part in value.split()[1:] if "=" in part)
        entry = f"{short(value.split()[0])} ({parts.get('soup', parts.get('own', '?'))})"
        (kept if value.endswith(" kept") else rejected).append(entry)
    summary = f"; kept {', '.join(kept)}" if kept else ""
    return summary + (f"; rejected {', '.join(rejected)}" if rejected else "")


def _shortener(cwd: str) -> Callable[[str], str]:
    def short(commit: str) -> str:
        result = run("rev-parse", "--short", commit, cwd=cwd, check=False)
        return result.stdout.decode().strip() if result.returncode == 0 else commit[:12]

    return short

"""``git theta migrate``: checkpoints tracked in Git-Theta 0.2's format rewritten in ours, going forward.

For each checkpoint whose index entry is legacy metadata, the tensors it describes are decoded (through history
for incremental updates), stored as our objects, and our metadata is staged in its place; the next commit is in
our format and the history stays readable. A working-tree file that still holds exactly those tensors is staged
again from the file (so its format data is the file's own and ``git status`` stays clean); a modified one is left
as the user's change. The old tool's settings that would now run missing programs (its filter, diff and merge
commands) and its hooks (which call ``git theta post-commit`` and ``git theta pre-push``) are replaced by ours.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from git_theta.checkpoints.base import Tensor
from git_theta.checkpoints.detect import detect
from git_theta.errors import GitThetaError
from git_theta.git import config, hooks
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.catfile import BlobReader
from git_theta.git.runner import run, split_z
from git_theta.legacy.checkpoint import LEGACY_TYPES, Rebuilt
from git_theta.legacy.filters import resolve
from git_theta.legacy.sniff import is_legacy_metadata
from git_theta.metadata import CheckpointMetadata
from git_theta.representations.cheapest import store_tensor
from git_theta.session.context import Session
from git_theta.storage.format_data import store_format

#: The old tool's commands, by the config key that names them.
OLD_COMMANDS = {
    "filter.theta.clean": "git-theta-filter",
    "filter.theta.smudge": "git-theta-filter",
    "diff.theta.command": "git-theta-diff",
    "merge.theta.driver": "git-theta-merge",
}
#: The old tool's hooks call these subcommands, which this git-theta does not have.
OLD_HOOKS = {"post-commit": "git theta post-commit", "pre-push": "git theta pre-push"}


class Migrated(NamedTuple):
    """One migrated checkpoint: its path, tensor count, and what was done with the working-tree file."""

    path: str
    tensors: int
    worktree: str


def legacy_paths(paths: tuple[str, ...], root: Path) -> list[str]:
    """The tracked paths (from the top of the repository) whose index entry is Git-Theta 0.2 metadata."""
    listed = split_z(run("ls-files", "-z", "--full-name", "--", *paths).stdout)
    tracked = tracked_by_theta(listed, cwd=str(root))
    with BlobReader(cwd=str(root)) as blobs:
        return [path for path in tracked if is_legacy_metadata(blobs.read(f":{path}") or b"")]


def migrate_file(path: str, root: Path, context: Session, blobs: BlobReader) -> Migrated:
    """Stage ``path`` in our format, from the legacy metadata in the index."""
    legacy = blobs.read(f":{path}") or b""
    rebuilt = resolve(legacy, path, context)
    entries = {}
    context.start_file(path, [])
    for spec, data in zip(rebuilt.specs, rebuilt.tensors, strict=True):
        _, entries[spec.name] = store_tensor(context, Tensor(spec, data))
    format_data = store_format(rebuilt.format, context.store, context.encoder)
    ours = CheckpointMetadata(rebuilt.checkpoint_type, entries, format_data).dumps()
    state = _worktree_state(root / path, path, rebuilt, context)
    mode = run("ls-files", "-s", "-z", "--", path, cwd=str(root)).stdout.split(b" ", 1)[0].decode()
    blob = run("hash-object", "-w", "--stdin", input=ours, cwd=str(root)).stdout.decode().strip()
    run("update-index", "--cacheinfo", f"{mode},{blob},{path}", cwd=str(root))
    if state == "metadata only":
        (root / path).write_bytes(ours)  # a checkout without weights: our metadata replaces the old
    if state in ("unchanged", "metadata only"):
        run("add", "--", path, cwd=str(root))  # cleaned again by our filter: the file's own format data
    return Migrated(path, len(entries), state)


def _worktree_state(file: Path, path: str, rebuilt: Rebuilt, context: Session) -> str:
    try:
        with open(file, "rb") as handle:
            head = handle.read(4096)
            if is_legacy_metadata(head):
                return "metadata only"
            handle.seek(0)
            return "unchanged" if _holds(handle, head, path, rebuilt, context) else "modified"
    except FileNotFoundError:
        return "missing"


def _holds(handle: BinaryIO, head: bytes, path: str, rebuilt: Rebuilt, context: Session) -> bool:
    """Tell whether the file holds exactly the rebuilt tensors."""
    expected = {
        s.name: (s.dtype, s.shape, hashlib.sha256(d).digest())
        for s, d in zip(rebuilt.specs, rebuilt.tensors, strict=True)
    }
    explicit = context.explicit_checkpoint_type(path)
    try:
        plugin = detect(path, head, LEGACY_TYPES.get(explicit, explicit) if explicit else rebuilt.checkpoint_type)
        _, tensors = plugin().read(handle, path)
        found = {t.spec.name: (t.spec.dtype, t.spec.shape, hashlib.sha256(t.data).digest()) for t in tensors}
    except GitThetaError:
        return False
    return found == expected


def staged_elsewhere(paths: list[str], root: Path) -> list[str]:
    """Paths staged for the next commit other than ``paths`` (``--commit`` commits only the migration)."""
    if run("rev-parse", "--verify", "--quiet", "HEAD", cwd=str(root), check=False).returncode != 0:
        return []
    staged = split_z(run("diff", "--cached", "--name-only", "-z", cwd=str(root)).stdout)
    return sorted(set(staged) - set(paths))


def fix_configuration() -> Iterator[str]:
    """Replace the old tool's filter, diff and merge commands and hooks; yield what was changed."""
    listing = run("config", "-z", "--show-scope", "--get-regexp", r"^(filter|diff|merge)\.theta\.", check=False)
    stale: dict[str, list[str]] = {}
    items = listing.stdout.decode(errors="replace").split("\0")
    for scope, entry in zip(items[0::2], items[1::2], strict=False):
        key, _, value = entry.partition("\n")
        if key in OLD_COMMANDS and value.split(" ", 1)[0] == OLD_COMMANDS[key]:
            stale.setdefault(scope, []).append(key)
    for scope, keys in stale.items():
        if scope not in ("global", "local"):
            yield f"the {scope} git config still runs Git-Theta 0.2 ({', '.join(keys)}); run 'git theta install' there"
            continue
        config.set_values(config.drivers_config(), scope == "local")
        yield f"replaced Git-Theta 0.2's commands in the {scope} git config ({', '.join(keys)}) with ours"
    yield from _fix_hooks()


def _fix_hooks() -> Iterator[str]:
    directory = hooks.hooks_dir()
    removed = []
    for name, command in OLD_HOOKS.items():
        for candidate in (directory / name, directory / (name + hooks.CHAIN_SUFFIX)):
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if command in text and not hooks.is_ours(candidate):
                candidate.unlink()
                removed.append(candidate.name)
    if removed:
        yield f"removed Git-Theta 0.2's hooks: {', '.join(removed)}"
        written = hooks.install_hooks()
        if written:
            yield f"installed hooks: {', '.join(written)}"

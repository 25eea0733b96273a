"""``git theta log [REV...] [--] PATH``: each commit that changed a checkpoint, with a summary of the change."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import click

from git_theta.checkpoints.sharded import is_index
from git_theta.cli.revisions import SeparatedCommand, split_args
from git_theta.diffs.log import checkpoint_history, largest_change
from git_theta.diffs.models import named_unit
from git_theta.diffs.render import SORT_KEYS, changed_tensors
from git_theta.errors import UsageError
from git_theta.git.attributes import tracked_by_theta
from git_theta.git.repo import resolve_tree, toplevel
from git_theta.git.trees import Commit, tree_blobs
from git_theta.pipeline import no_blas_threads


@click.command(cls=SeparatedCommand)
@click.argument("args", nargs=-1, metavar="[REV...] [--] PATH")
@click.option("-n", "--max-count", type=click.IntRange(min=0), help="Show at most this many commits.")
@click.option("--format", "form", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@click.option("-p", "--patch", is_flag=True, help="Also list each commit's changed tensors, as git theta diff does.")
@click.option("--sort", type=click.Choice(list(SORT_KEYS)), default="order", help="Order of the tensors (with -p).")
@click.option("--threshold", type=float, default=0.0, help="With -p, hide tensors whose relative change is below this.")
def log(args: tuple[str, ...], max_count: int | None, form: str, patch: bool, sort: str, threshold: float) -> None:
    """Show the commits that changed the checkpoint PATH (a file, or a sharded model's directory or index json) and,
    for each, what changed and by how much."""
    no_blas_threads()  # before numpy loads; this command's children are git's plumbing
    top = toplevel()
    revisions, paths = split_args(list(args), top)
    if len(paths) != 1:
        raise UsageError("name exactly one checkpoint path (git theta log [REV...] [--] PATH)")
    path = _checkpoint(paths[0], revisions, top)
    history = checkpoint_history(revisions or ["HEAD"], path, max_count, top)
    if form == "json":
        records = [
            {"commit": c.oid, "date": c.date, "subject": c.subject, **d.to_json(), **_merged(c, path, str(top))}
            for c, d in history
        ]
        click.echo(json.dumps(records, indent=2))
        return
    shown = 0
    for commit, diff in history:
        detail = "; ".join(part for part in (diff.summary(), largest_change(diff)) if part)
        shards = f"    {diff.label}\n" if diff.old_shards != diff.new_shards else ""  # re-sharded
        click.echo(f"{commit.short} {commit.date} {commit.subject}\n{shards}    {detail}")
        for line in _merged(commit, path, str(top)).values():
            click.echo(f"    {line}")
        if patch and diff.tensors:
            click.echo(textwrap.indent(changed_tensors(diff, sort, threshold), "    "), nl=False)
        shown += 1
    if not shown:
        click.echo(f"git-theta: no commit changed {path}", err=True)


def _checkpoint(path: str, revisions: list[str], top: Path) -> str:
    """The checkpoint, or sharded model (its index json), that ``path`` names: a file, an index or a directory."""
    rev = next((r for r in revisions if not r.startswith("^") and ".." not in r), "HEAD")
    listing = tree_blobs(rev, [path], str(top)) if resolve_tree(rev, str(top)) else {}
    named = named_unit(path, listing, str(top), rev) if not os.path.isfile(top / path) else path
    if not is_index(named) and not tracked_by_theta([named], str(top)):
        raise UsageError(f"{named} is not tracked by git-theta (track it with: git theta track PATTERN)")
    return named


def _merged(commit: Commit, path: str, cwd: str) -> dict[str, str]:
    """``{"merged": how}`` when git-theta merged this commit's checkpoint (docs/merges.md, "Provenance")."""
    from git_theta.merges.recorded import provenance_line

    line = provenance_line(commit.oid, list(commit.parents), path, cwd)
    return {"merged": line} if line else {}

"""``git theta merge`` (N-way merges and in-place resolution) and the merge driver git calls."""

from __future__ import annotations

import sys

import click

from git_theta.errors import UsageError

#: Not a per-tensor strategy: the command that picks a soup's ingredients by evaluating candidates.
GREEDY_SOUP = "greedy-soup"


@click.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """git's merge driver (merge.theta.driver): %O %A %B %P."""
    from git_theta.merges.driver import merge_driver as run_driver

    sys.exit(run_driver(base, ours, theirs, path))


@click.command()
@click.argument("revisions", nargs=-1)
@click.option("-s", "--strategy", help="Strategy for tensors changed differently, e.g. average or ties:density=0.2.")
@click.option("--pattern", "patterns", multiple=True, metavar="GLOB=STRATEGY", help="Strategy for matching tensors.")
@click.option("--weight", "weights", multiple=True, metavar="REV=W", help="Weight of one revision (HEAD included).")
@click.option("-m", "--message", help="Message of the merge commit.")
@click.option("--eval", "command", metavar="CMD", help="greedy-soup: score a candidate ({} is its directory).")
@click.option("--minimize", is_flag=True, help="greedy-soup: a lower score is better.")
@click.option("--exclude-head", is_flag=True, help="greedy-soup: HEAD is not an ingredient.")
@click.option("--replay", metavar="COMMIT", help="Merge again as COMMIT records and check it gives the same bytes.")
def merge(
    revisions: tuple[str, ...],
    strategy: str | None,
    patterns: tuple[str, ...],
    weights: tuple[str, ...],
    message: str,
    command: str | None,
    minimize: bool,
    exclude_head: bool,
    replay: str | None,
) -> None:
    """Merge REVISIONS into HEAD as one merge commit, tensor by tensor; without REVISIONS, resolve the checkpoints
    that a git merge, cherry-pick, revert or rebase left in conflict."""
    from git_theta.git import repo
    from git_theta.merges.choose import Chooser
    from git_theta.merges.nway import merge_revisions, resolve_in_place

    cwd = str(repo.toplevel())
    if replay:
        _replay(replay, revisions or strategy or patterns or weights or message or command, cwd)
        return
    if strategy == GREEDY_SOUP or command:
        _greedy_soup(revisions, strategy, patterns or weights, message, command, minimize, exclude_head, cwd)
        return
    if minimize or exclude_head:
        raise UsageError("--minimize and --exclude-head go with --strategy greedy-soup --eval CMD")
    chooser = Chooser.configured(strategy, list(patterns))
    if not revisions:
        if weights or message:
            raise UsageError("--weight and --message need revisions to merge")
        for path in resolve_in_place(chooser, cwd):
            click.echo(f"git-theta: {path}: resolved; continue with git commit (or --continue)")
        return
    commit = merge_revisions(list(revisions), chooser, _parse_weights(weights), message, cwd)
    click.echo(f"git-theta: merged {', '.join(revisions)} into HEAD: {commit[:12]}")


def _replay(commit: str, others: object, cwd: str) -> None:
    from git_theta.merges.replay import replay

    if others:
        raise UsageError("--replay COMMIT takes no revisions or other options")
    for path in replay(commit, cwd):
        click.echo(f"git-theta: {path}: the replay of {commit} gives the same checkpoint")


def _greedy_soup(
    revisions: tuple[str, ...],
    strategy: str | None,
    others: object,
    message: str | None,
    command: str | None,
    minimize: bool,
    exclude_head: bool,
    cwd: str,
) -> None:
    from git_theta.merges.soup import greedy_soup

    if strategy != GREEDY_SOUP or not command or not revisions:
        raise UsageError("a greedy soup is: git theta merge --strategy greedy-soup --eval CMD REV...")
    if others:
        raise UsageError("a greedy soup averages its ingredients uniformly: it takes no --pattern or --weight")
    commit = greedy_soup(list(revisions), command, minimize, not exclude_head, message, cwd)
    if commit:
        click.echo(f"git-theta: greedy soup merged into HEAD: {commit[:12]}")


def _parse_weights(items: tuple[str, ...]) -> dict[str, float]:
    weights = {}
    for item in items:
        rev, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not rev or weight < 0:
            raise UsageError(f"--weight {item!r}: write REV=W with a non-negative number W")
        weights[rev] = weight
    return weights

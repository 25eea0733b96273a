"""``git theta diff [REV [REV]] [--] [PATH...]``: what changed in tracked checkpoints, and by how much."""

from __future__ import annotations

from pathlib import Path

import click

from git_theta.cli.revisions import SeparatedCommand, split_args
from git_theta.diffs.render import SORT_KEYS, as_json, select, table
from git_theta.diffs.result import CheckpointDiff
from git_theta.diffs.targets import Target, choose_targets, compare_targets
from git_theta.git.repo import toplevel
from git_theta.git.runner import run
from git_theta.pipeline import import_meanwhile, no_blas_threads


@click.command(cls=SeparatedCommand)
@click.argument("args", nargs=-1, metavar="[REV [REV]] [--] [PATH]...")
@click.option("--cached", "--staged", is_flag=True, help="Compare the index with REV (default HEAD).")
@click.option("--format", "form", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@click.option("--sort", type=click.Choice(list(SORT_KEYS)), default="order", help="Order of the tensors.")
@click.option("--threshold", type=float, default=0.0, help="Hide changed tensors whose relative change is below this.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Draw the relative changes to this PNG.")
@click.option(
    "--plot-by",
    type=click.Choice(["auto", "tensor", "layer"]),
    default="auto",
    help="One bar per tensor or per layer (auto: per layer above 60 tensors).",
)
@click.option(
    "--plot-scale",
    type=click.Choice(["log", "linear"]),
    default="log",
    help="Scale of the relative changes (log: linear anyway when one of them is 0).",
)
def diff(
    args: tuple[str, ...],
    cached: bool,
    form: str,
    sort: str,
    threshold: float,
    plot_file: str | None,
    plot_by: str,
    plot_scale: str,
) -> None:
    """Show, per changed tensor, how much it changed (index vs working tree by default, as git diff does); a sharded
    model (PATH: its directory or index json) is one checkpoint."""
    no_blas_threads()  # this command's children are git's plumbing
    import_meanwhile("git_theta.diffs.numeric")  # numpy loads while git lists what changed
    top = toplevel()
    revisions, paths = split_args(list(args), top)
    old, new = choose_targets(revisions, cached, str(top))
    diffs = compare_targets(old, new, paths, top)
    labels = (old.label, new.label)
    if form == "json":
        click.echo(as_json(diffs, labels, sort, threshold))
    else:
        click.echo(table(diffs, labels, sort, threshold), nl=False)
    if plot_file is not None:
        from git_theta.diffs.plot import plot

        shown = [select(d, sort, threshold) for d in diffs]
        plot(diffs, shown, _title(diffs, old, new, top), Path(plot_file), plot_by, plot_scale)
        click.echo(f"git-theta: plot written to {plot_file}", err=True)


def _title(diffs: list[CheckpointDiff], old: Target, new: Target, top: Path) -> str:
    """What was compared: the checkpoint (or how many) and both sides, a revision with its commit."""
    sides = []
    for target in (old, new):
        commit = run("rev-parse", "--short", target.rev, cwd=str(top), check=False) if target.rev else None
        short = commit.stdout.decode().strip() if commit is not None and commit.returncode == 0 else ""
        sides.append(f"{target.label} ({short})" if short and short != target.label else target.label)
    what = diffs[0].label if len(diffs) == 1 else f"{len(diffs)} checkpoints"
    return f"{what}: {sides[0]} -> {sides[1]}"

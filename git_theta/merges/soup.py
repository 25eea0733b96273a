"""``git theta merge --strategy greedy-soup --eval CMD REV...``: the greedy soup of Wortsman et al. (2022), "Model
soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference time", recipe 1.

The ingredients (the revisions, and HEAD unless excluded) are scored alone and ranked, best first; starting from
the best, each next one is kept when the uniform average of the kept ones and it scores at least as well as the kept
ones did. The merge commit's parents are HEAD and the kept ingredients; its trailers record every score.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from git_theta.git import merging
from git_theta.merges.base import MergeError, load_strategy
from git_theta.merges.candidates import SOUP, Workspace
from git_theta.merges.choose import Chooser
from git_theta.merges.nway import merge_revisions
from git_theta.merges.provenance import GREEDY_SOUP
from git_theta.merges.recorded import SCORE_TRAILER

T = TypeVar("T")
#: A number as evaluation scripts print them (the last one printed is the score).
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


class EvaluationError(MergeError):
    """The evaluation command failed or printed no score."""


def greedy(
    ingredients: list[T], score_one: Callable[[T], float], score_soup: Callable[[list[T]], float], minimize: bool
) -> list[tuple[T, float, float, bool]]:
    """Rank ``ingredients`` by their own score, then keep each that does not make the soup worse; return
    ``(ingredient, own score, soup score, kept)`` in the order they were tried."""
    sign = -1.0 if minimize else 1.0
    own = [(score_one(ingredient), index) for index, ingredient in enumerate(ingredients)]
    ranked = sorted(own, key=lambda pair: (-sign * pair[0], pair[1]))  # best first; ties keep the given order
    first_score, first = ranked[0]
    soup, best = [ingredients[first]], first_score
    tried = [(ingredients[first], first_score, first_score, True)]
    for score, index in ranked[1:]:
        candidate = score_soup([*soup, ingredients[index]])
        kept = sign * candidate >= sign * best
        if kept:
            soup, best = [*soup, ingredients[index]], candidate
        tried.append((ingredients[index], score, candidate, kept))
    return tried


def greedy_soup(
    revs: list[str], command: str, minimize: bool, include_head: bool, message: str | None, cwd: str
) -> str | None:
    """Make the greedy soup of ``revs`` (and HEAD) and commit it; return the commit, or None when only HEAD is kept."""
    if "{}" not in command:
        raise MergeError("--eval needs {} in the command: it is replaced by the directory of the candidate")
    head = merging.resolve_commit("HEAD", cwd)
    if head is None:
        raise MergeError("HEAD is not a commit yet; commit the model the fine-tunes start from first")
    names: dict[str, str] = {head: "HEAD"} if include_head else {}
    for rev in revs:
        commit = merging.resolve_commit(rev, cwd)
        if commit is None:
            raise MergeError(f"{rev!r} is not a commit; name branches, tags or commits to merge")
        names.setdefault(commit, rev)
    if len(names) < 2:
        raise MergeError("a greedy soup needs at least two ingredients (the revisions, and HEAD unless excluded)")
    if not merging.is_clean(cwd):
        raise MergeError("the index or working tree has changes; commit or stash them before git theta merge")
    runs = Progress(2 * len(names) - 1, names)
    with Workspace(head, cwd) as work:
        tried = greedy(
            list(names),
            lambda commit: runs.score(command, work.ingredient(commit), [commit], cwd),
            lambda commits: runs.score(command, work.soup(commits), commits, cwd),
            minimize,
        )
    return _commit(head, names, tried, command, minimize, message, cwd)


def _commit(
    head: str,
    names: dict[str, str],
    tried: list[tuple[str, float, float, bool]],
    command: str,
    minimize: bool,
    message: str | None,
    cwd: str,
) -> str | None:
    kept = [commit for commit, _, _, keep in tried if keep]
    others = [commit for commit in kept if commit != head]
    if not others:
        _say("only HEAD is kept: nothing to merge")
        return None
    lines = [f"Theta-Merge-Eval: {command}", f"Theta-Merge-Objective: {'minimize' if minimize else 'maximize'}"]
    lines += [
        f"{SCORE_TRAILER}: {commit} own={own:.6g} soup={soup:.6g} {'kept' if keep else 'rejected'}"
        for commit, own, soup, keep in tried
    ]
    rejected = [names[commit] for commit, _, _, keep in tried if not keep]
    text = message or f"Greedy soup of {', '.join(names[commit] for commit in kept)} (git theta merge)"
    if rejected and not message:
        text += f"\n\nRejected: {', '.join(rejected)}"
    weights = {"HEAD": 1.0 if head in kept else 0.0}
    chooser = Chooser(load_strategy(SOUP))
    return merge_revisions(others, chooser, weights, text, cwd, soup=(GREEDY_SOUP, lines))


class Progress:
    """Runs the evaluation command and tells how far the soup has got."""

    def __init__(self, total: int, names: dict[str, str]) -> None:
        self.done, self.total, self.names = 0, total, names

    def score(self, command: str, directory: Path, commits: list[str], cwd: str) -> float:
        """Evaluate the candidate in ``directory``: the last number the command prints on its standard output."""
        self.done += 1
        what = " + ".join(self.names[commit] for commit in commits)
        _say(f"[{self.done}/{self.total}] evaluating {what}")
        score = evaluate(command, directory, cwd)
        _say(f"[{self.done}/{self.total}] {what}: {score:.6g}")
        return score


def evaluate(command: str, directory: Path, cwd: str) -> float:
    """Run ``command`` with ``{}`` replaced by ``directory`` from ``cwd``; its score is the last number it prints."""
    line = command.replace("{}", shlex.quote(str(directory)))
    process = subprocess.Popen(line, shell=True, cwd=cwd, stdout=subprocess.PIPE, text=True, errors="replace")
    assert process.stdout is not None
    printed = []
    for text in process.stdout:  # shown as it comes: an evaluation can take long
        printed.append(text)
        sys.stderr.write(f"    {text}")
    if process.wait() != 0:
        raise EvaluationError(f"the evaluation command exited with {process.returncode}: {line}; nothing was merged")
    numbers = _NUMBER.findall("".join(printed))
    if not numbers:
        raise EvaluationError(f"the evaluation command printed no number (its score): {line}; nothing was merged")
    return float(numbers[-1])


def _say(message: str) -> None:
    print(f"git-theta: greedy-soup: {message}", file=sys.stderr)

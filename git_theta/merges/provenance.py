"""How a merge was made, recorded where it lasts with the commit (docs/merges.md, "Provenance").

A merge the driver makes (``git merge``, ``cherry-pick``, ``revert``, ``rebase``), or ``git theta merge`` when it
resolves such a merge's conflicts in place, writes a ``merge`` record into the merged checkpoint's metadata::

    {"by": "merge", "from": [OURS, THEIRS], "inputs": [BASE_BLOB, OURS_BLOB, THEIRS_BLOB],
     "merged": {"ties:density=0.2,lambda=1.0": 5}, "patterns": [["*.bias", "ours"]],
     "strategy": "ties:density=0.2,lambda=1.0", "transfer": false}

``git theta merge REV...`` writes the same facts as trailers of its commit message (``Theta-Merge: SPEC``,
``Theta-Merge-Pattern: GLOB=SPEC``, ``Theta-Merge-Weights: W1/W2/...``, and for a greedy soup
``Theta-Merge-Eval``, ``Theta-Merge-Objective`` and one ``Theta-Merge-Score`` per ingredient). Strategies are
written with every option, DARE's seed included, so the record is the recipe: ``git theta merge --replay`` reruns it.
Everything in it is a function of the content and history merged: the same merge writes the same bytes.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Mapping
from typing import Any

from git_theta.merges.base import MergeError, load_strategy
from git_theta.merges.choose import Chooser

#: The trailer that names the strategy of a ``git theta merge`` commit, and its siblings.
STRATEGY_TRAILER = "Theta-Merge"
PATTERN_TRAILER = "Theta-Merge-Pattern"
WEIGHTS_TRAILER = "Theta-Merge-Weights"
#: The strategy name a greedy soup records; its tensors are the (weighted) average of the kept ingredients.
GREEDY_SOUP = "greedy-soup"


def recipe(chooser: Chooser) -> tuple[str | None, list[list[str]]]:
    """The default strategy and the ``[glob, strategy]`` rules that decided, menu answers first (as exact names)."""
    answered = [[_exactly(name), strategy.describe()] for name, strategy in chooser.answers.items()]
    patterns = answered + [[pattern, strategy.describe()] for pattern, strategy in chooser.patterns]
    return (chooser.default.describe() if chooser.default else None), patterns


def _exactly(name: str) -> str:
    """A glob that matches ``name`` only (``=`` escaped too: rules are written GLOB=STRATEGY)."""
    return glob.escape(name).replace("=", "[=]")


def record(chooser: Chooser, merged: Mapping[str, int], facts: dict[str, Any]) -> dict[str, Any]:
    """The ``merge`` record of a checkpoint: the recipe, how many tensors each strategy merged, and ``facts``
    (``by``, ``from``, ``inputs``, ``transfer``, ``weights``; None values are left out)."""
    strategy, patterns = recipe(chooser)
    found = {"strategy": strategy, "patterns": patterns or None, "merged": dict(sorted(merged.items())), **facts}
    return {key: value for key, value in found.items() if value is not None}


def chooser_of(strategy: str | None, patterns: list[list[str]]) -> Chooser:
    """The chooser that a recorded recipe describes (it never asks)."""
    try:
        rules = [(str(glob_), load_strategy(str(spec))) for glob_, spec in patterns]
    except (TypeError, ValueError) as exc:
        raise MergeError(f"a recorded merge has malformed patterns ({exc})") from exc
    spec = "uniform-soup" if strategy == GREEDY_SOUP else strategy
    return Chooser(load_strategy(spec) if spec else None, rules)


def trailers(
    chooser: Chooser, weights: list[float] | None, extra: list[str] | None = None, label: str | None = None
) -> list[str]:
    """The trailers of a ``git theta merge`` commit (``label``: the strategy name to record instead)."""
    strategy, patterns = recipe(chooser)
    strategy = label or strategy
    lines = [f"{STRATEGY_TRAILER}: {strategy}"] if strategy else []
    lines += [f"{PATTERN_TRAILER}: {pattern}={spec}" for pattern, spec in patterns]
    if weights is not None:
        lines.append(f"{WEIGHTS_TRAILER}: " + "/".join(f"{weight:g}" for weight in weights))
    return lines + (extra or [])


def with_trailers(message: str, lines: list[str]) -> str:
    """``message`` with ``lines`` as its last paragraph."""
    return message.rstrip("\n") + ("\n\n" + "\n".join(lines) if lines else "") + "\n"


def parse_trailers(message: str) -> dict[str, list[str]]:
    """The ``Theta-Merge*`` trailers of a commit message: key -> values, in order."""
    found: dict[str, list[str]] = {}
    for line in message.splitlines():
        key, sep, value = line.partition(": ")
        if sep and (key == STRATEGY_TRAILER or key.startswith(STRATEGY_TRAILER + "-")):
            found.setdefault(key, []).append(value.strip())
    return found


def trailer_recipe(found: dict[str, list[str]]) -> tuple[str | None, list[list[str]], list[float] | None]:
    """The default strategy, patterns and weights that trailers record."""
    strategy = found.get(STRATEGY_TRAILER, [None])[-1]
    patterns = [_split_rule(rule) for rule in found.get(PATTERN_TRAILER, [])]
    weights = None
    if WEIGHTS_TRAILER in found:
        try:
            weights = [float(part) for part in found[WEIGHTS_TRAILER][-1].split("/")]
        except ValueError as exc:
            raise MergeError(f"malformed {WEIGHTS_TRAILER} trailer ({exc})") from exc
    return strategy, patterns, weights


def _split_rule(rule: str) -> list[str]:
    glob_, sep, spec = rule.partition("=")
    if not sep:
        raise MergeError(f"malformed {PATTERN_TRAILER} trailer {rule!r}: it must be GLOB=STRATEGY")
    return [glob_, spec]


#: How the log tells each kind of merge: (verb, whether it names the other commit before ours).
_VERBS = {"cherry-pick": "cherry-picked", "revert": "reverted", "rebase": "rebased"}


def describe(found: Mapping[str, Any], short: Callable[[str], str], parents: list[str]) -> str:
    """One line for ``git theta log``: ``merged with ties:density=0.2 from A, B``."""
    merged = found.get("merged") or {}
    specs = ", ".join(f"{spec} ({count} tensor{'s' if count != 1 else ''})" for spec, count in merged.items())
    how = f" with {specs}" if specs else f" with {found['strategy']}" if found.get("strategy") else ""
    sources = [short(commit) for commit in (found.get("from") or parents)]
    kind = found.get("by")
    if kind in _VERBS and len(sources) == 2:
        where = "onto" if kind != "revert" else "on"
        line = f"{_VERBS[kind]} {sources[1]} {where} {sources[0]}{how}"
        return line + (", transferring its change" if found.get("transfer") else "")
    return f"merged{how}" + (f" from {', '.join(sources)}" if sources else "")

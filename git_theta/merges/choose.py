"""Which strategy resolves a conflicting tensor: per-tensor patterns, then a default, then (at a terminal) the user.

Sources, first match wins: patterns from the command line, ``GIT_THETA_MERGE_PATTERNS`` and the multi-valued
``theta.mergePattern`` config key (each ``GLOB=STRATEGY``, the glob matched against the tensor name); then the
default strategy from the command line, ``GIT_THETA_MERGE_STRATEGY`` or ``theta.mergeStrategy``; then the
interactive menu when standard input is a terminal. Otherwise the tensor stays a conflict.

"Apply to all" in the menu holds for the rest of the git command: git runs one merge driver per file, so the answer
is kept in the git directory, with the identity of the git process it belongs to, for the drivers of the next files.
"""

from __future__ import annotations

import json
import os
import sys
from fnmatch import fnmatchcase

from git_theta.errors import GitThetaError
from git_theta.merges.base import Conflict, MergeError, MergeStrategy, load_strategy
from git_theta.merges.menu import Menu

STRATEGY_ENV = "GIT_THETA_MERGE_STRATEGY"
PATTERNS_ENV = "GIT_THETA_MERGE_PATTERNS"
STRATEGY_KEY = "theta.mergeStrategy"
PATTERN_KEY = "theta.mergePattern"
#: In the git directory: the strategy chosen with "apply to all", for the other files of the same git command.
CHOICE_FILE = "theta-merge-choice.json"


class Chooser:
    """Names the strategy for each conflict; "apply to all" in the menu sets the default for the rest."""

    def __init__(
        self,
        default: MergeStrategy | None = None,
        patterns: list[tuple[str, MergeStrategy]] | None = None,
        menu: Menu | None = None,
    ) -> None:
        self.default = default
        self.patterns = patterns or []
        self.menu = menu
        #: The strategies answered in the menu for one tensor each (an answer for all becomes the default).
        self.answers: dict[str, MergeStrategy] = {}

    @classmethod
    def configured(
        cls, strategy: str | None = None, patterns: list[str] | None = None, interactive: bool | None = None
    ) -> Chooser:
        """The chooser the command line, the environment and git config describe."""
        from git_theta.git import config

        rules = [*(patterns or []), *_split(os.environ.get(PATTERNS_ENV, "")), *config.get_all(PATTERN_KEY)]
        spec = strategy or os.environ.get(STRATEGY_ENV, "").strip() or config.get(STRATEGY_KEY)
        if interactive is None:
            interactive = sys.stdin is not None and sys.stdin.isatty()
        default = load_strategy(spec) if spec else (_chosen_for_all() if interactive else None)
        menu = Menu(sys.stdin, sys.stderr) if interactive else None
        return cls(default, [parse_pattern(rule) for rule in rules], menu)

    def preset(self, conflict: Conflict) -> MergeStrategy | None:
        """The strategy that a pattern or the default names for ``conflict``, without asking."""
        for glob, strategy in self.patterns:
            if fnmatchcase(conflict.name, glob):
                return strategy
        return self.default

    def rescales_lone_changes(self, transfer: bool = False) -> bool:
        """Tell whether a configured strategy merges tensors that only one side changed (LiNeS; picks)."""
        configured = [strategy for _, strategy in self.patterns] + ([self.default] if self.default else [])
        return any(strategy.rescales_lone_change(transfer) for strategy in configured)

    def __call__(self, path: str, conflict: Conflict) -> MergeStrategy | None:
        strategy = self.preset(conflict)
        if strategy is not None:
            return strategy
        if self.menu is None:
            return None
        strategy, apply_to_all = self.menu.ask(path, conflict)
        if apply_to_all and strategy is not None:
            self.default = strategy
            _choose_for_all(strategy)
        elif strategy is not None:
            self.answers[conflict.name] = strategy
        return strategy


def _chosen_for_all() -> MergeStrategy | None:
    """The strategy chosen with "apply to all" for an earlier file of this git command, if any."""
    from git_theta.git.invocation import parent_git_identity
    from git_theta.git.repo import git_dir

    identity = parent_git_identity()
    if identity is None:
        return None
    try:
        record = json.loads((git_dir() / CHOICE_FILE).read_text())
        return load_strategy(record["strategy"]) if record.get("git") == identity else None
    except (OSError, ValueError, KeyError, TypeError, GitThetaError):  # unreadable or stale: ask again
        return None


def _choose_for_all(strategy: MergeStrategy) -> None:
    """Keep ``strategy`` for the other files of this git command (where the git process can be identified)."""
    from git_theta.git.invocation import parent_git_identity
    from git_theta.git.repo import git_dir

    identity = parent_git_identity()
    if identity is None:
        return
    try:
        path = git_dir() / CHOICE_FILE
    except GitThetaError:
        return
    temporary = path.with_name(f"{CHOICE_FILE}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"git": identity, "strategy": strategy.describe()}))
        os.replace(temporary, path)
    except OSError:  # not remembered: the next file's driver asks again, which is all that is lost
        temporary.unlink(missing_ok=True)


def parse_pattern(rule: str) -> tuple[str, MergeStrategy]:
    """Parse ``GLOB=STRATEGY``."""
    glob, sep, spec = rule.partition("=")
    if not sep or not glob.strip() or not spec.strip():
        raise MergeError(f"merge pattern {rule!r} must be GLOB=STRATEGY, e.g. '*.bias=ours'")
    return glob.strip(), load_strategy(spec)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", ";").split(";") if item.strip()]

"""The interactive menu: one question per conflicting tensor, with "apply to all"."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from git_theta import plugins
from git_theta.errors import GitThetaError
from git_theta.merges.base import Conflict, MergeStrategy, load_strategy

if TYPE_CHECKING:
    from git_theta.metadata import TensorEntry


class Menu:
    """Asks on a terminal which strategy resolves a conflict; answers a number or a strategy, '!' for all."""

    def __init__(self, answers: TextIO, out: TextIO) -> None:
        self.answers = answers
        self.out = out

    def ask(self, path: str, conflict: Conflict) -> tuple[MergeStrategy | None, bool]:
        """Return the strategy chosen (None: leave it a conflict) and whether it applies to all remaining tensors."""
        choices = [s for s in (load_strategy(n) for n in plugins.names(plugins.MERGES)) if not s.unsuitable(conflict)]
        self._show(path, conflict, choices)
        while True:
            self.out.write("strategy [number or name, '!' to apply to all remaining tensors, q to leave it]: ")
            self.out.flush()
            line = self.answers.readline()
            if not line:
                return None, False
            answer = line.strip()
            apply_to_all = answer.endswith("!")
            answer = answer.rstrip("!").strip()
            if answer in ("q", ""):
                return None, apply_to_all
            try:
                if answer.isdigit() and 1 <= int(answer) <= len(choices):
                    return choices[int(answer) - 1], apply_to_all
                strategy = load_strategy(answer)
            except GitThetaError as exc:
                self.out.write(f"  {exc}\n")
                continue
            reason = strategy.unsuitable(conflict)
            if reason is None:
                return strategy, apply_to_all
            self.out.write(f"  {strategy.name} cannot merge it: {reason}\n")

    def _show(self, path: str, conflict: Conflict, choices: list[MergeStrategy]) -> None:
        versions = [conflict.base, *conflict.sides]
        others = ["theirs"] if len(conflict.sides) == 2 else [f"#{i}" for i in range(2, len(conflict.sides) + 1)]
        labels = ["base", "ours", *others]
        described = ", ".join(f"{label}: {_describe(entry)}" for label, entry in zip(labels, versions, strict=True))
        self.out.write(f"\ngit-theta: {path}: tensor {conflict.name!r} changed on both sides ({described})\n")
        for number, strategy in enumerate(choices, 1):
            self.out.write(f"  {number}) {strategy.name:<16} {strategy.summary}\n")


def _describe(entry: TensorEntry | None) -> str:
    if entry is None:
        return "absent"
    return f"{entry.dtype}{list(entry.shape)}"

"""The greedy soup's choice (Wortsman et al., 2022, recipe 1) and how a score is read from an evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from git_theta.merges.candidates import soup_sides
from git_theta.merges.soup import EvaluationError, evaluate, greedy

SCORES = {"a": 0.70, "b": 0.80, "c": 0.75, "d": 0.60}
SOUPS = {("b", "c"): 0.82, ("b", "c", "a"): 0.81, ("b", "c", "d"): 0.82}


def run(minimize: bool = False):
    return greedy(list(SCORES), SCORES.__getitem__, lambda soup: SOUPS[tuple(soup)], minimize)


def test_ingredients_are_ranked_and_kept_when_the_soup_does_not_get_worse() -> None:
    assert run() == [
        ("b", 0.80, 0.80, True),
        ("c", 0.75, 0.82, True),
        ("a", 0.70, 0.81, False),
        ("d", 0.60, 0.82, True),  # as good as before: kept (at least as well)
    ]


def test_minimize_flips_the_order_and_the_test() -> None:
    soups = {("d", "a"): 0.65, ("d", "c"): 0.55, ("d", "c", "b"): 0.56}
    tried = greedy(list(SCORES), SCORES.__getitem__, lambda soup: soups[tuple(soup)], True)
    assert [(name, kept) for name, _, _, kept in tried] == [("d", True), ("a", False), ("c", True), ("b", False)]


def test_equal_scores_keep_the_given_order() -> None:
    tried = greedy(["x", "y"], lambda name: 1.0, lambda soup: 0.0, False)
    assert [name for name, *_ in tried] == ["x", "y"]


def test_soup_sides_weigh_head_only_when_it_is_an_ingredient() -> None:
    assert soup_sides("h", ["a", "b"]) == (["h", "a", "b"], [0.0, 1.0, 1.0])
    assert soup_sides("h", ["a", "h"]) == (["h", "a"], [1.0, 1.0])


def test_the_score_is_the_last_number_printed(tmp_path: Path) -> None:
    assert evaluate("echo step 10 of {}; echo 'accuracy: 0.93'", tmp_path, str(tmp_path)) == 0.93
    assert evaluate("echo loss -1.5e-3", tmp_path, str(tmp_path)) == -1.5e-3
    with pytest.raises(EvaluationError, match="printed no number"):
        evaluate("echo done", tmp_path, str(tmp_path))
    with pytest.raises(EvaluationError, match="exited with 2"):
        evaluate("exit 2", tmp_path, str(tmp_path))

"""The record of how a merge was made: its format (pinned by a golden file), trailers, and what the log says."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from git_theta.merges.base import load_strategy
from git_theta.merges.choose import Chooser, parse_pattern
from git_theta.merges.provenance import (
    chooser_of,
    describe,
    parse_trailers,
    recipe,
    record,
    trailer_recipe,
    trailers,
    with_trailers,
)
from git_theta.metadata import CheckpointMetadata
from tests.unit.test_metadata import GOLDEN, check_golden

RECORD = {
    "by": "cherry-pick",
    "from": ["1" * 40, "2" * 40],
    "inputs": ["3" * 40, "4" * 40, "5" * 40],
    "merged": {"task-arithmetic:lambda=0.8": 3},
    "strategy": "task-arithmetic:lambda=0.8",
    "transfer": True,
}


def test_the_merge_record_is_one_more_line_of_the_metadata() -> None:
    plain = (GOLDEN / "safetensors.metadata.json").read_bytes()
    metadata = CheckpointMetadata.loads(plain)
    assert metadata.merge is None and metadata.dumps() == plain  # files without a record keep their bytes
    metadata.merge = RECORD
    merged = metadata.dumps()
    check_golden("merge-record.json", merged)
    assert merged.startswith(plain[: plain.rindex(b"\n}")]) and CheckpointMetadata.loads(merged).merge == RECORD
    assert CheckpointMetadata.loads(merged).same_checkpoint(CheckpointMetadata.loads(plain))


def test_menu_answers_are_recorded_as_exact_names() -> None:
    chooser = Chooser(load_strategy("ties"), [parse_pattern("*.bias=ours")])
    chooser.answers["blocks[0]=*w"] = load_strategy("average")
    strategy, patterns = recipe(chooser)
    assert strategy == "ties:density=0.2,lambda=1.0"
    assert patterns == [["blocks[[]0][=][*]w", "average"], ["*.bias", "ours"]]
    assert fnmatchcase("blocks[0]=*w", patterns[0][0]) and not fnmatchcase("blocks0=xw", patterns[0][0])
    replayed = chooser_of(strategy, patterns)
    assert [(glob, s.describe()) for glob, s in replayed.patterns] == [tuple(p) for p in patterns]
    assert record(chooser, {"average": 1}, {"by": "merge", "from": None}) == {
        "by": "merge",
        "merged": {"average": 1},
        "patterns": patterns,
        "strategy": strategy,
    }


def test_trailers_round_trip() -> None:
    chooser = Chooser(load_strategy("dare:seed=3"), [parse_pattern("emb*=theirs")])
    lines = trailers(chooser, [0.0, 1.0, 2.5])
    message = with_trailers("Merge a, b\n", lines)
    assert message == (
        "Merge a, b\n\nTheta-Merge: dare:drop=0.9,seed=3,lambda=1.0,then=task-arithmetic,density=1.0\n"
        "Theta-Merge-Pattern: emb*=theirs\nTheta-Merge-Weights: 0/1/2.5\n"
    )
    strategy, patterns, weights = trailer_recipe(parse_trailers(message))
    assert (strategy, patterns, weights) == (lines[0].split(": ")[1], [["emb*", "theirs"]], [0.0, 1.0, 2.5])
    assert chooser_of("greedy-soup", []).default.name == "uniform-soup"  # a soup replays as the average it made


def test_what_the_log_says() -> None:
    short = lambda commit: commit[:4]  # noqa: E731
    assert describe(RECORD, short, ["9" * 40]) == (
        "cherry-picked 2222 onto 1111 with task-arithmetic:lambda=0.8 (3 tensors), transferring its change"
    )
    merge = {"by": "merge", "merged": {"ours": 1}, "strategy": "ours"}
    assert describe(merge, short, ["aaaaaa", "bbbbbb"]) == "merged with ours (1 tensor) from aaaa, bbbb"
    assert describe({"by": "revert", "from": ["c" * 8, "d" * 8]}, short, []) == "reverted dddd on cccc"
    assert describe({"strategy": "ties"}, short, ["e" * 8]) == "merged with ties from eeee"


def test_the_record_golden_file_is_in_place() -> None:
    assert Path(GOLDEN / "merge-record.json").exists()

"""One long-lived ``git check-attr`` answers for path after path, as a process per path would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from git_theta.git.attributes import CHECKPOINT_ATTRIBUTE, FILTER_ATTRIBUTE, AttributeReader, check_attr


def test_the_reader_answers_each_path_as_check_attr_does(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitattributes").write_text("*.bin theta-checkpoint=npz\nsub/** theta-checkpoint=torch\n")
    paths = ["model.bin", "model.safetensors", "sub/a b.pt", "odd\nname.bin", "sub/deeper/x.bin"]
    reader = AttributeReader(CHECKPOINT_ATTRIBUTE, cwd=str(tmp_path))
    try:
        reader.start()
        answers = {path: reader.value(path) for path in paths}
        assert reader.value("model.bin") == "npz"  # asked again: the same process answers again
    finally:
        reader.close()
    assert answers == check_attr(CHECKPOINT_ATTRIBUTE, paths, cwd=str(tmp_path))
    assert answers["model.safetensors"] == "unspecified" and answers["sub/a b.pt"] == "torch"


def test_the_reader_answers_several_attributes_per_path(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitattributes").write_text("*.bin filter=theta theta-checkpoint=npz\n*.pt filter=lfs\n")
    paths = ["a.bin", "b.pt", "c.txt", "d e.bin"]
    reader = AttributeReader(CHECKPOINT_ATTRIBUTE, FILTER_ATTRIBUTE, cwd=str(tmp_path))
    try:
        answers = {path: reader.values(path) for path in paths}
        first = {path: reader.value(path) for path in paths}  # value() is the first attribute's
    finally:
        reader.close()
    for attribute in (CHECKPOINT_ATTRIBUTE, FILTER_ATTRIBUTE):
        expected = check_attr(attribute, paths, cwd=str(tmp_path))
        assert {path: values[attribute] for path, values in answers.items()} == expected
    assert first == check_attr(CHECKPOINT_ATTRIBUTE, paths, cwd=str(tmp_path))
    assert answers["d e.bin"] == {CHECKPOINT_ATTRIBUTE: "npz", FILTER_ATTRIBUTE: "theta"}

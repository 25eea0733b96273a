"""End to end: every read of an object is verified; a changed byte anywhere, header included, never gives wrong bytes.

Each damaged object makes the command fail with one line naming the object and the file, and writes nothing.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, random_model, save_safetensors, theta

F = "model.safetensors"


def object_path(repo: Path, oid: str) -> Path:
    return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def tensor_entry(repo: Path, name: str, rev: str = "HEAD") -> dict:
    return json.loads(git("show", f"{rev}:{F}", cwd=repo).stdout)["tensors"][name]


def edit_header(path: Path, field: str) -> None:
    """Change one character of a header field's value, keeping the header's length and its JSON valid."""
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<I", data[8:12])
    header = data[12 : 12 + length].decode()
    at = header.index(f'"{field}":') + len(field) + 3
    if header[at - 1] == '"':  # a string value: change a character inside it
        at = header.index(":", at) + 1 if field == "hash" else at
    old = header[at]
    new = {"z": "r", "r": "z"}.get(old) or ("2" if old != "2" else "8")
    data[12 + at] = ord(new)
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def one_error(stderr: bytes) -> str:
    lines = [line for line in stderr.decode().splitlines() if line.startswith("git-theta:")]
    assert len(lines) == 1 and b"Traceback" not in stderr, stderr.decode()
    return lines[0]


@pytest.fixture
def committed(repo: Path) -> tuple[Path, bytes, dict]:
    model = random_model(seed=3, width=256)
    save_safetensors(repo / F, model)
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    return repo, (repo / F).read_bytes(), tensor_entry(repo, "layer0.weight")


@pytest.mark.parametrize("field", ["group", "block", "size", "hash", "codec"])
def test_a_changed_header_field_fails_the_checkout_and_writes_nothing(committed, field: str) -> None:
    repo, original, entry = committed
    edit_header(object_path(repo, entry["oid"]), field)
    (repo / F).unlink()
    result = git("checkout", "--", F, cwd=repo, check=False)
    if result.returncode == 0:  # only a change that cannot alter the tensor may pass, and then exactly
        assert (repo / F).read_bytes() == original
        return
    error = one_error(result.stderr)
    assert entry["oid"][:12] in error and F in error
    assert not (repo / F).exists()


def test_a_changed_byte_group_is_never_a_silent_wrong_byte(committed) -> None:
    repo, _, entry = committed
    edit_header(object_path(repo, entry["oid"]), "group")  # "group":4 -> "group":2 decodes, to other bytes
    (repo / F).unlink()
    result = git("checkout", "--", F, cwd=repo, check=False)
    assert result.returncode != 0
    assert "corrupt" in one_error(result.stderr)


def test_every_reader_of_a_damaged_object_fails_with_one_line(committed) -> None:
    repo, _, entry = committed
    model = random_model(seed=3, width=256)
    model["layer0.weight"] = model["layer0.weight"] * 2
    save_safetensors(repo / F, model)
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", "changed", cwd=repo)
    git("checkout", "-q", "-b", "side", "HEAD~1", cwd=repo)
    model["layer0.weight"] = model["layer0.weight"] * 3
    save_safetensors(repo / F, model)
    git("commit", "-q", "-am", "side", cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    edit_header(object_path(repo, entry["oid"]), "group")

    diff = theta("diff", "HEAD~1", "HEAD", cwd=repo, check=False)
    assert diff.returncode != 0 and entry["oid"][:12] in one_error(diff.stderr)
    merge = git("merge", "--no-edit", "side", cwd=repo, check=False, env={"GIT_THETA_MERGE_STRATEGY": "average"})
    assert merge.returncode != 0 and F in one_error(merge.stderr)
    assert len(git("rev-list", "--parents", "-1", "HEAD", cwd=repo).stdout.split()) == 2  # no merge commit


def make_wrong_by_group(raw: bytes, group: int, wrong: int, block: int = 1 << 20) -> bytes:
    """What a reader that trusts a header whose byte group was changed from ``group`` to ``wrong`` decodes."""
    out = bytearray()
    for at in range(0, len(raw), block):
        chunk = np.frombuffer(raw[at : at + block], np.uint8)
        grouped = chunk.reshape(-1, group).T.ravel()
        out += grouped.reshape(wrong, -1).T.ravel().tobytes()
    return bytes(out)


def test_a_damaged_keyframe_is_not_built_on(repo: Path) -> None:
    """A fine-tune is stored against its keyframe only when the keyframe is intact; else the tensor is stored whole.

    The new value is close to what the damaged keyframe decodes to, so a delta from it would look cheap.
    """
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((1536, 1024), dtype=np.float32)  # 6 MiB: judged on samples, its delta streamed
    save_safetensors(repo / F, {"w": weight})
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    keyframe = tensor_entry(repo, "w")
    edit_header(object_path(repo, keyframe["oid"]), "group")
    misread = np.frombuffer(make_wrong_by_group(weight.tobytes(), 4, 2), np.uint32).copy()
    misread[::7] += 1  # a fine-tune of what the damaged keyframe decodes to
    save_safetensors(repo / F, {"w": misread.view(np.float32).reshape(weight.shape)})
    expected = (repo / F).read_bytes()
    git("add", F, cwd=repo)
    git("commit", "-q", "-m", "fine-tune", cwd=repo)
    assert tensor_entry(repo, "w").get("update", "dense") == "dense"
    (repo / F).unlink()
    git("checkout", "--", F, cwd=repo)
    assert (repo / F).read_bytes() == expected

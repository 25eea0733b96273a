"""End to end: bad input fails loudly with one clear line, and leaves the index and working tree as they were."""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, random_model, save_safetensors


def commit_model(repo: Path) -> bytes:
    save_safetensors(repo / "model.safetensors", random_model())
    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)
    return (repo / "model.safetensors").read_bytes()


def theta_errors(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if line.startswith("git-theta:")]


#: Runs a command and writes the peak resident memory of its largest descendant (the filter), in KiB, to a file.
PEAK_MEMORY = (
    "import resource, subprocess, sys; result = subprocess.run(sys.argv[2:], capture_output=True); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.stdout.buffer.write(result.stdout); sys.stderr.buffer.write(result.stderr); sys.exit(result.returncode)"
)


def add_measuring_memory(repo: Path, path: str) -> tuple[subprocess.CompletedProcess, int]:
    """``git add path``, and the peak memory (MiB) of the largest process it ran: git or the filter."""
    report = repo.parent / "peak-memory"
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(report), "git", "add", path], cwd=repo, capture_output=True
    )
    return result, int(report.read_text()) // 1024


def assert_add_fails_cleanly(repo: Path, path: str, expected: str) -> int:
    """``git add path`` fails with one line naming the file and ``expected``, changing nothing; return its peak MiB."""
    index_before = git("ls-files", "-s", cwd=repo).stdout
    content_before = (repo / path).read_bytes()
    result, peak = add_measuring_memory(repo, path)
    assert result.returncode != 0
    errors = theta_errors(result.stderr)
    assert len(errors) == 1, result.stderr.decode()
    assert path in errors[0] and expected in errors[0]
    assert b"Traceback" not in result.stderr
    assert git("ls-files", "-s", cwd=repo).stdout == index_before
    assert (repo / path).read_bytes() == content_before
    return peak


@pytest.mark.parametrize("cut", [4, 20, 200, -5])
def test_truncated_safetensors_is_refused(repo: Path, cut: int) -> None:
    data = commit_model(repo)
    (repo / "model.safetensors").write_bytes(data[:cut])
    assert_add_fails_cleanly(repo, "model.safetensors", "truncated" if cut != 4 else "")


def test_corrupt_header_is_refused(repo: Path) -> None:
    data = bytearray(commit_model(repo))
    data[8:12] = b"!!!!"
    (repo / "model.safetensors").write_bytes(bytes(data))
    assert_add_fails_cleanly(repo, "model.safetensors", "not a valid safetensors file")


def safetensors_header(entry: dict) -> bytes:
    """A safetensors file of one tensor ``w`` described by ``entry``, and no data."""
    header = json.dumps({"w": entry}).encode()
    return struct.pack("<Q", len(header)) + header


def test_a_2_gib_tensor_claimed_in_88_bytes_is_refused_without_allocating_it(repo: Path) -> None:
    bomb = safetensors_header({"dtype": "F32", "shape": [1 << 29], "data_offsets": [0, 1 << 31]})
    assert len(bomb) < 100
    (repo / "bomb.safetensors").write_bytes(bomb)
    peak = assert_add_fails_cleanly(repo, "bomb.safetensors", "truncated")
    assert peak < 200, f"the filter took {peak} MiB to refuse a file of {len(bomb)} bytes"


def test_an_npz_array_claimed_in_a_few_bytes_is_refused_without_allocating_it(repo: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 29,)})
    with zipfile.ZipFile(repo / "bomb.npz", "w") as archive:
        archive.writestr("w.npy", header.getvalue())
    peak = assert_add_fails_cleanly(repo, "bomb.npz", "truncated")
    assert peak < 300, f"the filter took {peak} MiB to refuse a file of a few bytes"


@pytest.mark.parametrize(
    ("shape", "offsets"),
    [([True], [0, 4]), ([1 << 62], [0, 1 << 64]), ([1.0], [0, 4]), ("4", [0, 4])],
    ids=["[true]", "2^62", "float", "string"],
)
def test_impossible_shapes_are_refused_as_invalid(repo: Path, shape: object, offsets: list[int]) -> None:
    data = safetensors_header({"dtype": "F32", "shape": shape, "data_offsets": offsets}) + bytes(offsets[1] % 64)
    (repo / "model.safetensors").write_bytes(data)
    assert_add_fails_cleanly(repo, "model.safetensors", "invalid safetensors file")


def test_non_checkpoint_matched_by_pattern_is_refused(repo: Path) -> None:
    (repo / "notes.safetensors").write_text("these are my notes, not a model\n")
    assert_add_fails_cleanly(repo, "notes.safetensors", "safetensors")


def test_unknown_format_names_the_file_and_what_to_do(repo: Path) -> None:
    git("config", "--global", "core.attributesFile", str(repo / ".extra-attributes"), cwd=repo)
    (repo / ".extra-attributes").write_text("*.weights filter=theta\n")
    (repo / "model.weights").write_bytes(os.urandom(5000))
    assert_add_fails_cleanly(repo, "model.weights", "--checkpoint-type")


def test_malicious_pickle_is_never_unpickled(repo: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": torch.ones(2), "evil": Exploit()}, repo / "evil.pt", pickle_module=pickle)
    assert_add_fails_cleanly(repo, "evil.pt", "cannot load it safely")
    assert not marker.exists()


def test_missing_object_fails_checkout_without_writing_a_broken_file(repo: Path) -> None:
    commit_model(repo)
    for oid in lfs_objects(repo):
        (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
        break
    (repo / "model.safetensors").unlink()
    result = git("checkout", "--", "model.safetensors", cwd=repo, check=False)
    assert result.returncode != 0
    errors = theta_errors(result.stderr)
    assert len(errors) == 1 and "model.safetensors" in errors[0] and "tensor object" in errors[0]
    assert b"Traceback" not in result.stderr
    assert not (repo / "model.safetensors").exists()


def test_corrupt_object_is_detected_on_checkout(repo: Path) -> None:
    original = commit_model(repo)
    oid = sorted(lfs_objects(repo))[0]
    path = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    (repo / "model.safetensors").unlink()
    result = git("checkout", "--", "model.safetensors", cwd=repo, check=False)
    assert result.returncode != 0
    errors = theta_errors(result.stderr)
    assert len(errors) == 1 and "corrupt" in errors[0], result.stderr.decode()
    assert not (repo / "model.safetensors").exists() or (repo / "model.safetensors").read_bytes() == original


def test_debug_shows_a_traceback(repo: Path) -> None:
    (repo / "bad.safetensors").write_text("not a model")
    result = git("add", "bad.safetensors", cwd=repo, check=False, env={"GIT_THETA_DEBUG": "1"})
    assert result.returncode != 0 and b"Traceback" in result.stderr


def test_unknown_checkpoint_type_lists_the_known_ones(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model())
    result = git("theta", "add", "model.safetensors", "--checkpoint-type", "nope", cwd=repo, check=False)
    assert result.returncode != 0
    assert theta_errors(result.stderr) == [
        "git-theta: error: unknown checkpoints plugin 'nope' (available: flax, gguf, npz, safetensors, torch)"
    ]


def test_a_full_disk_fails_the_add_cleanly_and_a_retry_works(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model(width=256))
    index_before = git("ls-files", "-s", cwd=repo).stdout
    # ulimit -f makes every write past 64 KiB fail (EFBIG), as a full disk would (ENOSPC).
    limited = subprocess.run(["bash", "-c", "ulimit -f 64 && git add model.safetensors"], cwd=repo, capture_output=True)
    assert limited.returncode != 0
    errors = theta_errors(limited.stderr)
    assert len(errors) == 1 and "model.safetensors: File too large" in errors[0], limited.stderr.decode()
    assert "free some disk space" in errors[0]
    assert b"Traceback" not in limited.stderr
    assert git("ls-files", "-s", cwd=repo).stdout == index_before
    assert list((repo / ".git" / "lfs" / "tmp").glob("*")) == []  # no half-written object left behind

    git("add", "model.safetensors", cwd=repo)
    git("commit", "-q", "-m", "after the disk was freed", cwd=repo)
    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def full_disk_after(size: int):
    """A ``preexec_fn`` that makes every write past ``size`` bytes fail with EFBIG, as a full disk fails with ENOSPC."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_a_full_disk_leaves_no_partial_object_of_a_large_tensor(repo: Path) -> None:
    rng = np.random.default_rng(0)
    model = {f"w{i}": rng.standard_normal((1024, 1024), dtype=np.float32) for i in range(3)}  # streamed: 4 MiB each
    save_safetensors(repo / "model.safetensors", model)
    limited = subprocess.run(
        ["git", "add", "model.safetensors"], cwd=repo, capture_output=True, preexec_fn=full_disk_after(1 << 20)
    )
    assert limited.returncode != 0
    errors = theta_errors(limited.stderr)
    assert len(errors) == 1 and "model.safetensors: File too large" in errors[0], limited.stderr.decode()
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b""
    assert list((repo / ".git" / "lfs" / "tmp").glob("*")) == []  # no half-written object left behind

    git("add", "model.safetensors", cwd=repo)
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b"model.safetensors\n"

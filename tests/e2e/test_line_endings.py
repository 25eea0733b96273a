"""End to end: git's line-ending conversion (core.autocrlf, core.eol, text=auto) never touches tracked checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import git, random_model, save_safetensors, theta

OLD_LINE = "*.safetensors filter=theta diff=theta merge=theta"


@pytest.mark.parametrize(
    ("settings", "attributes"),
    [({"core.autocrlf": "true"}, ""), ({"core.eol": "crlf"}, "* text=auto\n")],
    ids=["autocrlf", "eol-crlf-text-auto"],
)
def test_checkpoints_round_trip_byte_for_byte_under_crlf_conversion(
    repo: Path, installed: Path, tmp_path: Path, settings: dict[str, str], attributes: str
) -> None:
    for key, value in settings.items():  # global, as Git for Windows sets core.autocrlf: the clones have it too
        git("config", "--global", key, value, cwd=installed)
    gitattributes = repo / ".gitattributes"
    gitattributes.write_text(attributes + gitattributes.read_text())
    save_safetensors(repo / "model.safetensors", random_model())
    (repo / "notes.txt").write_text("a\nb\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    metadata = git("show", "HEAD:model.safetensors", cwd=repo).stdout
    assert metadata.startswith(b"{\n") and b"\r" not in metadata

    full = tmp_path / "full"
    git("clone", "-q", str(repo), str(full), cwd=tmp_path)
    lazy = tmp_path / "lazy"
    git("clone", "-q", str(repo), str(lazy), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})
    assert (full / "notes.txt").read_bytes() == b"a\r\nb\r\n"  # the conversion is on for ordinary text
    assert (full / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert (lazy / "model.safetensors").read_bytes() == metadata  # a lazy checkout's working file is the metadata
    for clone in (full, lazy):
        assert git("status", "--porcelain", cwd=clone).stdout == b""

    theta("pull", cwd=lazy)
    assert (lazy / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert git("status", "--porcelain", cwd=lazy).stdout == b""


def test_track_upgrades_old_lines_in_place_and_fsck_flags_them(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git("init", "-q", str(repo), cwd=tmp_path)
    lines = [
        "# models",
        OLD_LINE,
        "*.txt text eol=lf",
        "*.ckpt filter=theta diff=theta merge=theta theta-checkpoint=torch",
    ]
    (repo / ".gitattributes").write_bytes("".join(f"{line}\r\n" for line in lines).encode())
    (repo / "weights").mkdir()
    (repo / "weights" / ".gitattributes").write_text("*.w filter=theta\n")
    git("add", "-A", cwd=repo)

    checked = theta("fsck", cwd=repo, check=False)
    out = checked.stdout.decode()
    assert checked.returncode == 1
    assert (
        f".gitattributes:2: {OLD_LINE!r} lacks -text, so with core.autocrlf or core.eol=crlf git converts the line "
        "endings of the metadata and checkouts break; run: git theta track '*.safetensors'\n"
    ) in out
    assert f".gitattributes:4: {lines[3]!r} lacks -text" in out
    assert "weights/.gitattributes:1: '*.w filter=theta' lacks -text" in out and out.endswith("add -text at its end\n")
    assert checked.stderr.decode() == (
        "git-theta: error: 3 attributes line(s) lack -text; each is listed above with what to do\n"
    )

    tracked = theta("track", "*.safetensors", cwd=repo).stdout.decode()
    assert f"git-theta: {OLD_LINE!r} upgraded: -text added, so git never converts its line endings" in tracked
    assert "'*.safetensors' already tracked" in tracked
    lines[1] += " -text"
    lines[3] += " -text"
    assert (repo / ".gitattributes").read_bytes() == "".join(f"{line}\r\n" for line in lines).encode()
    (repo / "weights" / ".gitattributes").write_text("*.w filter=theta -text\n")
    assert "0 referenced tensor object(s) present and intact" in theta("fsck", cwd=repo).stdout.decode()

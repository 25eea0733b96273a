"""The command git is told to run: the running script's absolute path, else ``python -m git_theta``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from git_theta.git import command


def test_a_script_is_recorded_by_its_absolute_path_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "my env" / "bin" / "git-theta"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["my env/bin/git-theta", "install"])
    assert command.theta_words() == [str(script)]
    assert command.theta_command() == f"'{script}'"


def test_without_the_script_python_runs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/git_theta/__main__.py", "install"])
    assert command.theta_words() == [sys.executable, "-m", "git_theta"]


def test_a_program_inside_the_running_virtual_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", "/opt/venv")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    assert command.virtual_environment("/opt/venv/bin/git-theta") == Path("/opt/venv")
    assert command.virtual_environment("/home/me/.local/bin/git-theta") is None
    monkeypatch.setattr(sys, "prefix", "/usr")
    assert command.virtual_environment("/usr/bin/git-theta") is None


def test_the_manual_page_is_found_where_pip_installs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    program = tmp_path / "prefix" / "bin" / "git-theta"
    assert command.manual_page(str(program)) is None
    page = tmp_path / "prefix" / "share" / "man" / "man1" / "git-theta.1"
    page.parent.mkdir(parents=True)
    page.write_text(".TH GIT-THETA 1\n")
    assert command.manual_page(str(program)) == page
    link = tmp_path / "local" / "bin" / "git-theta"  # pipx: a link in ~/.local/bin to the script in its venv
    link.parent.mkdir(parents=True)
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    link.symlink_to(program)
    assert command.manual_page(str(link)) == page

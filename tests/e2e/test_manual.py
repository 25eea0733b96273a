"""End to end: `git theta --help` shows git-theta's manual page, installed by pip from the wheel; the page documents
every command and option."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from git_theta.cli.group import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "git-theta.1"


def visible_commands():
    for name, target in sorted(COMMANDS.items()):
        module, attribute = target.split(":")
        command = getattr(import_module(module), attribute)
        if not command.hidden:
            yield name, command


def test_the_page_documents_every_command_and_option() -> None:
    text = PAGE.read_text()
    headers = re.findall(r"^\.TP\n\\fB([a-z-]+)\\fR", text, flags=re.MULTILINE)
    for name, command in visible_commands():
        assert name in headers, f"{name} is not documented in {PAGE.name}"
        for param in command.params:
            for option in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if option.startswith("--"):
                    assert option.replace("-", "\\-") in text, f"{name} {option} is not documented"


def test_the_page_renders_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""


def test_git_theta_help_shows_the_page_of_a_pip_install(installed: Path, tmp_path: Path) -> None:
    """Built into a wheel and installed by pip into a new environment (offline), as `pip install git-theta` does."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed: git help cannot show any manual page")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "git_theta", source / "git_theta", ignore=shutil.ignore_patterns("__pycache__"))
    (source / "docs").mkdir()
    shutil.copy(PAGE, source / "docs" / PAGE.name)
    pip = [sys.executable, "-m", "pip", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    # pip runs for the new environment's interpreter and installs there only (never into the one running the tests).
    install = [*pip, "--python", str(environment / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)]
    result = subprocess.run(install, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (environment / "share" / "man" / "man1" / "git-theta.1").is_file()

    system = [entry for entry in os.environ["PATH"].split(os.pathsep) if not (Path(entry) / "git-theta").exists()]
    env = {**os.environ, "PATH": os.pathsep.join([str(environment / "bin"), *system]), "MANPAGER": "cat"}
    env |= {"MANWIDTH": "100", "PAGER": "cat"}
    env.pop("MANPATH", None)
    for args in (["theta", "--help"], ["help", "theta"], ["help", "-m", "theta"]):
        shown = subprocess.run(["git", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "git-theta - version machine-learning checkpoints in Git" in shown.stdout, args
        assert "untrack pattern..." in shown.stdout and "GIT_PROGRESS_DELAY" in shown.stdout

"""Fixtures of the end-to-end tests: remotes whose LFS objects live on a real HTTP server (giftless)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import git
from tests.remotes import FAST_FAILING_LFS, HttpRemote, LfsServer, LocalRemote


def _start(workdir: Path) -> LfsServer:
    pytest.importorskip("giftless", reason="giftless is a test dependency: pip install -e '.[test]'")
    server = LfsServer(workdir)
    server.start()
    return server


@pytest.fixture(scope="session")
def lfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LfsServer]:
    """One giftless server per test worker; each test gets its own repository namespace on it."""
    server = _start(tmp_path_factory.mktemp("giftless"))
    yield server
    server.stop()


@pytest.fixture
def own_lfs_server(tmp_path: Path) -> Iterator[LfsServer]:
    """A giftless server of this test alone, which it may stop and start."""
    server = _start(tmp_path / "giftless")
    yield server
    server.stop()


def _configure_git(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")  # never wait for a password
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the server is on loopback, whatever proxy is set
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for key, value in FAST_FAILING_LFS.items():
        git("config", "--global", key, value, cwd=home)


@pytest.fixture
def http_remote(installed: Path, lfs_server: LfsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HttpRemote:
    """An empty bare repository whose LFS endpoint is the shared giftless server."""
    _configure_git(installed, monkeypatch)
    return HttpRemote.create(lfs_server, tmp_path)


@pytest.fixture
def own_http_remote(
    installed: Path, own_lfs_server: LfsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> HttpRemote:
    """An empty bare repository whose LFS endpoint is this test's own giftless server."""
    _configure_git(installed, monkeypatch)
    return HttpRemote.create(own_lfs_server, tmp_path)


@pytest.fixture(params=["local", "http"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> HttpRemote | LocalRemote:
    """An empty remote: a bare repository on disk (``local``), or one whose LFS endpoint is giftless (``http``)."""
    if request.param == "local":
        request.getfixturevalue("installed")
        return LocalRemote.create(tmp_path)
    return request.getfixturevalue("http_remote")

"""Remotes for tests: a bare repository on disk, alone or with its LFS objects on a real HTTP LFS server.

``LfsServer`` runs giftless (local storage, anonymous read/write) under waitress in a subprocess on a free port of
127.0.0.1 only, and can be stopped and started again on the same port (to test a server that goes away).
``HttpRemote`` is a bare repository on the local filesystem whose LFS objects live on that server, the way a forge
pairs a Git remote with its LFS endpoint; ``LocalRemote`` is a bare repository that git-lfs copies objects into.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import git, lfs_objects

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ORGANIZATION = "theta"  # as in tests/giftless_app.py
ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()


#: Asks the server directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    """Tell whether an HTTP server answers at ``url`` (any status will do)."""
    try:
        _DIRECT.open(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


class LfsServer:
    """giftless serving ``storage`` on ``http://127.0.0.1:<port>``, anonymous read and write.

    We bind the port ourselves and hand the listening socket to the server process, so no other process can take
    the port between choosing and binding it; once handed over, only the server holds it, so a stopped server
    refuses connections at once.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = 0  # chosen by the system at the first start, kept across restarts
        self._process: subprocess.Popen[bytes] | None = None
        self._die_after = 0
        self._log = workdir / "server.log"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    def start(self, die_after_bytes: int = 0) -> None:
        """Start the server (on the same port as before, if it ran before) and wait until it answers.

        With ``die_after_bytes``, the server process dies in the middle of the transfer that reaches that many bytes.
        """
        self._die_after = die_after_bytes
        assert self._process is None, "the server is already running"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(64)
            self.port = sock.getsockname()[1]
            self._process = self._spawn(sock.fileno())
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"giftless did not start; its log:\n{self._log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and wait until it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def _spawn(self, fd: int) -> subprocess.Popen[bytes]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),  # for tests.giftless_app
            "GIFTLESS_CONFIG_STR": json.dumps(self._config()),  # YAML is a superset of JSON
        }
        if self._die_after:
            env["THETA_DIE_AFTER_BYTES"] = str(self._die_after)
        with open(self._log, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.giftless_app", str(fd)], pass_fds=[fd],
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def _config(self) -> dict:
        return {
            "AUTH_PROVIDERS": ["tests.giftless_app:read_write"],
            "LEGACY_ENDPOINTS": False,
            # Anonymous users may do everything, so actions need no signed tokens (and no JWT library quirks).
            "PRE_AUTHORIZED_ACTION_PROVIDER": None,
            "TRANSFER_ADAPTERS": {"basic": {"options": {"storage_options": {"path": str(self.storage)}}}},
        }


@dataclass
class HttpRemote:
    """A bare repository (``path``) whose LFS endpoint is a repository on an ``LfsServer``."""

    path: Path
    server: LfsServer
    name: str

    @classmethod
    def create(cls, server: LfsServer, parent: Path) -> HttpRemote:
        """A new, empty bare repository with its own, empty namespace on the server."""
        name = f"r{os.getpid()}-{next(_names)}"
        path = parent / f"{name}.git"
        git("init", "-q", "--bare", str(path), cwd=parent)
        return cls(path, server, name)

    @property
    def lfs_url(self) -> str:
        """The LFS endpoint (git-lfs appends ``/objects/batch``)."""
        return f"{self.server.url}/{ORGANIZATION}/{self.name}.git/info/lfs"

    @property
    def storage(self) -> Path:
        """Where giftless keeps this repository's objects (one flat directory, files named by oid)."""
        return self.server.storage / ORGANIZATION / self.name

    def object_path(self, oid: str) -> Path:
        """Where the server keeps object ``oid``."""
        return self.storage / oid

    def objects(self) -> set[str]:
        """The oids the server holds for this repository."""
        return {p.name for p in self.storage.glob("*") if p.is_file()} if self.storage.exists() else set()

    def add_to(self, repo: Path, remote: str = "origin") -> None:
        """Add this as remote ``remote`` of ``repo``, with its LFS endpoint."""
        git("remote", "add", remote, str(self.path), cwd=repo)
        git("config", f"remote.{remote}.lfsurl", self.lfs_url, cwd=repo)

    def clone(self, dest: Path, *options: str, url: bool = False, check: bool = True):
        """``git clone`` this remote into ``dest`` with the LFS endpoint configured before checkout.

        With ``url``, clone from its ``file://`` URL, as for a remote on another machine (``--depth`` needs it).
        """
        source = self.path.as_uri() if url else str(self.path)
        return git(
            "clone", "-q", "-c", f"remote.origin.lfsurl={self.lfs_url}", *options, source, str(dest),
            cwd=dest.parent, check=check,
        )  # fmt: skip


@dataclass
class LocalRemote:
    """A bare repository on disk, used directly as the LFS endpoint (git-lfs copies objects into its lfs/)."""

    path: Path

    @classmethod
    def create(cls, parent: Path, name: str = "remote") -> LocalRemote:
        """A new, empty bare repository."""
        path = parent / f"{name}.git"
        git("init", "-q", "--bare", str(path), cwd=parent)
        return cls(path)

    @property
    def storage(self) -> Path:
        """The remote's LFS objects directory."""
        return self.path / "lfs" / "objects"

    def object_path(self, oid: str) -> Path:
        """Where the remote keeps object ``oid``."""
        return self.storage / oid[:2] / oid[2:4] / oid

    def objects(self) -> set[str]:
        """The oids the remote holds."""
        return lfs_objects(self.path)

    def add_to(self, repo: Path, remote: str = "origin") -> None:
        """Add this as remote ``remote`` of ``repo``."""
        git("remote", "add", remote, str(self.path), cwd=repo)

    def clone(self, dest: Path, *options: str, url: bool = False, check: bool = True):
        """``git clone`` this remote into ``dest`` (from its ``file://`` URL with ``url``)."""
        source = self.path.as_uri() if url else str(self.path)
        return git("clone", "-q", *options, source, str(dest), cwd=dest.parent, check=check)


#: git-lfs settings that keep a failing transfer from retrying for minutes.
FAST_FAILING_LFS = {
    "lfs.transfer.maxretries": "1",
    "lfs.transfer.maxretrydelay": "1",
    "lfs.dialtimeout": "5",
    "lfs.activitytimeout": "20",
}

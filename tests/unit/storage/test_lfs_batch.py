"""The LFS batch API client: which objects a server lacks, with credentials only when the server asks."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from git_theta.storage.lfs_batch import BatchError, missing_objects
from tests.helpers import git

HAVE, LACK = "a" * 64, "b" * 64
SECRET = "Basic " + base64.b64encode(b"alice:s3cret").decode()


class _Handler(BaseHTTPRequestHandler):
    """A batch endpoint that has HAVE, lacks LACK, and may demand Basic credentials."""

    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.server.password and self.headers.get("Authorization") != SECRET:
            return self._answer(401, {"message": "credentials needed"})
        objects = [
            {"oid": o["oid"], "size": o["size"], "actions": {"download": {"href": "http://x/" + o["oid"]}}}
            if o["oid"] == HAVE
            else {"oid": o["oid"], "size": o["size"], "error": {"code": 404, "message": "Object does not exist"}}
            for o in body["objects"]
        ]
        self._answer(200, {"transfer": "basic", "objects": objects})

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.git-lfs+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    seen: list
    password: bool


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen, httpd.password = [], False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def endpoint(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/org/repo.git/info/lfs"


def test_reports_the_objects_the_server_lacks_without_credentials(server: _Server) -> None:
    assert missing_objects(endpoint(server), {HAVE: 10, LACK: 20}) == {
        LACK: "the server answered 404: Object does not exist"
    }
    [(path, authorization, body)] = server.seen
    assert path == "/org/repo.git/info/lfs/objects/batch" and authorization is None
    assert body["operation"] == "download" and {o["oid"]: o["size"] for o in body["objects"]} == {HAVE: 10, LACK: 20}


def test_asks_git_for_credentials_only_when_the_server_wants_them(
    server: _Server, isolated_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.password = True
    helper = "!f() { test \"$1\" = get && printf 'username=alice\\npassword=s3cret\\n'; }; f"
    git("config", "--global", "credential.helper", helper, cwd=isolated_git)
    monkeypatch.chdir(isolated_git)
    assert set(missing_objects(endpoint(server), {HAVE: 1, LACK: 2})) == {LACK}
    assert [authorization for _, authorization, _ in server.seen] == [None, SECRET]


def test_refused_credentials_are_an_error(server: _Server, isolated_git: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.password = True
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.chdir(isolated_git)
    with pytest.raises(BatchError, match="asks for credentials and git has none"):
        missing_objects(endpoint(server), {HAVE: 1})
    git(
        "config",
        "--global",
        "credential.helper",
        "!f() { printf 'username=bob\\npassword=wrong\\n'; }; f",
        cwd=isolated_git,
    )
    with pytest.raises(BatchError, match="answered 401: credentials needed"):
        missing_objects(endpoint(server), {HAVE: 1})


def test_an_unreachable_server_is_one_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    with pytest.raises(BatchError, match="cannot reach the LFS server"):
        missing_objects(f"http://127.0.0.1:{port}/r.git/info/lfs", {HAVE: 1})

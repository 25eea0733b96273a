"""Asking an HTTP Git LFS server which objects it has, through its batch API (download operation).

The server answers each object with download actions when it has it, or with an error (404) when it does not.
We authenticate only when the server asks (401), with git's credential helpers, as git-lfs does.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from git_theta.errors import GitThetaError
from git_theta.git import credentials

MEDIA_TYPE = "application/vnd.git-lfs+json"
#: Objects per request, as git-lfs sends them.
BATCH_SIZE = 100
TIMEOUT = 60.0
#: Requests in flight at once (git-lfs's lfs.concurrenttransfers defaults to 8).
CONCURRENT_REQUESTS = 8


class BatchError(GitThetaError):
    """The LFS server could not be asked, or refused to answer."""


def missing_objects(endpoint: str, objects: dict[str, int]) -> dict[str, str]:
    """Return ``{oid: why}`` for each of ``objects`` (oid -> size) that the server at ``endpoint`` cannot serve."""
    client = _Client(endpoint)
    oids = sorted(objects)
    chunks = [
        {oid: objects[oid] for oid in oids[start : start + BATCH_SIZE]} for start in range(0, len(oids), BATCH_SIZE)
    ]
    if not chunks:
        return {}
    missing = client.missing(chunks[0])  # alone, so that credentials are asked for once
    if len(chunks) > 1:
        # A whole history means many requests; the server answers several at once, as git-lfs's transfers are.
        with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
            for answer in pool.map(client.missing, chunks[1:]):
                missing.update(answer)
    return missing


class _Client:
    """POSTs batch requests, adding credentials once the server asks for them."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path + "/objects/batch", "", ""))
        self.base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self.auth = (parts.username, parts.password or "") if parts.username else None

    def missing(self, objects: dict[str, int]) -> dict[str, str]:
        status, body = self._post(objects)
        if status == 401 and self.auth is None:
            self.auth = credentials.fill(self.base)
            if self.auth is None:
                raise BatchError(f"the LFS server {self.base} asks for credentials and git has none for it; "
                                 "configure a credential helper (git help credential) and run this again")  # fmt: skip
            status, body = self._post(objects)
            (credentials.reject if status == 401 else credentials.approve)(self.base, *self.auth)
        if status == 200:
            return _parse(body, objects)
        message = _server_message(body)
        if status in (404, 422):  # some servers answer 404/422 for the whole batch when no object is there
            return {oid: f"the server answered {status}: {message}" for oid in objects}
        raise BatchError(f"the LFS server {self.base} answered {status}: {message}")

    def _post(self, objects: dict[str, int]) -> tuple[int, bytes]:
        payload = {
            "operation": "download",
            "transfers": ["basic"],
            "objects": [{"oid": oid, "size": size} for oid, size in objects.items()],
        }
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST")
        request.add_header("Accept", MEDIA_TYPE)
        request.add_header("Content-Type", MEDIA_TYPE)
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BatchError(f"cannot reach the LFS server {self.base}: {reason}") from exc


def _parse(body: bytes, asked: dict[str, int]) -> dict[str, str]:
    try:
        answers = {item["oid"]: item for item in json.loads(body)["objects"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchError(f"the LFS server sent an answer that is not a batch response ({exc})") from exc
    missing = {}
    for oid in asked:
        item = answers.get(oid, {})
        if "error" in item:
            error = item["error"]
            missing[oid] = f"the server answered {error.get('code')}: {error.get('message', 'no message')}"
        elif "download" not in item.get("actions", {}):
            missing[oid] = "the server does not offer it for download"
    return missing


def _server_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "no message"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:200] or "no message"

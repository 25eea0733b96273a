"""The test LFS server's process: giftless under waitress, on a listening socket handed over by the tests.

Run as ``python -m tests.giftless_app FD`` with giftless's configuration in ``GIFTLESS_CONFIG_STR``. It exits by
itself when the process that started it is gone, so a killed test run leaves no server behind.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any

from giftless.auth.identity import DefaultIdentity, Permission

ORGANIZATION = "theta"


def read_write(_request: Any) -> DefaultIdentity:
    """Authenticate anyone, with every permission in the test organization.

    giftless's own ``allow_anon:read_write`` grants nothing once a request names an object (giftless 0.6.2 looks the
    object up under the wrong organization), so its uploads fail with 403.
    """
    user = DefaultIdentity(name="anonymous")
    user.allow(organization=ORGANIZATION, permissions=Permission.all())
    return user


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def dying_mid_transfer(app: Any, after: int) -> Any:
    """Wrap ``app`` so that the server process dies once ``after`` bytes of object data have gone either way.

    A server that crashes in the middle of an upload or a download, as in ``THETA_DIE_AFTER_BYTES``.
    """
    moved = 0

    def count(size: int) -> None:
        nonlocal moved
        moved += size
        if moved >= after:
            os._exit(17)

    def wrapped(environ: dict, start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") == "PUT":
            body = environ["wsgi.input"]
            data = body.read(int(environ.get("CONTENT_LENGTH") or 0) // 2)
            count(max(len(data), after))  # half of the upload arrived, then the server is gone
        result = app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET" or "/objects/storage/" not in environ.get("PATH_INFO", ""):
            return result

        def chunks() -> Any:
            for chunk in result:
                yield chunk[: max(1, len(chunk) // 2)]
                count(len(chunk))
                yield chunk[max(1, len(chunk) // 2) :]

        return chunks()

    return wrapped


def main(fd: int) -> None:
    """Serve giftless on the inherited listening socket ``fd`` until terminated or orphaned."""
    from giftless.wsgi_entrypoint import app
    from waitress import serve

    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    if os.environ.get("THETA_DIE_AFTER_BYTES"):
        app = dying_mid_transfer(app, int(os.environ["THETA_DIE_AFTER_BYTES"]))
    serve(app, sockets=[socket.socket(fileno=fd)], threads=4)


if __name__ == "__main__":
    main(int(sys.argv[1]))
